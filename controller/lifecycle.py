"""The experiment lifecycle: one state machine for everything that changes what is in force.

Every path goes through :func:`decide`: the operator's commands (pause, resume, stop, and the
guardrail's stop), the flip at a period boundary (catch-up after downtime and a backfill
included), the end of the experiment, and an operator freeze beginning or ending.

States (:class:`Phase`), with *frozen* an overlay on them:

- ``created``: accepted, no period in force yet (the start is ahead);
- ``running``: the design's assignments are in force (``frozen``: an operator freeze holds
  every product on the control policy);
- ``paused``: the kill switch; every product on control, its data excluded;
- ``stopped`` and ``ended``: final. Nothing takes an experiment out of them.

:data:`RULES` is the whole table: (phase, event) -> the next phase, the event to announce,
whether the products are released, or a repeat (``already``: nothing happens, the reply says
so) or a refusal (one sentence). A pair missing from the table is a bug, and
``tests/unit/test_lifecycle.py`` checks that the table is complete.

What a pricing system must do is the *mode* of a state: the ``status`` on the assignments
topic (``running``, ``frozen``, ``paused``, ``stopped``, ``ended``) and the period in force.
An outcome *publishes*, with a new sequence number, exactly when it changes one of them
(:attr:`Outcome.publish`); see "The assignment contract" in docs/operations.md.

Pure: the flipper reads the state from the store, asks :func:`decide`, and carries the
outcome out (controller/flipper.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from controller.errors import CommandRefused


class Phase(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ENDED = "ended"


FINAL = frozenset({Phase.STOPPED, Phase.ENDED})


class Kind(StrEnum):
    """What happens to an experiment: an operator's command, or the clock."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FLIP = "flip"  # a period boundary passed: ``Event.period`` is now in force
    END = "end"  # the experiment's end passed
    FREEZE_ON = "freeze_on"  # an operator freeze began to cover the experiment
    FREEZE_OFF = "freeze_off"  # ... ended or was cancelled


#: the commands an operator sends (the rest come from the clock)
COMMANDS = frozenset({Kind.PAUSE, Kind.RESUME, Kind.STOP})


@dataclass(frozen=True)
class State:
    """An experiment's lifecycle state: its phase, the freeze overlay, the period in force."""

    phase: Phase
    frozen: bool = False
    period: int = -1  # the period in force; -1 before the first

    def __post_init__(self) -> None:
        # 'created' is 'running' before any period is in force, and only that
        if self.phase is Phase.CREATED and self.period >= 0:
            object.__setattr__(self, "phase", Phase.RUNNING)
        elif self.phase is Phase.RUNNING and self.period < 0:
            object.__setattr__(self, "phase", Phase.CREATED)

    @property
    def mode(self) -> str | None:
        """The ``status`` a pricing system reads, or None while nothing is in force."""
        if self.period < 0:
            return None
        if self.phase is Phase.RUNNING:
            return "frozen" if self.frozen else "running"
        return self.phase.value

    @property
    def final(self) -> bool:
        return self.phase in FINAL


@dataclass(frozen=True)
class Event:
    kind: Kind
    period: int | None = None  # FLIP: the period now in force
    frozen: bool | None = None  # FLIP: whether a freeze covers the experiment at the flip


@dataclass(frozen=True)
class Rule:
    """One cell of the table. ``to`` None: the phase stays."""

    to: Phase | None = None
    announce: str | None = None  # the experiment-event kind
    release: bool = False  # the products are released (stop, end)
    already: str | None = None  # a repeat: nothing happens; the reply says "already <this>"
    refuse: str | None = None  # a refusal: "<experiment> <this>"


_FINAL_STOPPED = "was stopped; a stopped experiment is final"
_FINAL_ENDED = "has ended; an ended experiment is final"
_QUIET = Rule(already="final")  # the clock has nothing to do with a final experiment

