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


def decision_command(exp_id: str, reason: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The decision command's fields: the arm to ship (or ``control``), whether it stops the
    experiment, and the reason."""
    arm = str(fields.get("arm") or "").strip()
    if not arm:
        raise DecisionRefused(
            "a decision names its arm: the arm to ship, or control to keep the control"
        )
    if not is_ident(arm):
        raise DecisionRefused(f"arm: {arm!r} is not an arm's name (letters, digits, '_', '.', '-')")
    return {"experiment": exp_id, "arm": arm, "stop": decision_stops(fields), "reason": reason}
