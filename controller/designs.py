"""Experiment designs: pure functions of (spec, unit, period) that also report P(treatment).

Every design answers ``arm(spec, product, k, context)`` with the arm in force for ``product``
in period ``k`` and the design probability that it is treatment (``draw`` gives the same plus
the window state). Randomisation is deterministic: a keyed hash of (seed, experiment, unit,
period or block) gives each draw, so any process, at any time, recomputes the same schedule
(flips are idempotent, catch-up after downtime needs no stored RNG state, and
``pricelab schedule`` shows exactly what will run). See docs/designs.md.

Window states. A cell whose arm was drawn by the design is ``RANDOMISED`` and its probability
is the design P(treatment). A cell outside the unit's randomised window (time-bound periods
before ``start_period``, triggered products before their trigger or after their window) is
``PENDING`` or ``ENDED``: it runs the control policy, its probability is 0 (it cannot be
treated) and it is not part of any randomised comparison. A product held in control as the
matched control of another product's treated window is ``MATCHED`` (probability 0).

Blackouts at the start of a period:
- washout: a product whose arm differs from its arm in the previous period, that enters the
  experiment (period 0) or whose window opens (both arms) is in blackout for ``spec.washout``;
- phase blackout (crossover): the first ``blackout_periods`` periods of every phase, whole.
Operator freezes are applied on top by :mod:`controller.blackout`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import overload

import numpy as np

from controller.periods import is_empty, n_periods, period_bounds, previous_period
from controller.spec import Arm, ClusterMode, Design, ExperimentSpec

_TWO64 = float(2**64)


def uniform(*key: object) -> float:
    """A deterministic U[0, 1) draw keyed by ``key`` (stable across processes and versions)."""
    h = hashlib.blake2b("\x1f".join(map(str, key)).encode(), digest_size=8).digest()
    return struct.unpack(">Q", h)[0] / _TWO64


class Window(StrEnum):
    """Where a cell stands relative to its unit's randomised window."""

    RANDOMISED = "randomised"
    PENDING = "pending"
    ENDED = "ended"
    MATCHED = "matched-control"


@dataclass(frozen=True)
class DesignContext:
    """Run-time facts a design may need beyond the spec (e.g. trigger times from events).

    ``triggers`` is read as an immutable snapshot: the trigger plan built from it is kept
    with the context (``plan``, or built on first use), so keep one context per snapshot.
    """

    # product -> trigger period: the first period of the product's window (see triggers.py)
    triggers: Mapping[str, int] = field(default_factory=dict)
    # the incremental plan of exactly these triggers, when the caller keeps one (live path)
    plan: TriggerPlan | None = field(default=None, compare=False, repr=False)
    _plans: dict[int, TriggerPlan] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def of(cls, plan: TriggerPlan) -> DesignContext:
        """A context over a live plan's triggers (valid until the plan next changes)."""
        return cls(triggers=plan.triggers, plan=plan)

    def trigger_plan(self, spec: ExperimentSpec) -> TriggerPlan:
        """The trigger plan of ``spec`` for these triggers (built once per context)."""
        if self.plan is not None and self.plan.spec is spec:
            return self.plan
        plan = self._plans.get(id(spec))
        if plan is None or plan.spec is not spec:
            plan = self._plans[id(spec)] = _memo_plan(spec, self.triggers)
        return plan


@dataclass(frozen=True)
class Draw:
    """What a design says about one cell: arm, P(treatment) and window state."""

    arm: Arm
    probability: float
    window: Window = Window.RANDOMISED
    matched_to: str | None = None


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

    @property
    def in_blackout_at_start(self) -> bool:
        return self.blackout_until is not None

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


# ----------------------------------------------------------------------------- helpers
def _bernoulli(spec: ExperimentSpec, *key: object) -> Arm:
    return Arm.TREATMENT if uniform(spec.seed, spec.id, *key) < spec.allocation else Arm.CONTROL


