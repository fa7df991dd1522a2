"""The arms of an experiment: what a spec's ``arms:`` lists, and the rules the list keeps.

A spec gives either the two-arm shorthand (``treatment_policy``, ``control_policy``,
``allocation``, ``price_ratio``: the arms [treatment, control]) or ``arms:``, 2 to 8 arms with a
name, a policy, an allocation, optionally a price ratio, and ``control: true`` on exactly one
(docs/designs.md, "Arms"). :func:`check_arms` says what is wrong with a list in one
:class:`~controller.errors.SpecError` sentence naming ``arms``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.errors import SpecError
from controller.ids import check_id

#: how many arms a spec may have
MIN_ARMS, MAX_ARMS = 2, 8
#: the shorthand for two arms: the fields an ``arms:`` list replaces
SHORTHAND = ("treatment_policy", "control_policy", "allocation", "price_ratio")
#: the designs whose guardrails the analysis worker cannot check per arm: it compares each arm
#: with the control on the pair's cells by a difference in means, and the optimal switchback's
#: guardrails need the Hajek windows, which take each cell's probability per arm (issue #41)
NO_ARM_GUARDRAILS = frozenset({"optimal-switchback"})
#: why the live path refuses guardrails on a k-arm experiment of such a design
LIVE_GUARDRAILS = (
    "are not checked on {k}-arm experiments of the {design} design (its guardrails need each "
    "cell's probability per arm); remove them, or use another design: the others check each "
    "arm against the control"
)
#: how far the allocations of an ``arms:`` list may sum from 1 (float spelling: 0.1 + 0.2)
ALLOCATION_SUM_TOLERANCE = 1e-9


class ArmSpec(BaseModel):
    """One arm of an experiment: its name, the policy the pricing system applies, its share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The arm's name: letters, digits, '_', '.', '-'; at most 64.")
    policy: str = Field(min_length=1, description="The pricing policy the arm's products run.")
    price_ratio: float | None = Field(
        default=None,
        description="The arm's price relative to the control arm's (0.95: a 5% cut); give it "
        "on every arm or on none; the control's is 1.",
    )
    allocation: float = Field(description="Share of units (or periods) in this arm, in (0, 1).")
    control: bool = Field(default=False, description="True on exactly one arm: the control.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        return check_id(v)


def check_arms(arms: Sequence[ArmSpec]) -> None:
    """A SpecError naming ``arms`` (one sentence) for the first rule ``arms`` breaks."""
    k = len(arms)
    if not MIN_ARMS <= k <= MAX_ARMS:
        raise SpecError("arms", f"must list {MIN_ARMS} to {MAX_ARMS} arms, not {k}")
    for what, values in (("name", [a.name for a in arms]), ("policy", [a.policy for a in arms])):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise SpecError("arms", f"each arm needs its own {what}; repeated: {dup[:3]}")
    controls = [a.name for a in arms if a.control]
    if len(controls) != 1:
        found = "none is" if not controls else f"{len(controls)} are ({', '.join(controls)})"
        raise SpecError("arms", f"exactly one arm must have control: true; {found}")
    for a in arms:
        if not 0.0 < a.allocation < 1.0:
            raise SpecError(
                "arms",
                f"arm {a.name!r} has allocation {a.allocation!r}; each allocation must be "
                "strictly between 0 and 1",
            )
    total = math.fsum(a.allocation for a in arms)
    if abs(total - 1.0) > ALLOCATION_SUM_TOLERANCE:
        raise SpecError("arms", f"the allocations sum to {total:.6g}, not 1")
    if all(a.price_ratio is None for a in arms):
        return
    missing = [a.name for a in arms if a.price_ratio is None]
    if missing:
        raise SpecError(
            "arms", f"give price_ratio on every arm or on none; {missing[0]!r} has none"
        )
    for a in arms:
        r = a.price_ratio
        assert r is not None
        if not (math.isfinite(r) and r > 0):
            raise SpecError(
                "arms",
                f"arm {a.name!r} has price_ratio {r!r}; a price ratio must be a finite number "
                "above 0",
            )
    control = next(a for a in arms if a.control)
    if control.price_ratio != 1.0:
        raise SpecError(
            "arms",
            f"the control arm {control.name!r} has price_ratio {control.price_ratio!r}; prices "
            "are relative to control's, so its ratio must be 1",
        )
