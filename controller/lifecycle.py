"""The experiment lifecycle: one state machine for everything that changes what is in force.

Every path goes through :func:`decide`: the operator's commands (pause, resume, stop, and the
guardrail's stop), the flip at a period boundary (catch-up after downtime and a backfill
included), the end of the experiment, and an operator freeze beginning or ending.

States (:class:`Phase`), with *frozen* an overlay on them:

- ``creating``: its products are being claimed; nothing else happens to it (a command is
  refused, the clock waits) until the creation is committed and opened;
- ``created``: accepted, no period in force yet (the start is ahead);
- ``running``: the design's assignments are in force (``frozen``: an operator freeze holds
  every product on the control policy);
- ``paused``: the kill switch; every product on control, its data excluded;
- ``stopped`` and ``ended``: final. Nothing takes an experiment out of them.

:data:`RULES` is the whole table: (phase, event) -> the next phase, the event to announce,
what the decision does beside it (its *effects*: an exclusion window opened or closed, the
period's assignment records rewritten with the design's or the control policy, the products
released), or a repeat (``already``: nothing happens, the reply says so) or a refusal (one
sentence). A pair missing from the table is a bug, and ``tests/unit/controller/test_lifecycle.py``
checks that the table is complete.

What a pricing system must do is the *mode* of a state: the ``status`` on the assignments
topic (``running``, ``frozen``, ``paused``, ``stopped``, ``ended``) and the period in force.
An outcome *publishes*, with a new sequence number, exactly when it changes one of them
(:attr:`Outcome.publish`); see "The assignment contract" in docs/operations.md.

Pure: the flipper reads the state from the store, asks :func:`decide`, and carries the
outcome's effects out (controller/flipper.py); it decides nothing itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from controller.errors import CommandRefused, UnknownExperiment
from core import status


class Phase(StrEnum):
    CREATING = status.CREATING
    CREATED = "created"  # stored as 'running' (stored_status)
    RUNNING = status.RUNNING
    PAUSED = status.PAUSED
    STOPPED = status.STOPPED
    ENDED = status.ENDED


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

#: the commands an operator must say why for (``reason``, kept in the audit trail)
NEEDS_REASON = frozenset({"pause", "stop", "freeze", "decision", "comment", "discard"})


def reason_missing(command: str, reason: object) -> bool:
    """A ``command`` that needs a reason came without one (none, or only blanks): the CLI
    refuses it before sending, the controller on receipt (another producer may send it)."""
    return command in NEEDS_REASON and not (isinstance(reason, str) and reason.strip())


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
            return status.FROZEN if self.frozen else status.RUNNING
        return self.phase.value

    @property
    def final(self) -> bool:
        return self.phase in FINAL

    @property
    def shows_frozen(self) -> bool:
        """The freeze overlay as an operator is shown it: it counts while a period is in
        force and the experiment is running or paused."""
        return self.frozen and self.period >= 0 and self.phase in (Phase.RUNNING, Phase.PAUSED)

    @property
    def clocked(self) -> bool:
        """The clock's events (a flip, the end, a freeze) can change it: it is neither being
        created nor final."""
        return self.phase is not Phase.CREATING and not self.final


@dataclass(frozen=True)
class Event:
    kind: Kind
    period: int | None = None  # FLIP: the period now in force
    frozen: bool | None = None  # FLIP: whether a freeze covers the experiment at the flip


class Window(StrEnum):
    """What a decision does to the experiment's exclusion windows (sales in one are excluded)."""

    OPEN = "open"  # before the decision: excluded from now on (a crash between errs to more)
    CLOSE = "close"  # after the decision: every open window ends now


class Records(StrEnum):
    """The policy the period's assignment records (which the sales path routes by) are
    rewritten with: the design's with the freezes laid over it, or the control policy."""

    DESIGN = "design"
    CONTROL = "control"  # paused: control, its data excluded


@dataclass(frozen=True)
class Rule:
    """One cell of the table: the next phase (``to`` None: the phase stays), the event it
    announces and its effects; or a repeat or a refusal."""

    to: Phase | None = None
    announce: str | None = None  # the experiment-event kind
    release: bool = False  # the products are released (stop, end)
    window: Window | None = None
    records: Records | None = None  # the period in force's records are rewritten so
    already: str | None = None  # a repeat: nothing happens; the reply says "already <this>"
    refuse: str | None = None  # a refusal: "<experiment> <this>"


