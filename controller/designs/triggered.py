"""Triggered: a competitor undercut starts a product's own treatment-or-control window.

When the spec's :class:`~controller.spec.TriggerRule` fires for a product (see
:mod:`controller.triggers`), its window opens at the next period boundary and lasts
``window_periods``; its arm is drawn at the trigger, P(arm) = its allocation.
Before its window a product is ``PENDING`` and after it ``ENDED`` (control policy, probability
0). With ``matched_control``, a window on an arm other than control also holds a not-yet-triggered product
of its class in control (``MATCHED``, probability 0).

Only the randomised windows are an experiment: the difference in means over the cells with a
design probability strictly between 0 and 1 compares triggered products drawn into treatment
with triggered products drawn into control (product-clustered SE). The primary estimate adjusts
it for each product's baseline: its own periods before its trigger, which the controller
records from the experiment's first period (``cuped``).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.designs.base import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    Window,
    arm_draw,
    arm_paths,
    categorical,
    control_draw,
    register,
    uniform,
)
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import Arm, ExperimentSpec, TriggerRule
from core.ports import EstimatorPlan


@dataclass(frozen=True)
class TriggerWindow:
    """A product's window: its first period, its arm (role, and index into the spec's arm
    list) and whether it is randomised or a matched control."""

    start: int
    arm: Arm
    kind: Window
    matched_to: str | None = None
    index: int = -1


def _window(
    spec: ExperimentSpec, start: int, index: int, kind: Window, matched_to: str | None = None
) -> TriggerWindow:
    return TriggerWindow(start, spec.role(index), kind, matched_to, index)


def trigger_plan(spec: ExperimentSpec, triggers: Mapping[str, int]) -> dict[str, TriggerWindow]:
    """Each triggered product's window: first period, arm, and whether it is a matched control.

    Triggers are taken in (period, product) order. A product's first window wins: a product
    already holding a window (as a matched control) ignores its own later trigger. When a
    treated product has ``matched_control``, the match is the not-yet-triggered product of its
    class without a window whose keyed draw is smallest. The plan up to period t depends only
    on triggers up to t, so live decisions never change when later triggers arrive.

    This is the reference, rebuilt from all triggers; the design uses the equal, incremental
    :class:`TriggerPlan`.
    """
    assert spec.triggered is not None
    t_max = n_periods(spec)
    units = spec.units()
    plan: dict[str, TriggerWindow] = {}
    for t, p in sorted((t, p) for p, t in triggers.items() if p in units and 0 <= t < t_max):
        if p in plan:
            continue
        a = categorical(spec, p, "trigger", t)
        plan[p] = _window(spec, t, a, Window.RANDOMISED)
        if a != spec.control_index and spec.triggered.matched_control:
            cls = spec.class_of(p)
            free = [
                q
                for q in spec.clusters.get(cls or "", ())
                if q not in plan and triggers.get(q, t_max) > t
            ]
            if free:
                q = min(free, key=lambda q: (uniform(spec.seed, spec.id, "match", p, t, q), q))
                plan[q] = _window(spec, t, spec.control_index, Window.MATCHED, matched_to=p)
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
        self.windows: dict[str, TriggerWindow] = {}
        self.matches: dict[str, str] = {}  # treated product -> its matched control
        self._t_max = n_periods(spec)
        self._units = spec.units()
        self._matching = rule.matched_control and bool(spec.clusters)
        # class -> its members' valid triggers as sorted (period, product)
        self._keys: dict[str, list[tuple[int, str]]] = {}
        self._arms: dict[tuple[str, int], int] = {}
        self._ranks: dict[tuple[str, int], list[str]] = {}
        if triggers:
            self.update(triggers)

    def window(self, product: str) -> TriggerWindow | None:
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

    def _arm(self, p: str, t: int) -> int:
        a = self._arms.get((p, t))
        if a is None:
            a = self._arms[(p, t)] = categorical(self.spec, p, "trigger", t)
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
                    self.windows[p] = _window(self.spec, t, self._arm(p, t), Window.RANDOMISED)
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
        control = self.spec.control_index
        keys = self._keys.get(cls, [])
        for t, p in keys[bisect.bisect_left(keys, (k0, "")) :]:
            if p in windows:
                continue
            a = self._arm(p, t)
            windows[p] = _window(self.spec, t, a, Window.RANDOMISED)
            if a == control:
                continue
            for q in self._ranking(p, t, members):
                if q not in windows and triggers.get(q, t_max) > t:
                    windows[q] = _window(self.spec, t, control, Window.MATCHED, matched_to=p)
                    matches[p] = q
                    break

    def _ranking(self, p: str, t: int, members: tuple[str, ...]) -> list[str]:
        """Classmates in match order for a window of ``p`` (on an arm other than control)
        opening at ``t``."""
        r = self._ranks.get((p, t))
        if r is None:
            spec = self.spec
            r = self._ranks[(p, t)] = sorted(
                members, key=lambda q: (uniform(spec.seed, spec.id, "match", p, t, q), q)
            )
        return r


def _memo_plan(spec: ExperimentSpec, triggers: Mapping[str, int]) -> TriggerPlan:
    """A plan for ``triggers``, reusing the spec's last one when the triggers are the same or
    only added to (one dict comparison per context, not per product)."""
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


def plan_of(spec: ExperimentSpec, ctx: DesignContext) -> TriggerPlan:
    """The trigger plan of ``spec`` for the context's triggers (built once per context)."""
    if isinstance(ctx.plan, TriggerPlan) and ctx.plan.spec is spec:
        return ctx.plan
    key = ("trigger-plan", id(spec))
    plan = ctx.derived.get(key)
    if plan is None or plan.spec is not spec:
        plan = ctx.derived[key] = _memo_plan(spec, ctx.triggers)
    return plan  # type: ignore[no-any-return]