def _complete_share(
    spec: ExperimentSpec, strata: Mapping[str, tuple[str, ...]], salt: str
) -> frozenset[str]:
    """Complete randomisation within each stratum, with randomised rounding.

    A stratum of n units treats floor(a*n) units, plus one more with probability
    frac(a*n); the units are ranked by their own keyed draw. Every unit's marginal
    probability is therefore exactly ``a = spec.allocation``, and each stratum's share is
    within 1/n of it.
    """
    key = ("share", salt)
    memo = spec._memo
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    chosen: set[str] = set()
    for name, units in strata.items():
        x = spec.allocation * len(units)
        m = math.floor(x) + (1 if uniform(spec.seed, spec.id, salt, name, "round") < x % 1 else 0)
        ranked = sorted(units, key=lambda u: (uniform(spec.seed, spec.id, salt, u), u))
        chosen.update(ranked[:m])
    result = frozenset(chosen)
    memo[key] = result
    return result


def randomisation_points(t: int, m: int) -> list[int]:
    """0-based periods at which the optimal switchback of Bojinov, Simchi-Levi & Zhao redraws.

    For carryover order m and T = n*m (n >= 4) the published design randomises at periods
    1, 2m+1, 3m+1, ..., (n-2)m+1 (1-based): blocks of m, the first and last 2m long.
    With m = 0 every period is redrawn. (Kept in controller: no analysis helper existed.)
    """
    if m == 0:
        return list(range(t))
    if t % m or t // m < 4:
        raise ValueError(f"the construction needs T = n*m with n >= 4 (T={t}, m={m})")
    n = t // m
    return [0] + [j * m for j in range(2, n - 1)]


def _osb_block(spec: ExperimentSpec, k: int) -> int:
    """The randomisation point that period k's draw belongs to (the last one at or before k)."""
    assert spec.optimal_switchback is not None
    points = spec._memo.get("osb-points")
    if points is None:
        points = randomisation_points(n_periods(spec), spec.optimal_switchback.carryover_order)
        spec._memo["osb-points"] = points
    return int(points[bisect.bisect_right(points, k) - 1]) if k >= 0 else k


