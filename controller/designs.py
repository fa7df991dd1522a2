"""Experiment designs: pure functions of (spec, unit, period) that also report P(treatment).

Every design answers ``arm(spec, product, k, context)`` with the arm in force for ``product``
in period ``k`` and the design probability that it is treatment. Randomisation is
deterministic: a keyed hash of (seed, experiment, unit, period) gives each draw, so any
process, at any time, recomputes the same schedule (flips are idempotent, catch-up after
downtime needs no stored RNG state, and `pricelab schedule` shows exactly what will run).

Washout: a product whose arm differs from its arm in the previous period (or that enters
the experiment) is in blackout for the first ``spec.washout`` of the period.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.periods import n_periods, period_bounds
from controller.spec import Arm, Design, ExperimentSpec

_TWO64 = float(2**64)


def uniform(*key: object) -> float:
    """A deterministic U[0, 1) draw keyed by ``key`` (stable across processes and versions)."""
    h = hashlib.blake2b("\x1f".join(map(str, key)).encode(), digest_size=8).digest()
    return struct.unpack(">Q", h)[0] / _TWO64


@dataclass(frozen=True)
class DesignContext:
    """Run-time facts a design may need beyond the spec (e.g. trigger times from events)."""

    triggers: Mapping[str, int] = field(default_factory=dict)  # product -> trigger period


@dataclass(frozen=True)
class Assignment:
    experiment: str
    product: str
    period: int
    arm: Arm
    probability: float
    policy: str
    period_start: datetime
    period_end: datetime
    blackout_until: datetime | None = None
    blackout_reason: str | None = None

    @property
    def in_blackout_at_start(self) -> bool:
        return self.blackout_until is not None

    def in_blackout(self, ts: datetime) -> bool:
        return self.blackout_until is not None and self.period_start <= ts < self.blackout_until


def _random_days(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> tuple[Arm, float]:
    u = uniform(spec.seed, spec.id, product, k)
    return (Arm.TREATMENT if u < spec.allocation else Arm.CONTROL), spec.allocation


_DESIGNS: dict[Design, Any] = {Design.RANDOM_DAYS: _random_days}


def register_design(design: Design, fn: Any) -> None:
    _DESIGNS[design] = fn


def arm(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> tuple[Arm, float]:
    """Arm in force and P(treatment) for ``product`` in period ``k`` (0 <= k < n_periods)."""
    try:
        fn = _DESIGNS[spec.design]
    except KeyError:
        raise NotImplementedError(f"design {spec.design.value!r} is not implemented yet") from None
    return fn(spec, product, k, context or DesignContext())  # type: ignore[no-any-return]


def assign(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> Assignment:
    """The full assignment of ``product`` for period ``k``, with its washout window."""
    ctx = context or DesignContext()
    a, p = arm(spec, product, k, ctx)
    start, end = period_bounds(spec, k)
    blackout_until = None
    reason = None
    if spec.washout:
        switched = k == 0 or arm(spec, product, k - 1, ctx)[0] != a
        if switched:
            blackout_until = min(start + spec.washout, end)
            reason = "washout"
    return Assignment(
        experiment=spec.id,
        product=product,
        period=k,
        arm=a,
        probability=p,
        policy=spec.policy(a),
        period_start=start,
        period_end=end,
        blackout_until=blackout_until,
        blackout_reason=reason,
    )


def assign_period(
    spec: ExperimentSpec, k: int, context: DesignContext | None = None
) -> list[Assignment]:
    return [assign(spec, p, k, context) for p in spec.all_products()]


def schedule(spec: ExperimentSpec, context: DesignContext | None = None) -> list[Assignment]:
    """Every unit x period assignment of the experiment, in period then product order."""
    return [a for k in range(n_periods(spec)) for a in assign_period(spec, k, context)]
