"""Blackout windows beyond the design's own: operator freezes, and "was this in blackout, why".

A :class:`Freeze` is an operator decision: over ``[start, end)`` the experiments it names (or
all of them) run their control policy and the data is excluded. :func:`apply_freezes` lays the
freezes that apply over one :class:`~controller.designs.Assignment`:

- each stretch of the period covered by a freeze becomes a ``freeze`` blackout whose forced
  policy is the control policy (``Assignment.policy_at`` answers what ran at an instant);
- a freeze covering the period start also sets ``policy`` (what is published at the boundary)
  to control, and ``blackout_until``/``blackout_reason`` to the freeze;
- when a freeze ends inside the period, or ended exactly at its start, and the design policy is
  not control, the return to treatment is a switch: a ``washout`` follows it.

:func:`explain` answers, for one product and instant, whether the data is in blackout and why.
Pure: the Redis store keeps the freezes and calls these functions; ``load_freeze`` validates
one (a bad freeze raises SpecError naming the field, like a bad spec).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from controller.designs import Assignment, Blackout, Window
from controller.errors import SpecError
from controller.spec import Arm, ExperimentSpec, check_id, load_model

_TICK = timedelta(microseconds=1)


class Freeze(BaseModel):
    """An operator freeze: control policy and excluded data over ``[start, end)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    start: datetime
    end: datetime
    experiments: Literal["all"] | tuple[str, ...] = Field(
        default="all", description="'all', or the ids of the experiments it freezes."
    )
    reason: str = ""

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return check_id(v)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("must carry a UTC offset")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end <= self.start:
            raise SpecError("end", "must be after start")
        if self.experiments != "all" and not self.experiments:
            raise SpecError("experiments", "name at least one experiment, or 'all'")
        return self

    def applies_to(self, experiment: str) -> bool:
        return self.experiments == "all" or experiment in self.experiments

    def covers(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


def load_freeze(data: dict[str, Any] | str | bytes) -> Freeze:
    """Validate a freeze given as a mapping or JSON; raise SpecError naming the field."""
    return load_model(Freeze, data)


def freezes_of(docs: Iterable[dict[str, Any]]) -> list[Freeze]:
    """The freezes in the store's documents (``ExperimentStore.freezes``)."""
    return [load_freeze(d["freeze"]) for d in docs if "freeze" in d]


def _union(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def apply_freezes(
    spec: ExperimentSpec, assignment: Assignment, freezes: Iterable[Freeze]
) -> Assignment:
    """The assignment with every applicable freeze (and the washout after it) laid over it."""
    a = assignment
    ps, pe = a.period_start, a.period_end
    mine = [f for f in freezes if f.applies_to(a.experiment)]
    spans = _union(
        [(max(f.start, ps), min(f.end, pe)) for f in mine if f.start < pe and f.end > ps]
    )
    if not spans and not any(f.covers(ps - _TICK) for f in mine):
        return a
    control = spec.control_arm.policy
    added: list[Blackout] = []
    for s, e in spans:
        ids = ",".join(sorted(f.id for f in mine if f.start < e and f.end > s))
        added.append(Blackout(s, e, "freeze", policy=control, source=ids))
    # returning from control to any other arm's policy is a switch: washout after each freeze
    if spec.washout and a.policy != control:
        ends = [e for _, e in spans if e < pe]
        if any(f.covers(ps - _TICK) for f in mine) and not any(s == ps for s, _ in spans):
            ends.append(ps)
        for e in ends:
            added.append(Blackout(e, min(e + spec.washout, pe), "washout"))
    blackouts = a.blackouts + tuple(added)
    frozen_at_start = any(b.reason == "freeze" and b.start == ps for b in added)
    until = _chain_end(blackouts, ps)
    reason = "freeze" if frozen_at_start else (a.blackout_reason or ("washout" if until else None))
    return replace(
        a,
        policy=control if frozen_at_start else a.policy,
        design_policy=a.design_policy or a.policy,
        blackout_until=until,
        blackout_reason=reason,
        blackouts=blackouts,
    )


def _chain_end(blackouts: tuple[Blackout, ...], start: datetime) -> datetime | None:
    """End of the unbroken run of blackout that begins at ``start`` (None if none does)."""
    end: datetime | None = None
    for b in sorted(blackouts, key=lambda b: b.start):
        if end is None and b.start == start:
            end = b.end
        elif end is not None and b.start <= end:
            end = max(end, b.end)
    return end


@dataclass(frozen=True)
class Explanation:
    """Why a product's data at one instant is, or is not, in blackout."""

    experiment: str
    product: str
    at: datetime
    period: int
    arm: Arm
    policy: str  # the policy in force at ``at``
    window: Window
    in_blackout: bool
    reasons: tuple[str, ...]  # e.g. ("washout",), ("freeze:f1 (stock-take)",)
    blackouts: tuple[Blackout, ...]

    @property
    def excluded(self) -> bool:
        """Not usable as a randomised comparison: in blackout, or outside the unit's window."""
        return self.in_blackout or self.window != Window.RANDOMISED


def explain(
    spec: ExperimentSpec,
    assignment: Assignment,
    at: datetime,
    freezes: Iterable[Freeze] = (),
) -> Explanation:
    """Was ``assignment.product`` in blackout at instant ``at``, and why."""
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    if not assignment.period_start <= at < assignment.period_end:
        raise ValueError(
            f"{at.isoformat()} is outside period {assignment.period} "
            f"[{assignment.period_start.isoformat()}, {assignment.period_end.isoformat()})"
        )
    freezes = list(freezes)
    a = apply_freezes(spec, assignment, freezes) if freezes else assignment
    covering = a.covering(at)
    by_id = {f.id: f for f in freezes}
    reasons: list[str] = []
    for b in covering:
        if b.reason == "freeze" and b.source:
            for fid in b.source.split(","):
                why = by_id[fid].reason if fid in by_id else ""
                reasons.append(f"freeze:{fid}" + (f" ({why})" if why else ""))
        else:
            reasons.append(b.reason)
    return Explanation(
        experiment=a.experiment,
        product=a.product,
        at=at,
        period=a.period,
        arm=a.arm,
        policy=a.policy_at(at),
        window=a.window,
        in_blackout=bool(covering),
        reasons=tuple(dict.fromkeys(reasons)),
        blackouts=covering,
    )