# ----------------------------------------------------------------------------- designs
def _random_days(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    u = uniform(spec.seed, spec.id, product, k)
    return Draw(Arm.TREATMENT if u < spec.allocation else Arm.CONTROL, spec.allocation)


def _time_bound(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    assert spec.time_bound is not None
    if k < spec.time_bound.start_period:
        return Draw(Arm.CONTROL, 0.0, Window.PENDING)
    treated = product in _complete_share(spec, spec.strata(), "time-bound")
    return Draw(Arm.TREATMENT if treated else Arm.CONTROL, spec.allocation)


def _crossover_phase(spec: ExperimentSpec, k: int) -> int:
    assert spec.crossover is not None
    return k // spec.crossover.phase_periods


def _crossover(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    in_a = product in _complete_share(spec, spec.strata(), "crossover")
    even = _crossover_phase(spec, k) % 2 == 0
    p = spec.allocation if even else 1.0 - spec.allocation
    return Draw(Arm.TREATMENT if in_a == even else Arm.CONTROL, p)


def _cluster(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    assert spec.cluster is not None
    cls = spec.class_of(product)
    if spec.cluster.mode == ClusterMode.SWITCHBACK:
        return Draw(_bernoulli(spec, "class", cls, k), spec.allocation)
    classes = {"": tuple(spec.clusters)}
    treated = cls in _complete_share(spec, classes, "cluster")
    return Draw(Arm.TREATMENT if treated else Arm.CONTROL, spec.allocation)


def _optimal_switchback(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    return Draw(_bernoulli(spec, product, "osb", _osb_block(spec, k)), spec.allocation)


@dataclass(frozen=True)
class _Window:
    start: int
    arm: Arm
    kind: Window
    matched_to: str | None = None


def trigger_plan(spec: ExperimentSpec, triggers: Mapping[str, int]) -> dict[str, _Window]:
    """Each triggered product's window: first period, arm, and whether it is a matched control.

    Triggers are taken in (period, product) order. A product's first window wins: a product
    already holding a window (as a matched control) ignores its own later trigger. When a
    treated product has ``matched_control``, the match is the not-yet-triggered product of its
    class without a window whose keyed draw is smallest. The plan up to period t depends only
    on triggers up to t, so live decisions never change when later triggers arrive.

    This is the reference, rebuilt from all triggers; designs use the equal, incremental
    :class:`TriggerPlan`.
    """
    assert spec.triggered is not None
    t_max = n_periods(spec)
    units = spec.units()
    plan: dict[str, _Window] = {}
    for t, p in sorted((t, p) for p, t in triggers.items() if p in units and 0 <= t < t_max):
        if p in plan:
            continue
        a = _bernoulli(spec, p, "trigger", t)
        plan[p] = _Window(t, a, Window.RANDOMISED)
        if a == Arm.TREATMENT and spec.triggered.matched_control:
            cls = spec.class_of(p)
            free = [
                q
                for q in spec.clusters.get(cls or "", ())
                if q not in plan and triggers.get(q, t_max) > t
            ]
            if free:
                q = min(free, key=lambda q: (uniform(spec.seed, spec.id, "match", p, t, q), q))
                plan[q] = _Window(t, Arm.CONTROL, Window.MATCHED, matched_to=p)
    return plan


class TriggerPlan:
    """:func:`trigger_plan`, kept up to date as triggers arrive: equal to the rebuilt plan.

    Matches are drawn within a class, so products interact only with their classmates (and
    not at all without ``matched_control``): a new or changed trigger at period t redoes only
    its own class, and only from period t on (the plan before t depends only on triggers
    before t). Triggers usually arrive in period order, which makes each one O(its class).
    Arm draws and each treated product's ranking of its classmates are cached, so redoing a
    class costs no hashing.
    """

    def __init__(self, spec: ExperimentSpec, triggers: Mapping[str, int] | None = None) -> None:
        rule = spec.triggered
        if rule is None:
            raise ValueError(f"experiment {spec.id!r} has no trigger rule (design {spec.design})")
        self.spec = spec
        self.triggers: dict[str, int] = {}  # all triggers given, as given
        self.windows: dict[str, _Window] = {}
        self.matches: dict[str, str] = {}  # treated product -> its matched control
        self._t_max = n_periods(spec)
        self._units = spec.units()
        self._matching = rule.matched_control and bool(spec.clusters)
        # class -> its members' valid triggers as sorted (period, product)
        self._keys: dict[str, list[tuple[int, str]]] = {}
        self._arms: dict[tuple[str, int], Arm] = {}
        self._ranks: dict[tuple[str, int], list[str]] = {}
        if triggers:
            self.update(triggers)

    def window(self, product: str) -> _Window | None:
        return self.windows.get(product)

    def copy(self) -> TriggerPlan:
        new = TriggerPlan.__new__(TriggerPlan)
        new.__dict__.update(self.__dict__)
        new.triggers, new.windows, new.matches = (
            dict(self.triggers),
            dict(self.windows),
            dict(self.matches),
        )
        new._keys = {c: list(k) for c, k in self._keys.items()}
        return new

    def _arm(self, p: str, t: int) -> Arm:
        a = self._arms.get((p, t))
        if a is None:
            a = self._arms[(p, t)] = _bernoulli(self.spec, p, "trigger", t)
        return a

    def _valid(self, p: str, t: int | None) -> bool:
        return t is not None and p in self._units and 0 <= t < self._t_max

    def _from(self, t: int | None) -> int:
        """First period whose plan a trigger at ``t`` (None: none) can change, in its class.

        A classmate's trigger at t >= 0 bars it from matches from t on; a negative one from
        every period; one at or after the last period never counts.
        """
        return self._t_max if t is None or t >= self._t_max else max(t, 0)

    def update(self, triggers: Mapping[str, int]) -> None:
        """Add (or change) triggers: product -> trigger period."""
        redo: dict[str, int] = {}  # class -> first period to redo
        class_of = self.spec.class_of
        for p, t in triggers.items():
            old = self.triggers.get(p)
            if old == t and p in self.triggers:
                continue
            self.triggers[p] = t
            if p not in self._units:
                continue
            cls = class_of(p) if self._matching else None
            if cls is None:  # nobody else depends on it
                if self._valid(p, t):
                    self.windows[p] = _Window(t, self._arm(p, t), Window.RANDOMISED)
                else:
                    self.windows.pop(p, None)
                continue
            keys = self._keys.setdefault(cls, [])
            if self._valid(p, old):
                del keys[bisect.bisect_left(keys, (old, p))]  # type: ignore[arg-type]
            if self._valid(p, t):
                bisect.insort(keys, (t, p))
            k0 = min(self._from(old), self._from(t))
            if k0 < self._t_max:
                redo[cls] = min(redo.get(cls, k0), k0)
        for cls, k0 in redo.items():
            self._redo(cls, k0)

    def _redo(self, cls: str, k0: int) -> None:
        """Recompute class ``cls``'s windows that start at or after period ``k0``."""
        windows, matches = self.windows, self.matches
        members = self.spec.clusters[cls]
        for q in members:
            w = windows.get(q)
            if w is not None and w.start >= k0:
                del windows[q]
                if w.kind == Window.MATCHED:
                    matches.pop(w.matched_to or "", None)
        triggers, t_max = self.triggers, self._t_max
        keys = self._keys.get(cls, [])
        for t, p in keys[bisect.bisect_left(keys, (k0, "")) :]:
            if p in windows:
                continue
            a = self._arm(p, t)
            windows[p] = _Window(t, a, Window.RANDOMISED)
            if a != Arm.TREATMENT:
                continue
            for q in self._ranking(p, t, members):
                if q not in windows and triggers.get(q, t_max) > t:
                    windows[q] = _Window(t, Arm.CONTROL, Window.MATCHED, matched_to=p)
                    matches[p] = q
                    break

    def _ranking(self, p: str, t: int, members: tuple[str, ...]) -> list[str]:
        """Classmates in match order for a treatment window of ``p`` opening at ``t``."""
        r = self._ranks.get((p, t))
        if r is None:
            spec = self.spec
            r = self._ranks[(p, t)] = sorted(
                members, key=lambda q: (uniform(spec.seed, spec.id, "match", p, t, q), q)
            )
        return r


def _memo_plan(spec: ExperimentSpec, triggers: Mapping[str, int]) -> TriggerPlan:
    """A plan for ``triggers``, reusing the spec's last one when the triggers are the same or
    only added to (one dict comparison per context, not per product as before)."""
    last: TriggerPlan | None = spec._memo.get("trigger-plan")
    if last is not None and last.triggers == triggers:
        return last
    if last is not None and last.triggers.items() <= dict(triggers).items():
        plan = last.copy()
        plan.update(triggers)
    else:
        plan = TriggerPlan(spec, triggers)
    spec._memo["trigger-plan"] = plan
    return plan


def _triggered(spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
    assert spec.triggered is not None
    w = ctx.trigger_plan(spec).windows.get(product)
    if w is None or k < w.start:
        return Draw(Arm.CONTROL, 0.0, Window.PENDING)
    if k >= w.start + spec.triggered.window_periods:
        return Draw(Arm.CONTROL, 0.0, Window.ENDED)
    p = spec.allocation if w.kind == Window.RANDOMISED else 0.0
    return Draw(w.arm, p, w.kind, w.matched_to)


DesignFn = Callable[[ExperimentSpec, str, int, DesignContext], Draw]

_DESIGNS: dict[Design, DesignFn] = {
    Design.RANDOM_DAYS: _random_days,
    Design.TIME_BOUND: _time_bound,
    Design.CROSSOVER: _crossover,
    Design.CLUSTER: _cluster,
    Design.OPTIMAL_SWITCHBACK: _optimal_switchback,
    Design.TRIGGERED: _triggered,
}


def register_design(design: Design, fn: DesignFn) -> None:
    _DESIGNS[design] = fn


# ----------------------------------------------------------------------------- public API
def draw(spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None) -> Draw:
    """Arm, P(treatment) and window state of ``product`` in period ``k``."""
    if product not in spec.units():
        raise KeyError(f"{product!r} is not a unit of experiment {spec.id!r}")
    return _DESIGNS[spec.design](spec, product, k, context or DesignContext())


def arm(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> tuple[Arm, float]:
    """Arm in force and P(treatment) for ``product`` in period ``k`` (0 <= k < n_periods)."""
    d = draw(spec, product, k, context)
    return d.arm, d.probability


def _fixed_path(p_first: float, first: list[Arm], second: list[Arm], target: Arm) -> float:
    """P(all arms in the window == target) for a design with one draw per unit."""
    return p_first * all(a == target for a in first) + (1 - p_first) * all(
        a == target for a in second
    )


def path_probability(
    spec: ExperimentSpec,
    product: str,
    k: int,
    lag: int,
    target: Arm | str,
    context: DesignContext | None = None,
) -> float:
    """P(product's arms in periods k-lag..k are all ``target``) under the design.

    This is the weight denominator of the Horvitz-Thompson lag-p estimator of Bojinov,
    Simchi-Levi & Zhao (2023). For triggered designs it is conditional on the trigger
    periods (and matches) in ``context``.
    """
    target = Arm(target)
    ctx = context or DesignContext()
    if lag < 0 or k - lag < 0:
        raise ValueError(f"the window {k - lag}..{k} must lie inside the experiment")
    window = range(k - lag, k + 1)
    a = spec.allocation
    p_target = a if target == Arm.TREATMENT else 1.0 - a
    design = spec.design
    if design in (Design.RANDOM_DAYS, Design.OPTIMAL_SWITCHBACK) or (
        design == Design.CLUSTER and spec.cluster and spec.cluster.mode == ClusterMode.SWITCHBACK
    ):
        if design == Design.OPTIMAL_SWITCHBACK:
            blocks = len({_osb_block(spec, s) for s in window})
        else:
            blocks = len(window)
        return float(p_target**blocks)
    if design == Design.TIME_BOUND:
        assert spec.time_bound is not None
        s0 = spec.time_bound.start_period
        if_t = [Arm.TREATMENT if s >= s0 else Arm.CONTROL for s in window]
        return _fixed_path(a, if_t, [Arm.CONTROL] * len(window), target)
    if design == Design.CLUSTER:
        return _fixed_path(a, [Arm.TREATMENT] * len(window), [Arm.CONTROL] * len(window), target)
    if design == Design.CROSSOVER:
        in_a = [
            Arm.TREATMENT if _crossover_phase(spec, s) % 2 == 0 else Arm.CONTROL for s in window
        ]
        in_b = [Arm.CONTROL if x == Arm.TREATMENT else Arm.TREATMENT for x in in_a]
        return _fixed_path(a, in_a, in_b, target)
    # triggered: one draw at the trigger; outside the window the product is control
    assert spec.triggered is not None
    w = ctx.trigger_plan(spec).windows.get(product)
    if w is None or w.kind != Window.RANDOMISED:
        return float(target == Arm.CONTROL)
    length = spec.triggered.window_periods
    if_t = [Arm.TREATMENT if w.start <= s < w.start + length else Arm.CONTROL for s in window]
    return _fixed_path(a, if_t, [Arm.CONTROL] * len(window), target)


def _phase_blackout(spec: ExperimentSpec, k: int) -> bool:
    c = spec.crossover
    return c is not None and k % c.phase_periods < c.blackout_periods


def assign(
    spec: ExperimentSpec, product: str, k: int, context: DesignContext | None = None
) -> Assignment:
    """The full assignment of ``product`` for period ``k``, with its blackout windows."""
    if product not in spec.units():
        raise KeyError(f"{product!r} is not a unit of experiment {spec.id!r}")
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


class _PeriodFacts:
    """What every product's assignment in period k shares, computed once per period
    (period bounds in the time zone, the previous non-empty period, the phase blackout):
    a flip of a million products would otherwise redo them a million times."""

    def __init__(self, spec: ExperimentSpec, k: int, ctx: DesignContext) -> None:
        self.spec, self.k, self.ctx = spec, k, ctx
        self.fn = _DESIGNS[spec.design]
        self.start, self.end = period_bounds(spec, k)
        self.prev = previous_period(spec, k) if spec.washout and k != 0 else None
        self.phase_blackout = spec.design == Design.CROSSOVER and _phase_blackout(spec, k)
        self.washout_end = min(self.start + spec.washout, self.end)

    def draw(self, product: str) -> tuple[Draw, bool]:
        """The design's draw for ``product`` and whether it starts the period with a washout."""
        spec, ctx = self.spec, self.ctx
        d = self.fn(spec, product, self.k, ctx)
        if not spec.washout:
            return d, False
        if self.prev is None:
            return d, True
        prev = self.fn(spec, product, self.prev, ctx)
        opened = prev.window == Window.PENDING and d.window != Window.PENDING
        return d, prev.arm != d.arm or opened

    def build(self, product: str, d: Draw, switched: bool) -> Assignment:
        spec, start, end = self.spec, self.start, self.end
        blackouts: list[Blackout] = []
        if self.phase_blackout:
            blackouts.append(Blackout(start, end, "phase-blackout"))
        if switched:
            blackouts.append(Blackout(start, self.washout_end, "washout"))
        blackout_until = max((b.end for b in blackouts), default=None)
        reason = blackouts[0].reason if blackouts else None
        return Assignment(
            experiment=spec.id,
            product=product,
            period=self.k,
            arm=d.arm,
            probability=d.probability,
            policy=spec.policy(d.arm),
            period_start=start,
            period_end=end,
            blackout_until=blackout_until,
            blackout_reason=reason,
            window=d.window,
            matched_to=d.matched_to,
            blackouts=tuple(blackouts),
        )

    def assign(self, product: str) -> Assignment:
        return self.build(product, *self.draw(product))


# ----------------------------------------------------------------------------- whole periods
def uniforms(
    prefix: Sequence[object], units: Sequence[str], suffix: Sequence[object] = ()
) -> np.ndarray:
    """``uniform(*prefix, u, *suffix)`` for every ``u`` in ``units``, as one float array.

    Bit for bit the scalar draws: the same keyed hash per unit (a hash cannot be vectorised
    without changing every schedule), with the key text built once and the 64-bit to float
    conversion (round to nearest, then an exact division by 2**64) done by numpy.
    """
    head = "".join(str(x) + "\x1f" for x in prefix)
    tail = "".join("\x1f" + str(x) for x in suffix)
    b2 = hashlib.blake2b
    raw = b"".join([b2(f"{head}{u}{tail}".encode(), digest_size=8).digest() for u in units])
    return np.frombuffer(raw, dtype=">u8").astype(np.float64) / _TWO64


def _vector_treated(spec: ExperimentSpec, products: Sequence[str], k: int) -> np.ndarray | None:
    """Which products the design treats in period k, for the designs with one keyed draw per
    product and period (random days, optimal switchback); None for the others.

    The last periods' arrays are kept with the spec: the next flip's previous period (for
    the washout) is this flip's period.
    """
    if spec.design == Design.RANDOM_DAYS:
        suffix: tuple[object, ...] = (k,)
    elif spec.design == Design.OPTIMAL_SWITCHBACK:
        suffix = ("osb", _osb_block(spec, k))
    else:
        return None
    cache: dict[tuple[object, ...], np.ndarray] = spec._memo.setdefault("treated", {})
    treated = cache.get(suffix)
    if treated is None:
        treated = uniforms((spec.seed, spec.id), products, suffix) < spec.allocation
        if len(cache) >= 3:
            del cache[next(iter(cache))]
        cache[suffix] = treated
    return treated


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
    """Every product's assignment for period ``k`` (equal to :func:`assign_period`, built
    once per distinct assignment; one vectorised draw per period where the design allows)."""
    facts = _PeriodFacts(spec, k, context or DesignContext())
    products = spec.all_products()
    treated = _vector_treated(spec, products, k)
    if treated is not None:
        switched = np.zeros(len(products), dtype=bool)
        if spec.washout:
            if facts.prev is None:
                switched[:] = True
            else:
                prev = _vector_treated(spec, products, facts.prev)
                assert prev is not None
                switched = treated != prev
        a = spec.allocation
        draws = (Draw(Arm.CONTROL, a), Draw(Arm.TREATMENT, a))
        templates = [facts.build("", draws[c >> 1], bool(c & 1)) for c in range(4)]
        codes = (treated.astype(np.int64) * 2 + switched).tolist()
        return PeriodAssignments(products, codes, templates)
    index: dict[tuple[Draw, bool], int] = {}
    out: list[int] = []
    templates = []
    for p in products:
        key = facts.draw(p)
        c = index.get(key)
        if c is None:
            c = index[key] = len(templates)
            templates.append(facts.build("", *key))
        out.append(c)
    return PeriodAssignments(products, out, templates)


def forced_control(spec: ExperimentSpec, a: Assignment, reason: str) -> Assignment:
    """``a`` on the control policy and in blackout for its whole period (pause, stop, end)."""
    whole = Blackout(a.period_start, a.period_end, reason, policy=spec.control_policy)
    return replace(
        a,
        arm=Arm.CONTROL,
        policy=spec.control_policy,
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
