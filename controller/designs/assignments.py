"""Assignments with their blackouts, built from any design through the ``Design`` interface.

Everything that asks "who gets what, when" calls this module: the flip
(:func:`period_assignments`), ``pricelab schedule`` (:func:`assign`), the trigger runner
(:func:`assign_products`), and the market simulator and ``compare-designs``
(:func:`design_matrices`, built from the same whole-period draws as the flip).

Blackouts at the start of a period:

- washout: a product whose arm differs from its arm in the previous period (any change of
  arm, also between two arms that are not control), that enters the experiment (period 0) or
  whose window opens (every arm) is in blackout for ``spec.washout``;
- design blackout: a period the design blacks out whole (crossover phase starts).

Operator freezes are applied on top by :mod:`controller.blackout`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import overload

import numpy as np

from controller.designs.base import Design, DesignContext, Draw, Window, arm_index, design_of
from controller.periods import is_empty, n_periods, period_bounds, previous_period
from controller.spec import Arm, ExperimentSpec


@dataclass(frozen=True)
class Blackout:
    """A time range whose data is discarded; ``policy`` is forced during it when not None."""

    start: datetime
    end: datetime
    reason: str  # "washout", "phase-blackout" or "freeze"
    policy: str | None = None
    source: str | None = None  # the freeze id, for freezes

    def covers(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


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
    window: Window = Window.RANDOMISED
    matched_to: str | None = None
    blackouts: tuple[Blackout, ...] = ()
    # the design's policy when ``policy`` was overridden at the period start (by a freeze)
    design_policy: str | None = None
    # the arm's place in the spec's arm list (None only where an Assignment is made by hand)
    index: int | None = None
    # the arm's name and price ratio, given only for a spec with ``arms:`` (a two-arm
    # shorthand spec names its arm by its role, ``arm``, as it always has): the design's arm,
    # or the control arm once a pause, stop, end or freeze in force puts control on it
    arm_name: str | None = None
    price_ratio: float | None = None
    # an adaptive ladder's (docs/adaptive.md): each arm's name and the probability the
    # period's cells were drawn with, in the spec's arm order (None for a fixed allocation)
    arm_probabilities: tuple[tuple[str, float], ...] | None = None

    @property
    def in_blackout_at_start(self) -> bool:
        return self.blackout_until is not None

    @property
    def excluded(self) -> bool:
        """True when the blackout from the period start covers the whole period: the cell's
        data is discarded (the analysis panel marks it ``blackout``)."""
        return self.blackout_until is not None and self.blackout_until >= self.period_end

    def covering(self, ts: datetime) -> tuple[Blackout, ...]:
        """The blackout windows that contain instant ``ts``.

        The run from the period start given by ``blackout_until``/``blackout_reason`` counts
        too, also when it was set without a matching entry in ``blackouts`` (e.g. by
        ``dataclasses.replace``).
        """
        found = tuple(b for b in self.blackouts if b.covers(ts))
        if self.blackout_until is not None:
            run = Blackout(self.period_start, self.blackout_until, self.blackout_reason or "")
            listed = any(
                b.reason == run.reason and b.start == self.period_start for b in self.blackouts
            )
            if run.covers(ts) and not listed:
                found += (run,)
        return found

    def in_blackout(self, ts: datetime) -> bool:
        return bool(self.covering(ts))

    def policy_at(self, ts: datetime) -> str:
        """The policy in force at ``ts`` (a freeze forces the control policy)."""
        for b in self.covering(ts):
            if b.policy is not None:
                return b.policy
        return self.design_policy or self.policy


# ----------------------------------------------------------------------------- single cells
def _check_unit(spec: ExperimentSpec, product: str) -> None:
    if product not in spec.units():
        raise KeyError(f"{product!r} is not a unit of experiment {spec.id!r}")


def draw(spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None) -> Draw:
    """Arm, P(not control) and window state of ``product`` in period ``k``."""
    _check_unit(spec, product)
    return design_of(spec).draw(spec, product, k, context or DesignContext())


def arm(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> tuple[Arm, float]:
    """Arm (its role) in force and P(not control) for ``product`` in period ``k``
    (0 <= k < n_periods)."""
    d = draw(spec, product, k, context)
    return d.arm, d.probability


def path_probability(
    spec: ExperimentSpec,
    product: str,
    k: int,
    lag: int,
    target: Arm | str | int,
    context: DesignContext | None = None,
) -> float:
    """P(product's arms in periods k-lag..k are all ``target``) under the design: an arm's
    index in the spec's arm list, or (two arms) its role.

    This is the weight denominator of the Horvitz-Thompson lag-p estimator of Bojinov,
    Simchi-Levi & Zhao (2023). For triggered designs it is conditional on the trigger
    periods (and matches) in ``context``.
    """
    if lag < 0 or k - lag < 0:
        raise ValueError(f"the window {k - lag}..{k} must lie inside the experiment")
    return design_of(spec).path_probability(
        spec, product, range(k - lag, k + 1), spec.index_of(target), context or DesignContext()
    )


class _PeriodFacts:
    """What every product's assignment in period k shares, computed once per period
    (period bounds in the time zone, the previous non-empty period, the design blackout):
    a flip of a million products would otherwise redo them a million times."""

    def __init__(self, spec: ExperimentSpec, k: int, ctx: DesignContext) -> None:
        self.spec, self.k, self.ctx = spec, k, ctx
        self.design: Design = design_of(spec)
        self.start, self.end = period_bounds(spec, k)
        self.prev = previous_period(spec, k) if spec.washout and k != 0 else None
        self.phase_blackout = self.design.phase_blackout(spec, k)
        self.washout_end = min(self.start + spec.washout, self.end)
        self.shares: tuple[tuple[str, float], ...] | None = None
        if spec.adaptive is not None:  # an adaptive ladder: its period's probabilities
            p = ctx.probabilities.get(k, spec.allocations())
            names = [a.name for a in spec.arm_list()]
            self.shares = tuple(zip(names, map(float, p), strict=True))

    def draw(self, product: str) -> tuple[Draw, bool]:
        """The design's draw for ``product`` and whether it starts the period with a washout."""
        spec, ctx = self.spec, self.ctx
        d = self.design.draw(spec, product, self.k, ctx)
        if not spec.washout:
            return d, False
        if self.prev is None:
            return d, True
        prev = self.design.draw(spec, product, self.prev, ctx)
        opened = prev.window == Window.PENDING and d.window != Window.PENDING
        return d, arm_index(spec, prev) != arm_index(spec, d) or opened

    def build(self, product: str, d: Draw, switched: bool) -> Assignment:
        spec, start, end = self.spec, self.start, self.end
        blackouts: list[Blackout] = []
        if self.phase_blackout:
            blackouts.append(Blackout(start, end, "phase-blackout"))
        if switched:
            blackouts.append(Blackout(start, self.washout_end, "washout"))
        blackout_until = max((b.end for b in blackouts), default=None)
        reason = blackouts[0].reason if blackouts else None
        index = arm_index(spec, d)
        named = spec.arm_list()[index] if spec.arms else None
        return Assignment(
            experiment=spec.id,
            product=product,
            period=self.k,
            arm=d.arm,
            probability=d.probability,
            policy=spec.policy(index),
            period_start=start,
            period_end=end,
            blackout_until=blackout_until,
            blackout_reason=reason,
            window=d.window,
            matched_to=d.matched_to,
            blackouts=tuple(blackouts),
            index=index,
            arm_name=None if named is None else named.name,
            price_ratio=None if named is None else named.price_ratio,
            arm_probabilities=self.shares,
        )

    def assign(self, product: str) -> Assignment:
        return self.build(product, *self.draw(product))

    def switched(self, products: Sequence[str], codes: np.ndarray, draws: list[Draw]) -> np.ndarray:
        """Which products start the period with a washout, from the whole-period draws."""
        n = len(products)
        if not self.spec.washout:
            return np.zeros(n, dtype=bool)
        if self.prev is None:
            return np.ones(n, dtype=bool)
        prev_codes, prev_draws = self.design.period_draws(self.spec, products, self.prev, self.ctx)
        index, pending = _facts(self.spec, draws)
        prev_index, prev_pending = _facts(self.spec, prev_draws)
        opened = prev_pending[prev_codes] & ~pending[codes]
        return np.asarray((index[codes] != prev_index[prev_codes]) | opened)


def _facts(spec: ExperimentSpec, draws: Sequence[Draw]) -> tuple[np.ndarray, np.ndarray]:
    """(arm index, pending) of each distinct draw."""
    return (
        np.array([arm_index(spec, d) for d in draws], dtype=np.int64),
        np.array([d.window == Window.PENDING for d in draws], dtype=bool),
    )


def assign(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> Assignment:
    """The full assignment of ``product`` for period ``k``, with its blackout windows."""
    _check_unit(spec, product)
    return _PeriodFacts(spec, k, context or DesignContext()).assign(product)


def assign_products(
    spec: ExperimentSpec, cells: Sequence[tuple[str, int]], context: DesignContext | None = None
) -> list[Assignment]:
    """The assignments of (product, period) cells, in order (period facts computed once each)."""
    ctx = context or DesignContext()
    units = spec.units()
    facts: dict[int, _PeriodFacts] = {}
    out = []
    for product, k in cells:
        if product not in units:
            raise KeyError(f"{product!r} is not a unit of experiment {spec.id!r}")
        f = facts.get(k)
        if f is None:
            f = facts[k] = _PeriodFacts(spec, k, ctx)
        out.append(f.assign(product))
    return out


# ----------------------------------------------------------------------------- whole periods
class PeriodAssignments(Sequence[Assignment]):
    """Every product's assignment for one period, held as the few distinct assignments of the
    period (templates, with an empty product) and each product's template index.

    A million-product flip builds a handful of assignment objects; the store and the
    publisher encode each template once. Indexing or iterating gives ordinary
    :class:`Assignment` objects, equal to :func:`assign` for each product.
    """

    def __init__(
        self, products: Sequence[str], codes: Sequence[int], templates: Sequence[Assignment]
    ) -> None:
        if len(products) != len(codes):
            raise ValueError("one template index per product")
        self.products = products
        self.codes = codes
        self.templates = tuple(templates)

    def __len__(self) -> int:
        return len(self.products)

    @overload
    def __getitem__(self, i: int) -> Assignment: ...

    @overload
    def __getitem__(self, i: slice) -> list[Assignment]: ...

    def __getitem__(self, i: int | slice) -> Assignment | list[Assignment]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return replace(self.templates[self.codes[i]], product=self.products[i])

    def __iter__(self) -> Iterator[Assignment]:
        t = self.templates
        for p, c in zip(self.products, self.codes, strict=True):
            yield replace(t[c], product=p)

    def map(self, fn: Callable[[Assignment], Assignment]) -> PeriodAssignments:
        """``fn`` applied to every assignment; ``fn`` must not depend on the product (it is
        applied once per template), e.g. operator freezes or a forced control."""
        return PeriodAssignments(self.products, self.codes, [fn(t) for t in self.templates])


def period_assignments(
    spec: ExperimentSpec, k: int, context: DesignContext | None = None
) -> PeriodAssignments:
    """Every product's assignment for period ``k`` (equal to :func:`assign` product by product,
    built once per distinct assignment from the design's whole-period draws)."""
    facts = _PeriodFacts(spec, k, context or DesignContext())
    products = spec.all_products()
    codes, draws = facts.design.period_draws(spec, products, k, facts.ctx)
    switched = facts.switched(products, codes, draws)
    keys = codes * 2 + switched
    distinct, index = np.unique(keys, return_inverse=True)
    templates = [facts.build("", draws[int(c) >> 1], bool(c & 1)) for c in distinct]
    return PeriodAssignments(products, index.ravel().tolist(), templates)


def forced_control(spec: ExperimentSpec, a: Assignment, reason: str) -> Assignment:
    """``a`` on the control arm's policy and in blackout for its whole period (pause, stop,
    end, a freeze in force): the control arm's name and price ratio too, for an ``arms:``
    spec."""
    arm = spec.control_arm
    control = arm.policy
    whole = Blackout(a.period_start, a.period_end, reason, policy=control)
    return replace(
        a,
        arm=Arm.CONTROL,
        policy=control,
        index=spec.control_index,
        arm_name=arm.name if spec.arms else None,
        price_ratio=arm.price_ratio if spec.arms else None,
        design_policy=None,
        blackout_until=a.period_end,
        blackout_reason=reason,
        blackouts=(whole,),
    )


def assign_period(
    spec: ExperimentSpec, k: int, context: DesignContext | None = None
) -> list[Assignment]:
    facts = _PeriodFacts(spec, k, context or DesignContext())
    return [facts.assign(p) for p in spec.all_products()]


def schedule(spec: ExperimentSpec, context: DesignContext | None = None) -> list[Assignment]:
    """Every unit x period assignment, in period then product order (empty periods skipped)."""
    return [
        a
        for k in range(n_periods(spec))
        if not is_empty(spec, k)
        for a in assign_period(spec, k, context)
    ]


Sampler = Callable[[int, Sequence[str], Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class DesignMatrices:
    """An experiment's whole assignment as unit x period matrices (rows in ``units`` order).

    ``treated``: an arm other than control in force; ``probability``: the design P(not
    control); ``blackout``: the cell's data is discarded (the whole period is blacked out);
    ``washout``: the period starts with a washout; ``arm``: the index in the spec's arm list of
    the arm in force (two arms: 0 treatment, 1 control). The same draws as the flip:
    :func:`period_assignments` period by period.
    """

    units: tuple[str, ...]
    treated: np.ndarray
    probability: np.ndarray
    blackout: np.ndarray
    washout: np.ndarray
    arm: np.ndarray

    @property
    def analysed(self) -> np.ndarray:
        """Cells of the randomised comparison: a design probability strictly between 0 and 1,
        not blacked out."""
        p = self.probability
        return (p > 0) & (p < 1) & ~self.blackout


def design_sampler(spec: ExperimentSpec, context: DesignContext | None = None) -> Sampler:
    """Fresh draws of ``spec``'s design: ``sample(seed, units, periods)`` is the arm matrix the
    design gives with ``seed`` in place of the spec's seed (the same code as the flip, so the
    draws have exactly the live design's distribution; triggers stay those of ``context``)."""
    ctx = context or DesignContext()

    def sample(seed: int, units: Sequence[str], periods: Sequence[int]) -> np.ndarray:
        alt = spec.model_copy(update={"seed": int(seed)})
        return design_matrices(alt, units, DesignContext(triggers=ctx.triggers), periods).treated

    return sample


def design_matrices(
    spec: ExperimentSpec,
    units: Sequence[str] | None = None,
    context: DesignContext | None = None,
    periods: Sequence[int] | None = None,
) -> DesignMatrices:
    """The assignment of ``periods`` (default: every period of ``spec``; empty DST-gap periods
    are all control and blacked out) for ``units`` (default: every product, in spec order).
    With k arms, ``arm`` says which arm and ``treated`` that it is not the control."""
    ctx = context or DesignContext()
    products = spec.all_products()
    rows = list(products if units is None else units)
    where = {p: i for i, p in enumerate(products)}
    try:
        pick = np.array([where[u] for u in rows], dtype=np.int64)
    except KeyError as exc:
        raise KeyError(f"{exc.args[0]!r} is not a unit of experiment {spec.id!r}") from None
    ks = list(range(n_periods(spec)) if periods is None else periods)
    shape = (len(rows), len(ks))
    W = np.zeros(shape, dtype=bool)
    P = np.zeros(shape)
    B = np.zeros(shape, dtype=bool)
    S = np.zeros(shape, dtype=bool)
    A = np.full(shape, spec.control_index, dtype=np.int8)
    for j, k in enumerate(ks):
        if is_empty(spec, k):
            B[:, j] = True
            continue
        pa = period_assignments(spec, k, ctx)
        codes = np.asarray(pa.codes, dtype=np.int64)[pick]
        t = pa.templates
        A[:, j] = np.array([a.index for a in t], dtype=np.int8)[codes]
        W[:, j] = A[:, j] != spec.control_index
        P[:, j] = np.array([a.probability for a in t])[codes]
        B[:, j] = np.array([a.excluded for a in t], dtype=bool)[codes]
        S[:, j] = np.array(
            [any(b.reason == "washout" for b in a.blackouts) for a in t], dtype=bool
        )[codes]
    return DesignMatrices(tuple(rows), W, P, B, S, A)
