"""When the analysis of an experiment is over: its final look (issue #56, item 5).

A stopped or ended experiment is looked at on every analysis cycle while its cells can still
change: while a sale of one of its periods may still be counted (the period's end plus the
allowed lateness has not passed) or the period is not yet compacted. Once every period it ran
is compacted, the ingest script answers ``late`` for any sale of it (dead-lettered, counted
nowhere), so its cells never change again: its data is *sealed*, and its next look is its
*final look*. The worker that publishes that look (the only one with sharding on: the
worker that merges it) stores the look's clock time under :data:`FINAL_LOOK` in the
experiment's tuning store, once every message of the look is acknowledged by the broker.
From then on the panel source lists it no more: no worker reads, fits or keeps anything of
it, a restarted worker included, and its last look stays the one on the estimates topic.

Both sides use these rules: the panel source (controller/) to leave out what is over and to
tell the worker what is sealed, the worker (analysis/) to know which look is the final one.
"""

from __future__ import annotations

from core import status

#: the tuning-store key (``exp:{id}:cs``) of the clock time (ms) of an experiment's final look
FINAL_LOOK = "final_look"

__all__ = ["FINAL_LOOK", "final_look", "sealed"]


def sealed(state: str, periods_ran: int, periods_done: int, compacted: int) -> bool:
    """Whether an experiment's cells never change again: it is stopped or ended, every one of
    the ``periods_ran`` periods it ran is over (``periods_done``, as the panel counts them)
    and compacted (closed to sales)."""
    return (
        state in status.FINAL
        and periods_ran > 0
        and periods_done >= periods_ran
        and compacted >= periods_ran
    )


def final_look(state: str, is_sealed: bool) -> bool:
    """Whether a look at an experiment is its final look: stopped or ended, its data sealed."""
    return state in status.FINAL and is_sealed