RULES: Mapping[tuple[Phase, Kind], Rule] = {
    # created: nothing is in force yet
    (Phase.CREATED, Kind.PAUSE): Rule(Phase.PAUSED, "paused"),
    (Phase.CREATED, Kind.RESUME): Rule(already="not paused"),
    (Phase.CREATED, Kind.STOP): Rule(Phase.STOPPED, "stopped", release=True),
    (Phase.CREATED, Kind.FLIP): Rule(Phase.RUNNING, "started"),
    (Phase.CREATED, Kind.END): Rule(Phase.ENDED, "ended", release=True),
    (Phase.CREATED, Kind.FREEZE_ON): Rule(announce="frozen"),
    (Phase.CREATED, Kind.FREEZE_OFF): Rule(announce="unfrozen"),
    # running (frozen or not)
    (Phase.RUNNING, Kind.PAUSE): Rule(Phase.PAUSED, "paused"),
    (Phase.RUNNING, Kind.RESUME): Rule(already="running"),
    (Phase.RUNNING, Kind.STOP): Rule(Phase.STOPPED, "stopped", release=True),
    (Phase.RUNNING, Kind.FLIP): Rule(),
    (Phase.RUNNING, Kind.END): Rule(Phase.ENDED, "ended", release=True),
    (Phase.RUNNING, Kind.FREEZE_ON): Rule(announce="frozen"),
    (Phase.RUNNING, Kind.FREEZE_OFF): Rule(announce="unfrozen"),
    # paused: on control whatever the clock does, until resumed or stopped
    (Phase.PAUSED, Kind.PAUSE): Rule(already="paused"),
    (Phase.PAUSED, Kind.RESUME): Rule(Phase.RUNNING, "resumed"),
    (Phase.PAUSED, Kind.STOP): Rule(Phase.STOPPED, "stopped", release=True),
    (Phase.PAUSED, Kind.FLIP): Rule(),
    (Phase.PAUSED, Kind.END): Rule(Phase.ENDED, "ended", release=True),
    (Phase.PAUSED, Kind.FREEZE_ON): Rule(),
    (Phase.PAUSED, Kind.FREEZE_OFF): Rule(),
    # final
    (Phase.STOPPED, Kind.PAUSE): Rule(refuse=_FINAL_STOPPED),
    (Phase.STOPPED, Kind.RESUME): Rule(refuse=_FINAL_STOPPED),
    (Phase.STOPPED, Kind.STOP): Rule(already="stopped"),
    (Phase.STOPPED, Kind.FLIP): _QUIET,
    (Phase.STOPPED, Kind.END): _QUIET,
    (Phase.STOPPED, Kind.FREEZE_ON): _QUIET,
    (Phase.STOPPED, Kind.FREEZE_OFF): _QUIET,
    (Phase.ENDED, Kind.PAUSE): Rule(refuse=_FINAL_ENDED),
    (Phase.ENDED, Kind.RESUME): Rule(refuse=_FINAL_ENDED),
    (Phase.ENDED, Kind.STOP): Rule(refuse=_FINAL_ENDED),
    (Phase.ENDED, Kind.FLIP): _QUIET,
    (Phase.ENDED, Kind.END): _QUIET,
    (Phase.ENDED, Kind.FREEZE_ON): _QUIET,
    (Phase.ENDED, Kind.FREEZE_OFF): _QUIET,
}


@dataclass(frozen=True)
class Outcome:
    """What an event does to an experiment."""

    before: State
    after: State
    announce: str | None = None
    release: bool = False
    already: str | None = None  # set: nothing changed

    @property
    def publish(self) -> bool:
        """A new decision for the pricing systems: the mode or the period in force changed."""
        if self.already is not None or self.after.mode is None:
            return False
        return (self.after.mode, self.after.period) != (self.before.mode, self.before.period)


