"""The console's decision form and route: what a ``POST /api/experiments/{id}/decision``
sends, read from its JSON or form fields as ``pricelab experiment decide`` sends it.

Who may: recording a decision needs the ``decide`` permission (analyst, admin); one that also
stops the experiment needs ``operate`` as well (an admin; an analyst records the decision and
an operator stops), as the issue's "stopping or shipping needs a publish permission" reads.
The rule of the decision itself (which arms, which states) is the controller's
(controller.decision): the console sends it and shows the reply.
"""

from __future__ import annotations

from typing import Any

from controller.decision import CONTROL, command_fields
from streams.worker.schemas import is_ident

#: what a form's checkbox or a JSON body may say for ``stop``
_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no", ""})


class DecisionRefused(ValueError):
    """A decision's fields that cannot be sent (the console answers 422 with the sentence)."""


def decision_stops(fields: dict[str, Any]) -> bool:
    """Whether the decision asks to stop the experiment: JSON true or false, or a form's
    checkbox (``true``/``on`` when ticked, absent when not)."""
    given = fields.get("stop", False)
    if isinstance(given, bool):
        return given
    if isinstance(given, str) and given.strip().lower() in _TRUE | _FALSE:
        return given.strip().lower() in _TRUE
    raise DecisionRefused(f"stop is true or false, not {given!r}")


def decision_ships(fields: dict[str, Any]) -> bool | None:
    """What the decision says it does: ``ship`` true (ship the arm named exactly) or false
    (keep the control), as JSON or a form's text; None when it does not say."""
    given = fields.get("ship")
    if given is None or isinstance(given, bool):
        return given
    if isinstance(given, str) and given.strip().lower() in _TRUE | _FALSE - {""}:
        return given.strip().lower() in _TRUE
    raise DecisionRefused(f"ship is true or false, not {given!r}")


def decision_command(exp_id: str, reason: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The decision command's fields: the arm to ship (or ``control``), whether it ships
    (the form's choice, ``keep``, ``keep:CONTROL_NAME`` or ``ship:ARM``, says so, sent only
    where the arm does not, ``controller.decision.command_fields``; the API's ``ship``, as
    given),
    whether it stops the experiment, and the reason. The form says it, so that an arm other
    than the control that is named ``control`` can be shipped (controller.decision)."""
    choice = fields.get("decision")
    ship: bool | None
    if choice is not None:
        choice = str(choice).strip()
        if choice == "keep":
            arm, ship = CONTROL, False
        elif choice.startswith("keep:"):  # by the control's name (an arm is named control)
            arm, ship = choice.removeprefix("keep:").strip(), False
        elif choice.startswith("ship:"):
            arm, ship = choice.removeprefix("ship:").strip(), True
        else:
            raise DecisionRefused(f"decision is keep or ship:ARM, not {choice!r}")
    else:  # the API's JSON: ``ship`` as given
        arm, ship = str(fields.get("arm") or "").strip(), decision_ships(fields)
    if not arm:
        raise DecisionRefused(
            "a decision names its arm: the arm to ship, or control to keep the control"
        )
    if not is_ident(arm):
        raise DecisionRefused(f"arm: {arm!r} is not an arm's name (letters, digits, '_', '.', '-')")
    command = {"experiment": exp_id, "stop": decision_stops(fields), "reason": reason}
    if choice is not None and ship is not None:  # the form: ship only where it is needed
        return command | command_fields(arm, ship)
    return command | {"arm": arm} | ({} if ship is None else {"ship": ship})