class Triggered(Design):
    name = "triggered"
    settings_field = "triggered"
    settings_required = True
    uses_triggers = True

    def validate(self, spec: ExperimentSpec) -> None:
        assert spec.triggered is not None
        if spec.triggered.matched_control and not spec.clusters:
            raise SpecError(
                "triggered.matched_control",
                "needs product classes in 'clusters' to pick a match from",
            )

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        assert spec.triggered is not None
        w = plan_of(spec, ctx).windows.get(product)
        if w is None or k < w.start:
            return control_draw(spec, Window.PENDING)
        if k >= w.start + spec.triggered.window_periods:
            return control_draw(spec, Window.ENDED)
        p = spec.allocation if w.kind == Window.RANDOMISED else 0.0
        return arm_draw(spec, w.index, p, w.kind, w.matched_to)

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        """Conditional on the trigger periods (and matches) in ``ctx``: one draw at the
        trigger; outside its window the product is control."""
        assert spec.triggered is not None
        w = plan_of(spec, ctx).windows.get(product)
        if w is None or w.kind != Window.RANDOMISED:
            return float(target == spec.control_index)
        start, length = w.start, spec.triggered.window_periods
        return arm_paths(spec, window, lambda s: start <= s < start + length, target)

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return True

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        # primary: the difference in means adjusted for each product's own periods before
        # its trigger (recorded from the experiment's creation; analysis.estimators.cuped)
        return (
            EstimatorPlan("cuped", {"cluster": "unit"}),
            EstimatorPlan("dm", {"cluster": "unit"}),
        )

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """A 10% undercut sustained for an hour, by any competitor, opens a window of a quarter
        of the experiment; our reference prices are the market's own."""
        return ExperimentSpec(
            **base,
            products=market.products,
            triggered=TriggerRule(
                undercut_pct=10.0,
                sustained_minutes=60.0,
                window_periods=max(1, market.days // 4),
                reference_prices=dict(market.reference_prices),
            ),
        )


DESIGN = register(Triggered())
