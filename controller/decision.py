"""A recorded decision: ship one arm, or keep the control, with a reason.

A decision is what the pricing team concluded from the evidence (docs/decision.md's verdict
is evidence, not a decision). It is an operator's command (``pricelab experiment decide``, the
console's decision form): the controller checks it here, writes it to the experiment's audit
trail, and, when asked to, stops the experiment in the same command. It changes nothing in
force by itself: shipping an arm is the pricing system's change, made outside pricelab.

The rules:

- the arm is one of the experiment's arms, by name; the word ``control`` names the control
  arm whatever it is called (``--keep-control``). Naming the control arm is keeping the
  control; naming another arm is shipping it. A decision that says which it is (``ship``:
  ``--ship ARM``, ``--keep-control``, the console's form) is read by that: shipping names the
  arm exactly, so an arm other than the control that is itself named ``control`` can be
  shipped, and keeping names the control arm (by its name or the word). A decision that does
  not say (an older client) and gives the word ``control`` where another arm is named so is
  ambiguous and refused: name the arm the control is called by;
- a decision may be recorded in any state but while the experiment is being created: after
  it stopped or ended too, which is when a team usually decides. The latest decision stands
  (a decision may be revised: the trail keeps every one);
- with ``stop``, the experiment is stopped by the same command, as ``pricelab experiment
  stop`` does (a stopped experiment stays stopped: the reply says ``already``); an ended
  experiment has nothing left to stop, and such a decision is refused, naming the way out.

Pure: the flipper reads the experiment and carries the stop out (controller/flipper.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.arms import ArmSpec
from controller.errors import CommandRefused
from controller.lifecycle import Phase

#: the word that names the control arm, whatever the arm is called
CONTROL = "control"


@dataclass(frozen=True)
class Decision:
    """What was decided: ``arm`` (the arm's name) ships, or (``ship`` false) the control
    arm ``arm`` is kept."""

    arm: str
    ship: bool

    def describe(self) -> str:
        """One phrase, as the trail and the console show it."""
        if self.ship:
            return f"ship arm {self.arm!r}"
        return f"keep the control (arm {self.arm!r})"

    def view(self) -> dict[str, object]:
        return {"arm": self.arm, "ship": self.ship, "decided": self.describe()}


def command_fields(arm: str, ship: bool) -> dict[str, Any]:
    """The decision command's arm fields for a client that knows what it decides (``ship``
    true: ship ``arm``; false: keep the control, ``arm`` naming it). ``ship`` goes on the
    wire only where the arm alone does not say it (:func:`resolve`): an arm named
    ``control`` that is shipped, or the control kept by a name other than the word. A
    controller from before the field refuses a command that carries it, so every other
    decision reaches it as before (issue #55's review)."""
    return {"arm": arm} | ({"ship": ship} if (arm == CONTROL) == ship else {})


def resolve(
    experiment: str, arms: Sequence[ArmSpec], asked: str, ship: bool | None = None
) -> Decision:
    """The decision ``asked`` (an arm's name, or ``control``) names among ``arms``; raise
    :class:`CommandRefused` (one sentence, with the arms to choose from) when it names none
    or is ambiguous. ``ship``: what the decision says it does (True: ship the arm named
    ``asked`` exactly; False: keep the control), or None when it does not say."""
    names = [a.name for a in arms]
    control = next(a.name for a in arms if a.control)
    if ship is True and asked in names:  # a name, never the word: an arm called control ships
        return Decision(asked, ship=asked != control)
    if ship is False:
        if asked in (CONTROL, control):
            return Decision(control, ship=False)
        raise CommandRefused(
            f"keeping the control of experiment {experiment!r} keeps arm {control!r}, not arm "
            f"{asked!r}: ship {asked!r} if that is the decision"
        )
    if ship is None and asked == CONTROL and control != CONTROL and CONTROL in names:
        raise CommandRefused(
            f"'control' is ambiguous in experiment {experiment!r}: an arm other than its "
            f"control is named so; keep the control by its name, {control!r}"
        )
    if asked in (CONTROL, control):
        return Decision(control, ship=False)
    if asked in names:
        return Decision(asked, ship=True)
    near = difflib.get_close_matches(asked, names, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise CommandRefused(
        f"experiment {experiment!r} has no arm {asked!r} ({hint}its arms: {', '.join(names)}; "
        "or 'control' to keep the control)"
    )


def check(experiment: str, phase: Phase, stop: bool) -> None:
    """Refuse (:class:`CommandRefused`, one sentence) a decision the experiment's ``phase``
    cannot take: none while it is being created, and none with ``stop`` once it has ended
    (the lifecycle refuses the other stops that do not apply)."""
    if phase is Phase.CREATING:
        raise CommandRefused(
            f"experiment {experiment!r} is still being created: record the decision once it is"
        )
    if stop and phase is Phase.ENDED:
        raise CommandRefused(
            f"experiment {experiment!r} has ended, so nothing is left to stop: record the "
            "decision without stop"
        )