_FINAL_STOPPED = "was stopped; a stopped experiment is final"
_FINAL_ENDED = "has ended; an ended experiment is final"
_QUIET = Rule(already="final")  # the clock has nothing to do with a final experiment
_BEING_CREATED = Rule(refuse="is still being created")
_WAITS = Rule(already="being created")  # the clock waits until it is opened
_PAUSE = Rule(Phase.PAUSED, "paused", window=Window.OPEN)
_STOP = Rule(Phase.STOPPED, "stopped", release=True, window=Window.OPEN)
_END = Rule(Phase.ENDED, "ended", release=True)

RULES: Mapping[tuple[Phase, Kind], Rule] = {
    # creating: its products are being claimed; nothing is visible yet
    (Phase.CREATING, Kind.PAUSE): _BEING_CREATED,
    (Phase.CREATING, Kind.RESUME): _BEING_CREATED,
    (Phase.CREATING, Kind.STOP): _BEING_CREATED,
    (Phase.CREATING, Kind.FLIP): _WAITS,
    (Phase.CREATING, Kind.END): _WAITS,
    (Phase.CREATING, Kind.FREEZE_ON): _WAITS,
    (Phase.CREATING, Kind.FREEZE_OFF): _WAITS,
    # created: nothing is in force yet
    (Phase.CREATED, Kind.PAUSE): _PAUSE,
    (Phase.CREATED, Kind.RESUME): Rule(already="not paused"),
    (Phase.CREATED, Kind.STOP): _STOP,
    (Phase.CREATED, Kind.FLIP): Rule(Phase.RUNNING, "started", records=Records.DESIGN),
    (Phase.CREATED, Kind.END): _END,
    (Phase.CREATED, Kind.FREEZE_ON): Rule(announce="frozen"),
    (Phase.CREATED, Kind.FREEZE_OFF): Rule(announce="unfrozen"),
    # running (frozen or not)
    (Phase.RUNNING, Kind.PAUSE): _PAUSE,
    (Phase.RUNNING, Kind.RESUME): Rule(already="running"),
    (Phase.RUNNING, Kind.STOP): _STOP,
    (Phase.RUNNING, Kind.FLIP): Rule(records=Records.DESIGN),
    (Phase.RUNNING, Kind.END): _END,
    (Phase.RUNNING, Kind.FREEZE_ON): Rule(announce="frozen", records=Records.DESIGN),
    (Phase.RUNNING, Kind.FREEZE_OFF): Rule(announce="unfrozen", records=Records.DESIGN),
    # paused: on control whatever the clock does, until resumed or stopped
    (Phase.PAUSED, Kind.PAUSE): Rule(already="paused"),
    (Phase.PAUSED, Kind.RESUME): Rule(
        Phase.RUNNING, "resumed", window=Window.CLOSE, records=Records.DESIGN
    ),
    (Phase.PAUSED, Kind.STOP): _STOP,
    (Phase.PAUSED, Kind.FLIP): Rule(records=Records.CONTROL),
    (Phase.PAUSED, Kind.END): _END,
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
    """What an event does to an experiment: the state after it, the event it announces, and
    its effects (:class:`Rule`), which the flipper carries out as they are."""

    before: State
    after: State
    announce: str | None = None
    release: bool = False
    already: str | None = None  # set: nothing changed
    window: Window | None = None
    records: Records | None = None

    @property
    def publish(self) -> bool:
        """A new decision for the pricing systems: the mode or the period in force changed."""
        if self.already is not None or self.after.mode is None:
            return False
        return (self.after.mode, self.after.period) != (self.before.mode, self.before.period)

    @property
    def flip(self) -> bool:
        """The period in force moved on: a flip (counted, with the boundaries it missed or
        backfilled, and announced as ``flipped`` when the decision announces nothing else)."""
        return self.already is None and self.after.period > self.before.period

    @property
    def rewrite(self) -> Records | None:
        """The policy the records of the period in force are rewritten with, if any (there
        are none to write before the first period)."""
        return self.records if self.after.period >= 0 else None


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
    return Outcome(state, after, announce, rule.release, window=rule.window, records=rule.records)


# ------------------------------------------------------------------ the store's words
def state_of(stored: str, frozen: bool, period: int) -> State:
    """The lifecycle state of a stored experiment (the store keeps 'running' for 'created')."""
    if stored not in status.STORED:
        raise CommandRefused(f"an experiment in state {stored!r} takes no command")
    return State(Phase(stored), frozen, period)


def stored_status(phase: Phase) -> str:
    """The status the store keeps: 'created' is kept as 'running' (product claims, the
    trigger and sales scripts read 'running' as "not paused, not final")."""
    return status.RUNNING if phase is Phase.CREATED else phase.value


# ------------------------------------------------------------------ checks of commands
def check_known(experiment: str, known: Iterable[str]) -> None:
    """Raise :class:`UnknownExperiment` unless ``experiment`` is one of the ``known`` ids (the
    store's index): one sentence, with the nearest id when one is close (a typo)."""
    ids = list(known)
    if experiment in ids:
        return
    near = difflib.get_close_matches(experiment, ids, n=1, cutoff=0.75)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise UnknownExperiment(
        experiment,
        f"there is no experiment {experiment!r} ({hint}pricelab experiment list shows them)",
        near=near[0] if near else None,
    )


def check_recreate(experiment: str, phase: Phase, end: datetime) -> None:
    """A create of an id that exists is a repeat (a retried command) only while the experiment
    is not final: a stopped or ended experiment's id is not reused (its trail, panel and
    estimates stay under it), whatever the spec."""
    if phase is Phase.STOPPED:
        raise CommandRefused(
            f"experiment {experiment!r} was stopped, and ids are not reused (its trail, panel "
            "and estimates stay under it): create the experiment again under a new id"
        )
    if phase is Phase.ENDED:
        raise CommandRefused(
            f"experiment {experiment!r} ended at {end.isoformat()}, and ids are not reused (its "
            "trail, panel and estimates stay under it): create the experiment again under a "
            "new id"
        )


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
    named = list(experiments or ())
    # nothing of an experiment being created is visible yet
    missing = tuple(e for e in named if e not in states or states[e].phase is Phase.CREATING)
    if missing:
        which = (
            f"experiment {missing[0]!r}, which does not exist"
            if len(missing) == 1
            else f"experiments {', '.join(map(repr, missing))}, which do not exist"
        )
        raise UnknownExperiment(
            missing, f"freeze {freeze_id!r} names {which} (pricelab experiment list shows them)"
        )
    for exp in named:
        st = states[exp]
        if st.final:
            raise CommandRefused(
                f"freeze {freeze_id!r} names experiment {exp!r}, which is {st.phase.value}: "
                "a final experiment cannot be frozen"
            )


def _markdown(cell: Callable[[Phase, Kind, Rule], str], *, every_phase: bool) -> str:
    """:data:`RULES` as a Markdown table, phases by events, one ``cell`` a rule (a phase whose
    cells are all empty is left out unless ``every_phase``)."""
    kinds = list(Kind)
    head = "| state \\ event | " + " | ".join(k.value for k in kinds) + " |"
    rows = [head, "|---|" + "---|" * len(kinds)]
    for phase in Phase:
        cells = [cell(phase, kind, RULES[(phase, kind)]) for kind in kinds]
        if every_phase or any(cells):
            rows.append(f"| **{phase.value}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _moves(phase: Phase, kind: Kind, rule: Rule) -> str:
    if rule.refuse is not None:
        return "refused"
    if rule.already is not None:  # the clock's: nothing to do
        return "—" if kind not in COMMANDS else f"already {rule.already}"
    to = rule.to.value if rule.to is not None else phase.value
    if phase is Phase.PAUSED and kind is Kind.RESUME:
        to = "running (created before the start)"
    overlay = {Kind.FREEZE_ON: " +frozen", Kind.FREEZE_OFF: " -frozen"}
    return to + overlay.get(kind, "") + (", released" if rule.release else "")


def _effects(phase: Phase, kind: Kind, rule: Rule) -> str:
    does = []
    if rule.window is Window.OPEN:
        does.append("window opens first")
    if rule.records is not None:
        does.append(f"records: {rule.records.value}")
    if rule.window is Window.CLOSE:
        does.append("windows close after")
    if rule.release:
        does.append("products released")
    return ", ".join(does)


def table_markdown() -> str:
    """:data:`RULES` as the Markdown table docs/operations.md shows (a test keeps them equal)."""
    return _markdown(_moves, every_phase=True)


def effects_markdown() -> str:
    """What each decision of :data:`RULES` does beside moving the state, as the Markdown table
    docs/operations.md shows (a test keeps them equal)."""
    return _markdown(_effects, every_phase=False)