def decide(experiment: str, state: State, event: Event) -> Outcome:
    """The outcome of ``event`` in ``state``; raise :class:`CommandRefused` (one sentence)
    for a command that does not apply."""
    rule = RULES[(state.phase, event.kind)]
    if rule.refuse is not None:
        raise CommandRefused(f"experiment {experiment!r} {rule.refuse}")
    if rule.already is not None:
        return Outcome(state, state, already=rule.already)
    after = state
    if event.kind is Kind.FLIP:
        if event.period is None or event.period <= state.period:
            return Outcome(state, state, already=f"in period {state.period}")
        after = replace(after, period=event.period)
        if event.frozen is not None:
            after = replace(after, frozen=event.frozen)
    elif event.kind is Kind.FREEZE_ON:
        if state.frozen:
            return Outcome(state, state, already="frozen")
        after = replace(after, frozen=True)
    elif event.kind is Kind.FREEZE_OFF:
        if not state.frozen:
            return Outcome(state, state, already="not frozen")
        after = replace(after, frozen=False)
    if rule.to is not None:
        after = State(rule.to, after.frozen, after.period)  # normalises running/created
    announce = rule.announce
    if event.kind is Kind.FLIP and state.period < 0:
        announce = "started"  # the first period in force, paused or not
    if event.kind in (Kind.FREEZE_ON, Kind.FREEZE_OFF) and state.phase is Phase.PAUSED:
        announce = None  # the overlay moves under the pause: nothing a reader sees changes
    return Outcome(state, after, announce, rule.release)


# ------------------------------------------------------------------ the store's words
def state_of(status: str, frozen: bool, period: int) -> State:
    """The lifecycle state of a stored experiment (the store keeps 'running' for 'created')."""
    try:
        phase = Phase(status)
    except ValueError:
        raise CommandRefused(f"an experiment in state {status!r} takes no command") from None
    return State(phase, frozen, period)


def stored_status(phase: Phase) -> str:
    """The status the store keeps: 'created' is kept as 'running' (product claims, the
    trigger and sales scripts read 'running' as "not paused, not final")."""
    return Phase.RUNNING.value if phase is Phase.CREATED else phase.value


# ------------------------------------------------------------------ checks of commands
def check_create(
    experiment: str, start: datetime, end: datetime, now: datetime, backfill: bool
) -> None:
    """A new experiment must start now or later, unless it is a backfill; and it must not
    have ended already."""
    if end <= now:
        raise CommandRefused(
            f"experiment {experiment!r} ends at {end.isoformat()}, before now "
            f"({now.isoformat()}): there is nothing left to run"
        )
    if start < now and not backfill:
        raise CommandRefused(
            f"experiment {experiment!r} starts at {start.isoformat()}, before now "
            f"({now.isoformat()}); start it later, or give --backfill to begin in the period "
            "in force now, with the periods before recorded as a backfill"
        )


def check_freeze(
    freeze_id: str,
    start: datetime,
    end: datetime,
    experiments: Iterable[str] | None,
    states: Mapping[str, State],
    now: datetime,
) -> None:
    """A freeze must reach into the future and name experiments that can be frozen
    (``experiments`` None: every experiment)."""
    if end <= now:
        raise CommandRefused(
            f"freeze {freeze_id!r} ends at {end.isoformat()}, before now ({now.isoformat()}): "
            "a freeze entirely in the past changes nothing"
        )
    for exp in experiments or ():
        st = states.get(exp)
        if st is None:
            raise CommandRefused(
                f"freeze {freeze_id!r} names experiment {exp!r}, which does not exist"
            )
        if st.final:
            raise CommandRefused(
                f"freeze {freeze_id!r} names experiment {exp!r}, which is {st.phase.value}: "
                "a final experiment cannot be frozen"
            )


def table_markdown() -> str:
    """:data:`RULES` as the Markdown table docs/operations.md shows (a test keeps them equal)."""
    kinds = list(Kind)
    head = "| state \\ event | " + " | ".join(k.value for k in kinds) + " |"
    rows = [head, "|---|" + "---|" * len(kinds)]
    for phase in Phase:
        cells = []
        for kind in kinds:
            rule = RULES[(phase, kind)]
            if rule.refuse is not None:
                cells.append("refused")
            elif rule.already is not None:
                cells.append("—" if rule.already == "final" else f"already {rule.already}")
            else:
                to = rule.to.value if rule.to is not None else phase.value
                if phase is Phase.PAUSED and kind is Kind.RESUME:
                    to = "running (created before the start)"
                overlay = {Kind.FREEZE_ON: " +frozen", Kind.FREEZE_OFF: " -frozen"}
                cells.append(to + overlay.get(kind, "") + (", released" if rule.release else ""))
        rows.append(f"| **{phase.value}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)
