"""The words an experiment's status is stored and published in: one list for Python and Lua.

The store keeps one of :data:`STORED` in ``exp:{id}:state`` field ``status`` and in the
catalog's holders hash (``status|gen``); the Lua scripts in ``controller/store/lua/`` compare
and write the same words, and ``tests/unit/core/test_status_words.py`` checks that every status
word a script names is one of these (and that the scripts' "final" is :data:`FINAL`). An
assignment message's ``status`` is one of :data:`MODES` (docs/operations.md, "The
assignment contract").
"""

from __future__ import annotations

CREATING = "creating"  # stored until the creation is committed and opened
RUNNING = "running"  # also an experiment created whose start is ahead (no period in force)
PAUSED = "paused"
STOPPED = "stopped"
ENDED = "ended"
FROZEN = "frozen"  # a mode only: running under an operator freeze (stored as a flag)
#: not a status: the holders hash's mark ("stopped|gen|releasing") of a stopped or ended
#: experiment whose last messages are not all out, and the claim kind lua/holds.lua returns
#: for it (its claims stay live until they are out)
RELEASING = "releasing"

#: every word the store keeps as an experiment's status
STORED = (CREATING, RUNNING, PAUSED, STOPPED, ENDED)
#: the statuses nothing takes an experiment out of: its product claims are dead
FINAL = frozenset({STOPPED, ENDED})
#: the ``status`` of an assignment message: what a pricing system must do
MODES = (RUNNING, FROZEN, PAUSED, STOPPED, ENDED)

__all__ = [
    "CREATING",
    "ENDED",
    "FINAL",
    "FROZEN",
    "MODES",
    "PAUSED",
    "RELEASING",
    "RUNNING",
    "STOPPED",
    "STORED",
]
