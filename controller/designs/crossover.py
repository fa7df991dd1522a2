"""Crossover with blackout: groups rotate through the arms phase by phase; each phase opens in
blackout.

The groups follow the rows of a Williams design (Williams 1949; built as R's
``crossdes::williams``): each row is a sequence of the arms, every arm appears equally often in
every phase, and every ordered pair of distinct arms follows each other equally often (balanced
for first-order carryover). Each class's products are split among the rows by complete
randomisation. With two arms the rows are [treatment, control] (group A, the allocated share)
and [control, treatment] (group B): group A is treated in even phases and group B in odd ones.
More arms need equal allocations (equal groups are what balances the design) and at least one
phase per arm. Every product changes arm at every phase start, so the washout opens there; the
first ``blackout_periods`` periods of every phase are blacked out whole (their data is
discarded), as in the origin article's 3-week phases with a 1-week blackout. Analysed by
two-way fixed effects on the usable cells (each product against itself across phases) and by
the difference in means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from controller.designs.base import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    arm_draw,
    complete_split,
    group_path,
    register,
    split_codes,
)
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import ALLOCATION_SUM_TOLERANCE, CrossoverSettings, ExperimentSpec
from core.ports import EstimatorPlan


def williams(k: int) -> tuple[tuple[int, ...], ...]:
    """The rows of a Williams design for k arms (0..k-1), balanced for first-order carryover.

    First row 0, 1, k-1, 2, k-2, ...; row i adds i (mod k); for odd k the k mirrored rows are
    added. Even k: k rows, each ordered pair of distinct arms adjacent once; odd k: 2k rows,
    twice. k = 2: [[0, 1], [1, 0]].
    """
    if k < 2:
        raise ValueError(f"a Williams design needs at least 2 arms, not {k}")
    first, lo, hi = [0], 1, k - 1
    while len(first) < k:
        first.append(lo)
        lo += 1
        if len(first) < k:
            first.append(hi)
            hi -= 1
    rows = [tuple((x + i) % k for x in first) for i in range(k)]
    if k % 2:
        rows += [r[::-1] for r in rows]
    return tuple(rows)


def phase(spec: ExperimentSpec, k: int) -> int:
    assert spec.crossover is not None
    return k // spec.crossover.phase_periods


def sequences(spec: ExperimentSpec) -> tuple[tuple[int, ...], ...]:
    """The rows of the experiment's Williams design, as arm indices."""
    return williams(spec.n_arms)


def row_shares(spec: ExperimentSpec) -> tuple[float, ...]:
    """Each row's share of the units: two arms, row r (which starts on arm r) gets arm r's
    allocation (group A the treated share, as always); more arms, equal rows."""
    rows = sequences(spec)
    if spec.n_arms == 2:
        return spec.allocations()
    return tuple(1.0 / len(rows) for _ in rows)


def groups(spec: ExperimentSpec) -> dict[str, int]:
    """Each product's row (complete randomisation within each class)."""
    return complete_split(spec, spec.strata(), "crossover", row_shares(spec))


def phase_probability(spec: ExperimentSpec, ph: int) -> float:
    """P(not control) in phase ``ph``: the share of the rows not on control (two arms: a in
    even phases, 1 - a in odd ones); with more arms every phase has each arm's share."""
    if spec.n_arms > 2:
        return spec.allocation
    rows, control = sequences(spec), spec.control_index
    total = 0.0
    for share, row in zip(row_shares(spec), rows, strict=True):
        if row[ph % len(row)] != control:
            total += share
    return total


class Crossover(Design):
    name = "crossover"
    settings_field = "crossover"
    settings_required = True

    def validate(self, spec: ExperimentSpec) -> None:
        c = spec.crossover
        assert c is not None
        if c.blackout_periods >= c.phase_periods:
            raise SpecError(
                "crossover.blackout_periods", f"must be shorter than a phase ({c.phase_periods})"
            )
        t, k = n_periods(spec), spec.n_arms
        alloc = spec.allocations()
        if k > 2 and max(alloc) - min(alloc) > ALLOCATION_SUM_TOLERANCE:
            raise SpecError(
                "arms",
                f"a crossover of {k} arms needs equal allocations (the Williams design rotates "
                f"equal groups through every arm) and at least {k} phases; the allocations are "
                f"{', '.join(f'{a:g}' for a in alloc)}",
            )
        if t < k * c.phase_periods:
            if k == 2:
                raise SpecError(
                    "crossover.phase_periods",
                    f"two phases ({2 * c.phase_periods} periods) must fit in the experiment ({t})",
                )
            raise SpecError(
                "crossover.phase_periods",
                f"a crossover of {k} arms needs equal allocations and at least {k} phases "
                f"({k * c.phase_periods} periods) in the experiment ({t} periods)",
            )

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        row = sequences(spec)[groups(spec)[product]]
        ph = phase(spec, k)
        return arm_draw(spec, row[ph % len(row)], phase_probability(spec, ph))

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        """Each product's row, drawn once, mapped to the products: codes into one draw per
        row (two arms: [group A, group B], as always)."""
        ph = phase(spec, k)
        p = phase_probability(spec, ph)
        codes = split_codes(spec, products, groups(spec), "crossover")
        return codes, [arm_draw(spec, row[ph % len(row)], p) for row in sequences(spec)]

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        rows = sequences(spec)
        paths = [[row[phase(spec, s) % len(row)] for s in window] for row in rows]
        return group_path(row_shares(spec), paths, target)

    def phase_blackout(self, spec: ExperimentSpec, k: int) -> bool:
        c = spec.crossover
        assert c is not None
        return k % c.phase_periods < c.blackout_periods

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return True

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        return (EstimatorPlan("crossover"), EstimatorPlan("dm", {"cluster": "unit"}))

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """Groups (half of each category) swap at the middle day; the first third of each phase
        is a blackout (the article's 3-week phases with a 1-week blackout, scaled). With k > 2
        ``arms`` in ``base``, k phases, one per arm of the Williams design."""
        length = market.days // max(len(base.get("arms") or ()), 2)
        return ExperimentSpec(
            **base,
            clusters=dict(market.categories),
            crossover=CrossoverSettings(phase_periods=length, blackout_periods=length // 3),
        )


DESIGN = register(Crossover())
