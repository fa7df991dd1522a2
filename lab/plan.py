"""Plan an experiment before launch: power, type-I error and MDE on the analyst's own history.

``pricelab plan SPEC --history PANEL ...`` answers "how long, on how many products, with which
design" by simulation on the products' own past outcomes, with the exact designs and
estimators that will run live:

1. The units are the spec's products that appear in the history (every history unit when the
   spec names none of them).
2. Each simulation places the experiment at a random start inside the history and draws its
   assignment with the controller's own code (:func:`controller.designs.design_matrices`,
   the flip's whole-period draws) under a fresh seed: arms, probabilities and the periods the
   design blacks out whole (a crossover's phase openings), exactly as the live controller
   would. Cells the history lacks are excluded like blacked-out ones.
3. The effect is added to treated cells: ``E`` in outcome units, or ``E`` times the cell's
   own outcome with ``--relative``. With ``--carryover M`` it also reaches the M periods after
   a unit leaves treatment, at a linearly decaying share (1 - j/(M+1) in the j-th period).
4. Each design's default estimators (``Design.estimators``) are fitted through
   :func:`analysis.worker.fit_plan`, the function the live analysis worker publishes with.

Every simulation fits each estimator twice on the same placement and draw: on the history as
it was (an A/A test: rejections there are the type-I error) and with the effect added (power
at ``E``; without ``--effect``, about the effect the simulation could detect, so that the
second fit is taken near the MDE). The estimators are linear in the outcome, so the two fits give each simulation's
response ``b`` to a unit of effect, and the change ``d`` of its SE per unit of effect; the
MDE is the smallest effect ``e`` at which ``|estimate_AA + e * b| > q * (se_AA + e * d)`` in
80% of the simulations (``q`` from t(df) when the estimator reports df, else the normal).
The SE is taken as linear in the effect between the two fits (exact for a SE that does not
move, like dm's; HT's variance bound grows with the outcome), and the MDE is where the
share reaches 80% and stays there; ``docs/planning.md`` checks it by planning again at it
(power 0.8 +- 0.05).

An experiment of k > 2 arms (a price ladder, or several policies) is planned per comparison,
each non-control arm against the control, as the analysis worker estimates it
(:func:`analysis.arms.compare_pairs` on each pair's cells: a third arm's cells blacked out, a
product the design put in a third arm left out), with the effect added to every arm but the
control. A comparison rejects when its simultaneous interval excludes 0, the interval the worker
publishes as ``sim_ci``: Dunnett-type for the difference in means clustered by product (the
comparisons' correlation from each simulation's own cells), Bonferroni (alpha / (k - 1))
otherwise; so its type-I error, power and MDE are those of that interval, and ``type1_family``
is the share of A/A simulations in which any comparison rejects. The verdict's columns are at
each arm's anytime-valid sequence at alpha / (k - 1), as the worker's (``cs_split``). The
design's estimators that are not fitted per arm (not in :data:`analysis.arms.PAIR_METHODS`:
those that weigh cells by their probability of the pair's arm, and the crossover's own) are
left out, with the worker's reason as a note.

An adaptive ladder is not planned here: ``--arm-effects`` plans a ladder by the effect it
gives up, fixed beside adaptive (:mod:`lab.plan_adaptive`), with this module's placement and
effect; without it :func:`check_not_adaptive` refuses one.

A washout (always shorter than a period) is not in a period-level history: the live panel
counts each period's sales after the washout, which the planner models as the share
1 - washout/period of every cell's outcome and effect, assuming sales spread evenly over the
period. Estimates, SEs and the MDE are reported per whole period, like ``--effect``; that
scaling cancels out of the MDE, and the extra noise of counting fewer sales is not modelled.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.arms import (
    PAIR_METHODS,
    ArmComparison,
    Arms,
    compare_pairs,
    dm_influence,
    influence_correlation,
    joint_plan,
    not_on_pairs,
    pair_cells,
)
from analysis.confseq import horizon_multiplier
from analysis.errors import PanelError
from analysis.panel import Panel
from analysis.reader import ReadPolicy, full_range, to_cells
from analysis.verdict import any_look_power
from analysis.worker import fit_plan
from controller.designs import design_matrices, design_of
from controller.errors import SpecError
from controller.periods import n_periods, period_start
from controller.spec import ExperimentSpec, load_spec
from core.ports import EstimatorPlan
from lab.errors import LabError
from lab.failed_fits import check_failed_fits

ALPHA = 0.05
TARGET_POWER = 0.8
_Z_POWER = float(stats.norm.ppf(TARGET_POWER))
#: the effect a simulation adds when no --effect is given and its A/A SE is not usable
_UNIT_EFFECT = {False: 1.0, True: 0.1}


# --------------------------------------------------------------------------- history
@dataclass(frozen=True)
class History:
    """Past outcomes as a units x periods matrix (NaN where a cell is not in the history:
    before a product's first period, or left out by ``--missing drop``); ``times`` the
    periods' labels, NaT for a date in a gap (a period in which no product has a row)."""

    Y: np.ndarray
    units: tuple[str, ...]
    times: tuple[Any, ...]
    #: what reading the table did (zero-sale cells filled, rows netted, amounts converted)
    notes: tuple[str, ...] = ()

    @property
    def n_periods(self) -> int:
        return int(self.Y.shape[1])


def read_history(
    df: pd.DataFrame,
    unit: str,
    time: str,
    outcome: str,
    *,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    policy: ReadPolicy | None = None,
) -> History:
    """A long table of past outcomes as a :class:`History`, read by the one reader
    (:func:`analysis.reader.to_cells`): ids as text, several rows of a product-period summed
    (returns netted), and a product-period without a row counted as zero sales from the
    product's first period to the end (``policy.missing == "zero"``, the default) or left out
    (``"drop"``: a simulation excludes it, as blacked out).

    LabError (one sentence) for a missing column, a non-numeric outcome, dates whose day/month
    order neither the data nor ``dayfirst``/``date_format`` settles, mixed currencies, or fewer
    than two units or periods.
    """
    pol = policy or ReadPolicy()
    if dayfirst is not None or date_format is not None:
        pol = replace(pol, dayfirst=dayfirst, date_format=date_format)
    try:
        cells = to_cells(
            df, unit=unit, time=time, sums=[outcome], money=[outcome], policy=pol, what="history"
        )
    except PanelError as exc:
        raise LabError(str(exc).rstrip(".")) from None
    frame = cells.frame
    ucode, units = pd.factorize(frame[unit], sort=True)
    tcode, labels = pd.factorize(frame[time], sort=True)
    grid = full_range(pd.Index(labels))  # a period without any row is a period without data
    if len(units) < 2 or len(grid) < 2:
        raise LabError(
            f"the history needs at least 2 units and 2 periods; it has {len(units)} x {len(grid)}"
        )
    Y = np.full((len(units), len(grid)), np.nan)
    Y[ucode, grid.get_indexer(labels)[tcode]] = frame[outcome].to_numpy(dtype=float)
    if isinstance(grid, pd.DatetimeIndex):  # a gap's label is not read (it may be an hour off)
        grid = grid.where(grid.isin(labels))
    return History(Y, tuple(map(str, units)), tuple(grid.tolist()), cells.notes)


def check_period(history: History, spec: ExperimentSpec, time: str) -> None:
    """LabError when the history's periods are dates spaced unlike the spec's periods."""
    times = pd.Series(history.times)
    if not pd.api.types.is_datetime64_any_dtype(times) or len(times) < 2:
        return
    period = pd.Timedelta(spec.period)
    step = times.diff().dropna().min()
    # days written at the spec's local midnights are a day apart on its clock, also where a
    # DST change makes one of them 23 hours
    local = pd.Series(pd.DatetimeIndex(times).tz_convert(spec.timezone).tz_localize(None))
    on_clock = local.diff().dropna().min()
    if min(abs(step - period), abs(on_clock - period)) > period * 0.01:
        raise LabError(
            f"the history's {time} column is spaced {step} apart but experiment {spec.id!r} "
            f"has periods of {spec.period}; aggregate the history to its periods"
        )


# --------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class PlannedSpec:
    """A spec restricted to the units that have history, at one duration."""

    spec: ExperimentSpec
    rows: np.ndarray  # history row of each unit, in the spec's unit order
    units: tuple[str, ...]
    note: str = ""


def _restricted(spec: ExperimentSpec, keep: set[str]) -> dict[str, Any]:
    if spec.clusters:
        clusters = {c: tuple(p for p in m if p in keep) for c, m in spec.clusters.items()}
        return {"clusters": {c: m for c, m in clusters.items() if m}, "products": ()}
    return {"products": tuple(p for p in spec.products if p in keep)}


def plan_units(spec: ExperimentSpec, history: History) -> tuple[dict[str, Any], str]:
    """The spec fields that restrict it to the units with history, and a note saying so."""
    known = set(history.units)
    listed = spec.all_products()
    present = [p for p in listed if p in known]
    if not present:
        none_in = (
            f"none of experiment {spec.id}'s {len(listed)} products is in the history (which "
            f"has {len(known)} products, e.g. {', '.join(history.units[:2])})"
        )
        if spec.clusters:
            raise LabError(
                f"{none_in}, and its design groups products into classes that the history "
                "does not give; name the history's products in the spec"
            )
        try:  # the spec on the history's products (it may hold its own products' data)
            load_spec(spec.model_dump(mode="python") | {"products": history.units})
        except SpecError as exc:
            raise LabError(
                f"{none_in}, so its {exc.field} cannot be planned on the history's products; "
                "give the history of the spec's products, or a spec of the history's"
            ) from None
        note = (
            f"none of the spec's {len(listed)} products is in the history: planning on all "
            f"{len(known)} units of the history"
        )
        return {"products": history.units}, note
    note = ""
    if len(present) < len(listed):
        note = (
            f"{len(listed) - len(present)} of the spec's {len(listed)} products have no "
            f"history: planning on the {len(present)} that do"
        )
    return _restricted(spec, set(present)), note


def at_duration(spec: ExperimentSpec, fields: Mapping[str, Any], periods: int) -> ExperimentSpec:
    """``spec`` restricted to its planned units and lasting ``periods`` periods of its own
    calendar (``controller.periods``: a day across a DST change is one period), validated
    again: a design may not fit the duration."""
    raw = spec.model_dump(mode="python") | dict(fields)
    raw["end"] = period_start(spec, periods)
    try:
        out = load_spec(raw)
    except SpecError as exc:
        raise LabError(f"experiment {spec.id!r} at {periods} periods: {exc}") from None
    if n_periods(out) != periods:  # its last period is an hour the spring-forward night skips
        raise LabError(
            f"experiment {spec.id!r} at {periods} periods would end in an hour its time zone "
            f"skips; plan with {periods - 1} or {periods + 1} periods"
        )
    return out


def plan_spec_at(spec: ExperimentSpec, history: History, periods: int) -> PlannedSpec:
    """The planned experiment at one duration; LabError when the history is too short."""
    if periods < 2:
        raise LabError(f"a duration must be at least 2 periods, not {periods}")
    if periods > history.n_periods:
        raise LabError(
            f"the history has {history.n_periods} periods, too few for a duration of {periods}"
        )
    fields, note = plan_units(spec, history)
    planned = at_duration(spec, fields, periods)
    design = design_of(planned)
    if design.uses_triggers:
        raise LabError(
            f"experiment {spec.id!r} is {planned.design}: its products start on competitor "
            "undercuts, which a sales history does not hold; plan the design without triggers"
        )
    where = {u: i for i, u in enumerate(history.units)}
    units = tuple(planned.all_products())
    if len(units) < 2:
        raise LabError(
            f"experiment {spec.id!r} has {len(units)} product(s) with history; an experiment "
            "needs at least 2"
        )
    return PlannedSpec(planned, np.array([where[u] for u in units], dtype=np.int64), units, note)


# --------------------------------------------------------------------------- one simulation
def effect_pattern(W: np.ndarray, carryover: int) -> np.ndarray:
    """Share of the effect each cell gets: 1 when treated; after a unit leaves treatment,
    1 - j/(M+1) in the j-th period (j <= M), else 0."""
    tau = W.astype(float)
    if carryover <= 0:
        return tau
    n, t = W.shape
    since = np.full(n, np.inf)  # periods since the unit was last treated
    for k in range(t):
        treated = W[:, k]
        linger = np.where(since <= carryover, 1.0 - since / (carryover + 1), 0.0)
        tau[:, k] = np.where(treated, 1.0, linger)
        since = np.where(treated, 1.0, since + 1.0)
    return tau


@dataclass(frozen=True)
class Comparisons:
    """The k - 1 comparisons of an experiment of k > 2 arms: each arm but the control against
    the control, in the spec's arm order."""

    names: tuple[str, ...]  # every arm, in the spec's order (its index in DesignMatrices.arm)
    control: int

    @property
    def others(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.names)) if i != self.control)

    @property
    def split(self) -> int:
        """How many comparisons alpha is split over (the worker's ``cs_split``)."""
        return len(self.names) - 1

    def arms(self) -> Arms:
        others = tuple(self.names[i] for i in self.others)
        return Arms("arm", self.names[self.control], others, "product")


def comparisons_of(spec: ExperimentSpec) -> Comparisons | None:
    """The comparisons of an experiment of more than two arms (None for two arms: one
    comparison, planned as treatment against control)."""
    if spec.n_arms <= 2:
        return None
    return Comparisons(tuple(a.name for a in spec.arm_list()), spec.control_index)


@dataclass(frozen=True)
class SimSetting:
    """What every simulation of one (spec, duration) shares."""

    planned: PlannedSpec
    plans: tuple[EstimatorPlan, ...]
    effect: float | None
    relative: bool
    carryover: int
    window_share: float
    #: k > 2 arms: the comparisons planned (None: treatment against control)
    comparisons: Comparisons | None = None


def _panel(Y: np.ndarray, m: Any, groups: np.ndarray | None, missing: np.ndarray) -> Panel:
    blackout = m.blackout | missing
    return Panel(
        Y=np.where(blackout, np.nan, Y),
        W=m.treated,
        units=np.asarray(m.units),
        times=np.arange(Y.shape[1]),
        blackout=blackout,
        probability=m.probability,
        groups=groups,
    )


def simulate_once(
    setting: SimSetting, history: np.ndarray, start: int, seed: int
) -> list[dict[str, Any]]:
    """One placement and draw: every estimator on the A/A history and with the effect."""
    p = setting.planned
    spec = p.spec.model_copy(update={"seed": int(seed)})
    m = design_matrices(spec, p.units)
    Y, missing = placed(setting, history, start)
    tau = effect_pattern(m.treated, setting.carryover)
    groups = None
    if spec.clusters:
        cmap = spec.class_map()
        groups = np.array([cmap[u] for u in p.units])
    if setting.comparisons is not None:
        return _simulate_arms(setting, m, Y, missing, tau, groups, start, seed)
    aa = _panel(Y, m, groups, missing)
    share = setting.window_share
    treated_y = Y[m.treated & ~m.blackout & ~missing]
    rows = []
    for plan in setting.plans:
        row: dict[str, Any] = {"estimator": plan.label, "start": start, "seed": seed}
        try:
            r0 = fit_plan(plan, aa, seed)
            q = _quantile(r0.df)
            e1 = _second_effect(setting, r0.se / share, q, treated_y)
            r1 = fit_plan(
                plan, _panel(Y + added_effect(setting, e1, tau, Y), m, groups, missing), seed
            )
        except Exception as exc:  # noqa: BLE001 - a failing fit is counted, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            continue
        rows.append(row | _fit_row(setting, r0, r1, e1, q, _quantile(r1.df), ALPHA))
    return rows


def placed(setting: SimSetting, history: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """The history's outcomes of the planned units over the experiment placed at ``start``,
    scaled to the analysis window (0 where the history has no cell), and where it has none."""
    p = setting.planned
    Y = history[p.rows, start : start + n_periods(p.spec)] * setting.window_share
    missing = ~np.isfinite(Y)
    return np.where(missing, 0.0, Y), missing


def added_effect(setting: SimSetting, e: float, tau: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The effect ``e`` as added to every cell: in outcome units per whole period (scaled to
    the analysis window like the outcome), or a share of each cell's own outcome."""
    return e * tau * Y if setting.relative else e * setting.window_share * tau


def _fit_row(
    setting: SimSetting, r0: Any, r1: Any, e1: float, q0: float, q1: float, seq_alpha: float
) -> dict[str, Any]:
    """One simulation's figures of one comparison: the A/A fit ``r0`` and the fit ``r1`` with
    the effect ``e1``, their tests at the critical values ``q0`` and ``q1``, and the verdict's
    at the sequence of level ``seq_alpha``. Estimates, SEs and responses in outcome units per
    whole period (the analysis window's share undone), like --effect."""
    share = setting.window_share
    q_seq = horizon_multiplier(seq_alpha, r0.df)
    return {
        "effect0": r0.effect / share,
        "se0": r0.se / share,
        "q0": q0,
        "q_seq0": q_seq,
        "reject0": bool(abs(r0.effect) > q0 * r0.se),
        # the verdict's test: the anytime-valid sequence at its planned horizon
        "verdict1": bool(abs(r1.effect) > horizon_multiplier(seq_alpha, r1.df) * r1.se)
        if setting.effect != 0
        else bool(abs(r0.effect) > q_seq * r0.se),
        "effect1": r1.effect / share,
        "se1": r1.se / share,
        "df1": math.nan if r1.df is None else float(r1.df),
        "reject1": bool(abs(r1.effect) > q1 * r1.se)
        if setting.effect != 0
        else bool(abs(r0.effect) > q0 * r0.se),
        "response": (r1.effect - r0.effect) / e1 / share,
        # how the SE moves with the effect (HT's variance bound grows with the outcome)
        "se_slope": (r1.se - r0.se) / e1 / share,
        "error": "",
    }


# --------------------------------------------------------------------------- k arms
def _simulate_arms(
    setting: SimSetting,
    m: Any,
    Y: np.ndarray,
    missing: np.ndarray,
    tau: np.ndarray,
    groups: np.ndarray | None,
    start: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One placement and draw of an experiment of k > 2 arms: every estimator fitted per arm
    against the control on the pair's cells (:func:`pair_matrices`), the k - 1 fits given their
    simultaneous critical values by :func:`analysis.arms.compare_pairs`, as the worker does."""
    comp = setting.comparisons
    assert comp is not None
    arms = comp.arms()
    share = setting.window_share
    pairs = {
        name: pair_matrices(m.arm, a, comp.control)
        for name, a in zip(arms.others, comp.others, strict=True)
    }
    off = m.blackout | missing

    def panel(name: str, Yx: np.ndarray) -> Panel:
        return pair_panel(m, pairs[name], Yx, off, groups)

    def corr(plan: EstimatorPlan, Yx: np.ndarray) -> Callable[[], np.ndarray | None]:
        # as the worker: the joint distribution of the differences in means clustered by
        # product (analysis.arms.dm_correlation); any other estimator's intervals: Bonferroni
        if not joint_plan(plan):
            return lambda: None
        return lambda: pair_correlation(pairs, arms.others, Yx, off, m.probability)

    aa = {name: panel(name, Y) for name in arms.others}
    treated_y = {name: Y[on & ~off] for name, (_, on, _) in pairs.items()}
    world: dict[str, Panel] = {}  # with --effect: one world, every arm's effect the same
    if setting.effect:
        Y1 = Y + added_effect(setting, setting.effect, tau, Y)
        world = {name: panel(name, Y1) for name in arms.others}

    def fits(plan: EstimatorPlan, panels: Mapping[str, Panel]) -> Callable[[str], Any]:
        return lambda name: fit_plan(plan, panels[name], seed)

    rows: list[dict[str, Any]] = []
    for plan in setting.plans:
        base = {"estimator": plan.label, "start": start, "seed": seed, "split": comp.split}
        try:
            c0 = compare_pairs(arms, fits(plan, aa), ALPHA, corr(plan, Y))
            q0 = critical_values(c0)
            e1 = {
                name: _second_effect(setting, r.se / share, q, treated_y[name])
                for name, r, q in zip(arms.others, c0.results, q0, strict=True)
            }
            if setting.effect:
                c1 = compare_pairs(arms, fits(plan, world), ALPHA, corr(plan, Y1))
                r1, q1 = c1.results, critical_values(c1)
            else:  # each arm near its own MDE; no power is reported, so no joint test
                r1 = tuple(
                    fit_plan(plan, panel(name, Y + added_effect(setting, e1[name], tau, Y)), seed)
                    for name in arms.others
                )
                q1 = q0
        except Exception as exc:  # noqa: BLE001 - a failing fit is counted, not fatal
            error = f"{type(exc).__name__}: {exc}"[:300]
            rows += [base | {"arm": name, "error": error} for name in arms.others]
            continue
        for j, name in enumerate(arms.others):
            row = base | {"arm": name, "sim_method": c0.simultaneous.method}
            fit = _fit_row(
                setting, c0.results[j], r1[j], e1[name], q0[j], q1[j], ALPHA / comp.split
            )
            rows.append(row | fit)
    return rows


def pair_matrices(
    arm: np.ndarray, a: int, control: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arm ``a`` against ``control`` on a design's units x periods matrix of arm indices, by
    the rule :func:`analysis.arms.pair_frame` applies to a long table
    (:func:`analysis.arms.pair_cells`): (the units kept, arm ``a``'s cells, the third arms'
    cells). A unit the design put in a third arm and never in ``a`` is left out whole; the
    third arms' cells of the others are blacked out."""
    n, t = arm.shape
    keep, on, third = pair_cells(arm.ravel(), np.repeat(np.arange(n), t), a, control)
    rows = np.asarray(keep.reshape(n, t).any(axis=1), dtype=bool)
    return rows, on.reshape(n, t), third.reshape(n, t)


def pair_panel(
    m: Any,
    cells: tuple[np.ndarray, np.ndarray, np.ndarray],
    Y: np.ndarray,
    off: np.ndarray,
    groups: np.ndarray | None = None,
) -> Panel:
    """The panel of one pair (:func:`pair_matrices`) of the draw ``m`` with outcomes ``Y``: the
    units kept, treated on the arm's cells, blacked out where ``off`` or a third arm's, the
    design probability as it is (as the worker's pair panel has it)."""
    rows, on, dark = cells
    blackout = (off | dark)[rows]
    return Panel(
        Y=np.where(blackout, np.nan, Y[rows]),
        W=on[rows],
        units=np.asarray(m.units)[rows],
        times=np.arange(Y.shape[1]),
        blackout=blackout,
        probability=m.probability[rows],
        groups=None if groups is None else groups[rows],
    )


def pair_correlation(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    order: Sequence[str],
    Y: np.ndarray,
    off: np.ndarray,
    probability: np.ndarray,
) -> np.ndarray:
    """The correlation of the k - 1 differences in means, each over its pair's randomised
    usable cells, clustered by unit: :func:`analysis.arms.dm_correlation` on matrices."""
    n = Y.shape[0]
    randomised = ~off & (probability > 0) & (probability < 1)
    psi = []
    for name in order:
        rows, on, dark = pairs[name]
        use = rows[:, None] & randomised & ~dark
        psi.append(dm_influence(Y[use], np.nonzero(use)[0], on[use], n))
    return influence_correlation(psi)


def critical_values(compared: ArmComparison) -> list[float]:
    """Each comparison's simultaneous critical value: Dunnett's, shared, or (Bonferroni) the one
    of its own interval at alpha / (k - 1), read off the interval the worker publishes."""
    sim = compared.simultaneous
    if sim.critical_value is not None:
        return [float(sim.critical_value)] * len(compared.results)
    out = []
    for (lo, hi), r in zip(sim.intervals, compared.results, strict=True):
        se = float(r.se)
        out.append((hi - lo) / (2.0 * se) if math.isfinite(se) and se > 0 else math.nan)
    return out


def _second_effect(setting: SimSetting, se: float, q: float, treated_y: np.ndarray) -> float:
    """The effect of a simulation's second fit: the one asked for; without one (or with 0),
    about the effect this simulation could detect, (q + z_0.8) x its A/A SE (over the mean
    treated outcome for a relative effect), so that the SE's move with the effect is
    measured near the MDE, where it matters (HT's variance bound is convex in the effect)."""
    if setting.effect:
        return setting.effect
    e = (q + _Z_POWER) * se
    if setting.relative:
        level = float(treated_y.mean()) / setting.window_share if treated_y.size else math.nan
        e = e / level if level > 0 else math.nan
    return e if math.isfinite(e) and e > 0 else _UNIT_EFFECT[setting.relative]


def _quantile(df: float | None) -> float:
    if df is not None and math.isfinite(df):
        return float(stats.t.ppf(1 - ALPHA / 2, df))
    return float(stats.norm.ppf(1 - ALPHA / 2))


# --------------------------------------------------------------------------- summaries
def mde(
    effect0: np.ndarray,
    se0: np.ndarray,
    q: np.ndarray,
    response: np.ndarray,
    se_slope: np.ndarray | None = None,
) -> float:
    """The smallest effect e >= 0 at which |effect0 + e*response| > q*(se0 + e*se_slope) in
    a share ``TARGET_POWER`` of the simulations. ``se_slope`` is each simulation's change of
    SE per unit of effect, measured between its two fits (0: the SE does not move). A
    simulation whose numbers are not finite counts and never rejects, as in ``type1`` and
    ``power``. Each simulation changes state only where one side of the inequality meets the
    other (at most twice), so the share is checked just after every such point."""
    d = np.zeros_like(se0) if se_slope is None else se_slope
    valid = np.isfinite(effect0) & np.isfinite(se0) & np.isfinite(response) & np.isfinite(d)
    if not valid.any():
        return math.nan
    a, s, b, dv, qv = effect0[valid], se0[valid], response[valid], d[valid], q[valid]
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.stack([(qv * s - a) / (b - qv * dv), (-qv * s - a) / (b + qv * dv)], axis=1)
    own = np.where(np.isfinite(own) & (own > 0), own, np.inf)
    own.sort(axis=1)  # each simulation's (at most two) points of change, in order

    def rejects(e: np.ndarray) -> np.ndarray:
        """Whether each simulation rejects just after its own effect ``e``."""
        e = e + np.maximum(np.abs(e) * 1e-9, 1e-12)
        with np.errstate(invalid="ignore"):
            return np.abs(a + e * b) > qv * np.maximum(s + e * dv, 0.0)

    # a sweep over the points of change (n log n; checking every point against every
    # simulation was n^2 in time and memory): the share just after 0, then each point adds
    # its simulation's change of state there
    state = [rejects(np.zeros_like(a))]
    cuts, steps = [], []
    for k in (0, 1):
        at = own[:, k]
        live = np.isfinite(at)
        now = rejects(np.where(live, at, 0.0)) & live | state[-1] & ~live
        cuts.append(at[live])
        steps.append(now[live].astype(int) - state[-1][live].astype(int))
        state.append(now)
    cut = np.concatenate(cuts)
    step = np.concatenate(steps)
    order = np.argsort(cut, kind="stable")
    points, first = np.unique(cut[order], return_index=True)
    totals = np.add.reduceat(step[order], first) if len(order) else np.array([], dtype=int)
    n = len(effect0)
    points = np.concatenate([[0.0], points])
    shares = (state[0].sum() + np.concatenate([[0], np.cumsum(totals)])) / n
    # the effect from which the power stays at or above the target (an SE growing faster
    # than the estimate can make it dip again)
    stays = np.minimum.accumulate(shares[::-1])[::-1]
    reached = np.nonzero(stays >= TARGET_POWER)[0]
    return float(points[reached[0]]) if reached.size else math.nan


def power_curve(
    effect0: np.ndarray,
    se0: np.ndarray,
    q: np.ndarray,
    response: np.ndarray,
    grid: np.ndarray,
    se_slope: np.ndarray | None = None,
) -> np.ndarray:
    """Share of simulations rejecting at each effect of ``grid`` (same model as :func:`mde`;
    the denominator is every simulation given)."""
    n = len(effect0)
    if n == 0:
        return np.full(len(grid), math.nan)
    d = np.zeros_like(se0) if se_slope is None else se_slope
    valid = np.isfinite(effect0) & np.isfinite(se0) & np.isfinite(response) & np.isfinite(d)
    a, s, b, dv, qv = effect0[valid], se0[valid], response[valid], d[valid], q[valid]
    est = a[None, :] + grid[:, None] * b[None, :]
    se = np.maximum(s[None, :] + grid[:, None] * dv[None, :], 0.0)
    return (np.abs(est) > qv[None, :] * se).sum(axis=1) / n


def _fit_arrays(
    g: pd.DataFrame, quantile: str = "q0"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A/A estimates, their SEs, critical values, responses to a unit effect, SE slopes);
    ``quantile="q_seq0"``: the verdict's, the anytime-valid sequence's multiplier at the
    planned horizon (:func:`analysis.confseq.horizon_multiplier`)."""
    cols = ("effect0", "se0", quantile, "response", "se_slope")
    a, s, q, b, d = (g[c].to_numpy(dtype=float) for c in cols)
    return a, s, q, b, d


def fitted(sims: pd.DataFrame, effect: float | None) -> pd.Series:
    """The simulations whose fits raised nothing and returned finite numbers: the A/A estimate
    and SE, and the estimate and SE with the effect when one is given. Any other is a failed
    fit, as :func:`lab.compare.summarise` counts them."""
    cols = ["effect0", "se0"] + (["effect1", "se1"] if effect is not None else [])
    finite = np.isfinite(sims[cols].to_numpy(dtype=float)).all(axis=1)
    return (sims["error"] == "") & finite


def verdict_power(ok: pd.DataFrame, periods: int, alpha: float = ALPHA) -> float:
    """The verdict's power at the effect: the share of simulations in which it decides at
    some look (:func:`analysis.verdict.any_look_power`: the looks before the end drawn as
    Brownian bridges to the end each simulation reached). At the end alone it would be the
    ``verdict1`` share; the live worker looks every period, and acting on its first decisive
    look is what the sequence allows."""
    rng = np.random.default_rng(zlib.crc32(f"verdict-power:{periods}".encode()))
    shares = [
        any_look_power(e, s, periods, df=None if not math.isfinite(d) else d, alpha=alpha, rng=rng)
        for e, s, d in zip(
            ok["effect1"].to_numpy(dtype=float),
            ok["se1"].to_numpy(dtype=float),
            ok["df1"].to_numpy(dtype=float) if "df1" in ok else np.full(len(ok), math.nan),
            strict=True,
        )
    ]
    finite = [x for x in shares if math.isfinite(x)]
    return float(sum(finite) / len(ok)) if len(ok) else math.nan


def summarise(sims: pd.DataFrame, effect: float | None) -> pd.DataFrame:
    """One row per spec, duration and estimator: type1, power, mde, se (and failures).
    TooManyFailedFits when more than :data:`lab.failed_fits.MAX_FAILED_SHARE` of a row's
    fits failed (raised, or returned a non-finite estimate or SE)."""
    out = []
    keys = ["spec", "design", "duration", "estimator"]
    per_arm = "arm" in sims.columns
    if per_arm:  # k arms: one row per comparison ("" for a two-arm spec beside a ladder)
        sims = sims.assign(arm=sims["arm"].fillna(""))
        keys.append("arm")
    for key, g in sims.groupby(keys, sort=False):
        good = fitted(g, effect)
        ok, failed = g[good], g[~good]
        row = dict(zip(keys, key, strict=True))
        split = int(g["split"].iloc[0]) if per_arm and row["arm"] else 1
        row |= {
            "n_units": int(g["n_units"].iloc[0]),
            "sims": len(g),
            "failed": len(g) - len(ok),
            "type1": float(ok["reject0"].mean()) if len(ok) else math.nan,
            "power": float(ok["reject1"].mean()) if (len(ok) and effect is not None) else None,
            "mde": mde(*_fit_arrays(ok)) if len(ok) else math.nan,
            # the verdict (docs/decision.md) decides on the anytime-valid sequence: its power
            # at the effect, and its MDE, at the sequence's multiplier at the horizon
            "verdict_power": verdict_power(ok, int(row["duration"]), ALPHA / split)
            if (len(ok) and effect is not None)
            else None,
            "verdict_mde": mde(*_fit_arrays(ok, "q_seq0")) if len(ok) else math.nan,
            "se": float(ok["se0"].mean()) if len(ok) else math.nan,
            "first_error": (str(failed["error"].iloc[0]) or "a non-finite estimate")
            if len(failed)
            else "",
        }
        if per_arm and row["arm"]:
            row |= _family(sims, row, effect, split)
        check_failed_fits(
            f"spec {row['spec']!r} ({row['design']}) with estimator {row['estimator']}"
            + (f" for arm {row['arm']}" if per_arm and row["arm"] else "")
            + f" at {row['duration']} periods",
            row["failed"],
            row["sims"],
            row["first_error"],
        )
        out.append(row)
    return pd.DataFrame(out)


def _family(
    sims: pd.DataFrame, row: Mapping[str, Any], effect: float | None, split: int
) -> dict[str, Any]:
    """What one comparison's row of a k-arm plan shares with the others of its estimator: the
    family-wise type-I error (the share of A/A simulations, all of whose comparisons fitted, in
    which any comparison rejects), the simultaneous intervals' method and ``cs_split``."""
    keys = ("spec", "design", "duration", "estimator")
    g = sims[np.logical_and.reduce([sims[k] == row[k] for k in keys])]
    good = g.assign(ok=fitted(g, effect))
    whole = good.groupby("sim")["ok"].all()
    rejected = good.groupby("sim")["reject0"].any()[whole]
    methods = g.loc[good["ok"], "sim_method"].dropna()
    return {
        "type1_family": float(rejected.mean()) if len(rejected) else math.nan,
        "sim_method": str(methods.mode().iloc[0]) if len(methods) else "",
        "cs_split": split,
    }


# --------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class PlanConfig:
    effect: float | None = None
    relative: bool = False
    durations: tuple[int, ...] | None = None
    sims: int = 200
    seed: int = 0
    carryover: int = 0
    jobs: int = 1
    #: each treatment arm's effect, in the spec's arm order (lab.plan_adaptive): a regret plan
    arm_effects: tuple[float, ...] | None = None


@dataclass
class Job:
    """All simulations of one spec at one duration."""

    name: str
    setting: SimSetting
    starts: np.ndarray
    seeds: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)


def check_config(cfg: PlanConfig) -> None:
    if cfg.sims < 10:
        raise LabError(f"--sims must be at least 10, not {cfg.sims}")
    if cfg.seed < 0:
        raise LabError(f"--seed must be a non-negative whole number, not {cfg.seed}")
    if cfg.carryover < 0:
        raise LabError(f"--carryover must be 0 or more periods, not {cfg.carryover}")
    if cfg.effect is not None and not math.isfinite(cfg.effect):
        raise LabError("--effect must be a finite number")
    if cfg.relative and cfg.effect is not None and cfg.effect <= -1:
        raise LabError(f"a relative --effect must be above -1 (-100%), not {cfg.effect}")
    if cfg.jobs < 1:
        raise LabError(f"--jobs must be at least 1, not {cfg.jobs}")
    if cfg.arm_effects is not None and cfg.effect is not None:
        raise LabError(
            "give --effect (one effect, a power plan) or --arm-effects (one effect per arm, "
            "a regret plan), not both"
        )


def check_not_adaptive(name: str, spec: ExperimentSpec) -> None:
    """LabError for an adaptive ladder planned without ``--arm-effects``: an adaptive
    allocation follows the outcomes each price causes, so the planner needs each arm's
    expected effect (:mod:`lab.plan_adaptive`), not the one effect of a power plan."""
    if spec.adaptive is not None:
        others = ", ".join(a.name for a in spec.arm_list() if not a.control)
        raise LabError(
            f"{name}: an adaptive ladder is planned on the effect each arm is expected to "
            f"have, because its allocation follows the outcomes each price causes: give "
            f"--arm-effects with one effect per treatment arm ({others}), in outcome units "
            "or as shares with --relative"
        )


def make_jobs(
    specs: Sequence[tuple[str, ExperimentSpec]], history: History, cfg: PlanConfig
) -> tuple[list[Job], list[str]]:
    """One job per spec and duration (validated up front, so a bad duration fails before any
    simulation runs), and the notes to show the user. An adaptive ladder is refused
    (:func:`check_not_adaptive`)."""
    check_config(cfg)
    for name, spec in specs:
        check_not_adaptive(name, spec)
    jobs: list[Job] = []
    notes: list[str] = []
    for name, spec in specs:
        durations = cfg.durations or (n_periods(spec),)
        for d in durations:
            planned = plan_spec_at(spec, history, d)
            if planned.note and f"{name}: {planned.note}" not in notes:
                notes.append(f"{name}: {planned.note}")
            washout_share = window_share(spec)
            plans = tuple(design_of(planned.spec).estimators(planned.spec))
            comparisons = comparisons_of(planned.spec)
            if comparisons is not None:
                plans = arm_plans(name, planned.spec, plans, notes)
            setting = SimSetting(
                planned,
                plans,
                cfg.effect,
                cfg.relative,
                cfg.carryover,
                washout_share,
                comparisons,
            )
            starts, seeds = placements(cfg, name, d, history)
            jobs.append(Job(name, setting, starts, seeds))
    return jobs, notes


def window_share(spec: ExperimentSpec) -> float:
    """The share of a period's sales the live panel counts after the washout (module
    docstring)."""
    return 1.0 - min(spec.washout / spec.period, 1.0) if spec.washout else 1.0


def placements(
    cfg: PlanConfig, name: str, periods: int, history: History
) -> tuple[np.ndarray, np.ndarray]:
    """Each simulation's start in the history and its seed, keyed by the spec's name (so one
    spec's simulations do not depend on the others) and the duration."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode()), periods])
    starts = rng.integers(0, history.n_periods - periods + 1, size=cfg.sims)
    seeds = rng.integers(0, 2**31 - 1, size=cfg.sims)
    return starts, seeds


def arm_plans(
    name: str, spec: ExperimentSpec, plans: Sequence[EstimatorPlan], notes: list[str]
) -> tuple[EstimatorPlan, ...]:
    """The design's estimators that the worker fits per arm (analysis.arms.PAIR_METHODS); each
    other one is noted once with the reason the worker gives, and a spec left with none is a
    LabError."""
    fitted = tuple(p for p in plans if p.name in PAIR_METHODS)
    for p in plans:
        if p.name not in PAIR_METHODS:
            note = f"{name}: {not_on_pairs(p.name)}; the planner leaves it out"
            if note not in notes:
                notes.append(note)
    if not fitted:
        raise LabError(
            f"the {spec.n_arms}-arm experiment {spec.id!r} ({spec.design}) cannot be planned: "
            f"none of its design's estimators ({', '.join(p.label for p in plans)}) is fitted "
            "per arm against the control yet (the analysis worker publishes them as not "
            "identified)"
        )
    return fitted


_WORKER_HISTORY: np.ndarray | None = None


def _init_worker(Y: np.ndarray) -> None:
    """Each worker process receives the history once (not with every task)."""
    from threadpoolctl import threadpool_limits

    global _WORKER_HISTORY
    _WORKER_HISTORY = Y
    threadpool_limits(1)


def _run_job(args: tuple[Job, list[int]]) -> list[dict[str, Any]]:
    job, idx = args
    assert _WORKER_HISTORY is not None
    return _run_sims(job, _WORKER_HISTORY, idx)


def _run_sims(job: Job, Y: np.ndarray, idx: Iterable[int]) -> list[dict[str, Any]]:
    p = job.setting.planned
    base = {
        "spec": job.name,
        "design": p.spec.design,
        "duration": n_periods(p.spec),
        "n_units": len(p.units),
    }
    out = []
    for i in idx:
        for row in simulate_once(job.setting, Y, int(job.starts[i]), int(job.seeds[i])):
            out.append(base | row | {"sim": i})
    return out


Progress = Callable[[int, int, str], None]


def run_plan(
    specs: Sequence[tuple[str, ExperimentSpec]],
    history: History,
    cfg: PlanConfig,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Every simulation (one row per simulation and estimator), the summary, and notes."""
    jobs, notes = make_jobs(specs, history, cfg)
    total = sum(len(j.starts) for j in jobs)
    done = 0
    rows: list[dict[str, Any]] = []
    chunk = 10
    if cfg.jobs <= 1:
        for job in jobs:
            label = f"{job.name} {job.setting.planned.spec.design} {n_periods(job.setting.planned.spec)}"
            for s in range(0, len(job.starts), chunk):
                idx = range(s, min(s + chunk, len(job.starts)))
                rows += _run_sims(job, history.Y, idx)
                done += len(idx)
                if progress is not None:
                    progress(done, total, label)
    else:
        tasks = [
            (job, list(range(s, min(s + chunk, len(job.starts)))))
            for job in jobs
            for s in range(0, len(job.starts), chunk)
        ]
        workers = min(cfg.jobs, len(tasks))
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(history.Y,))
        try:
            for (job, part_idx), part in zip(tasks, pool.map(_run_job, tasks), strict=True):
                rows += part
                done += len(part_idx)
                if progress is not None:
                    label = f"{job.name} {job.setting.planned.spec.design}"
                    progress(done, total, label)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    sims = pd.DataFrame(rows)
    cols = (
        "effect0", "se0", "q0", "q_seq0", "reject0", "effect1", "se1", "df1", "reject1",
        "verdict1",
        "response", "se_slope",
    )  # fmt: skip
    for col in cols:
        if col not in sims:  # every fit failed
            sims[col] = False if col.startswith(("reject", "verdict")) else math.nan
    if "error" not in sims:
        sims["error"] = ""
    sims["error"] = sims["error"].fillna("")
    return sims, summarise(sims, cfg.effect), notes


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may use (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


JSON_KEYS = (
    "spec",
    "design",
    "duration",
    "estimator",
    "n_units",
    "sims",
    "type1",
    "power",
    "mde",
    "verdict_power",
    "verdict_mde",
    "se",
)


#: the keys a comparison of a k-arm plan adds to :data:`JSON_KEYS` (a two-arm row has none)
ARM_JSON_KEYS = ("arm", "type1_family", "sim_method", "cs_split")


def as_json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary as the JSON objects ``--json`` prints (exactly :data:`JSON_KEYS`, and for a
    comparison of a k-arm plan :data:`ARM_JSON_KEYS` too)."""
    out = []
    for r in table.to_dict("records"):
        doc = {}
        for k in JSON_KEYS + (ARM_JSON_KEYS if r.get("arm") else ()):
            v = r[k]
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            elif hasattr(v, "item"):
                v = v.item()
            doc[k] = int(v) if k == "cs_split" and v is not None else v  # a float beside NaN
        out.append(doc)
    return out


# --------------------------------------------------------------------------- output
COLUMNS = (
    ("spec", "{}"),
    ("design", "{}"),
    ("duration", "{:d}"),
    ("estimator", "{}"),
    ("n_units", "{:d}"),
    ("sims", "{:d}"),
    ("type1", "{:.3f}"),
    ("power", "{:.3f}"),
    ("mde", "{:.4g}"),
    ("verdict_power", "{:.3f}"),
    ("verdict_mde", "{:.4g}"),
    ("se", "{:.4g}"),
)


def columns_of(table: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The columns shown: :data:`COLUMNS`, and for a plan with k > 2 arms each comparison's
    arm, the family-wise type-I error and the simultaneous intervals' method."""
    if "arm" not in table.columns:
        return COLUMNS
    out: list[tuple[str, str]] = []
    for name, fmt in COLUMNS:
        out.append((name, fmt))
        if name == "estimator":
            out.append(("arm", "{}"))
        elif name == "type1":
            out.append(("type1_family", "{:.3f}"))
    return (*out, ("sim_method", "{}"))


def _cell(v: Any, fmt: str) -> str:
    """One summary value as the table and the page show it ("-" when there is none)."""
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return str(int(v)) if fmt == "{:d}" else fmt.format(v)


def format_table(table: pd.DataFrame, effect: float | None, relative: bool) -> str:
    """The summary as a fixed-width text table, with a legend."""
    columns = columns_of(table)
    cells = [[name for name, _ in columns]]
    cells += [[_cell(r.get(n), f) for n, f in columns] for r in table.to_dict("records")]
    width = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)) for row in cells]
    unit = "share of the outcome" if relative else "outcome units per unit and period"
    at = "" if effect is None else f"; power: at an effect of {effect:g}"
    lines.append(
        f"type1: rejections at 5% with no effect; mde: smallest effect with 80% power at 5% "
        f"({unit}){at}; verdict_power, verdict_mde: the same for the verdict, which decides "
        "on the anytime-valid sequence at the planned end (docs/decision.md); se: mean "
        "standard error"
    )
    if "arm" in table.columns:
        lines.append(ARM_LEGEND)
    for r in table.to_dict("records"):
        if r["failed"]:
            arm = f" for arm {r['arm']}" if r.get("arm") else ""
            lines.append(
                f"! {r['spec']} {r['estimator']}{arm} at {r['duration']}: {r['failed']} of "
                f"{r['sims']} fits failed, e.g. {r['first_error']}"
            )
    return "\n".join(lines)


#: the legend's line for a plan with k > 2 arms
ARM_LEGEND = (
    "arm: that arm against the control, on the pair's cells, as the analysis worker estimates "
    "it; type1, power and mde at the simultaneous interval the worker publishes (sim_method: "
    "dunnett-t or dunnett-normal, Dunnett's critical value of the k - 1 comparisons, or "
    "bonferroni, each at 5% / (k - 1)); type1_family: A/A simulations in which any arm "
    "rejects; verdict_power, verdict_mde: at each arm's sequence at 5% / (k - 1), as the "
    'k-arm verdict decides (docs/decision.md, "k arms")'
)


def curve_grid(table: pd.DataFrame) -> np.ndarray:
    top = float(np.nanmax(table["mde"].to_numpy(dtype=float))) if len(table) else math.nan
    if not math.isfinite(top) or top <= 0:
        top = 1.0
    return np.linspace(0.0, 2.0 * top, 81)


def write_outputs(
    sims: pd.DataFrame,
    table: pd.DataFrame,
    out_dir: Path,
    *,
    effect: float | None,
    relative: bool,
    notes: Sequence[str] = (),
    title: str = "Experiment plan",
) -> list[Path]:
    """sims.csv, summary.csv, power_curves.png and index.html under ``out_dir``."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "sims.csv", out / "summary.csv", out / "power_curves.png", out / "index.html"]
    sims.to_csv(paths[0], index=False)
    table.to_csv(paths[1], index=False)

    grid = curve_grid(table)
    groups = list(table.groupby(["spec", "design"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), squeeze=False)
    for ax, ((name, design), rows) in zip(axes[0], groups, strict=True):
        for r in rows.to_dict("records"):
            g = sims[
                (sims["spec"] == name)
                & (sims["duration"] == r["duration"])
                & (sims["estimator"] == r["estimator"])
                & fitted(sims, effect)
            ]
            arm = f", {r['arm']}" if r.get("arm") else ""
            if arm:
                g = g[g["arm"] == r["arm"]]
            a, s0, q0, b, d = _fit_arrays(g)
            curve = power_curve(a, s0, q0, b, grid, d)
            (line,) = ax.plot(grid, curve, label=f"{r['estimator']}{arm}, {r['duration']} periods")
            if math.isfinite(r["mde"]):
                ax.axvline(r["mde"], color=line.get_color(), lw=0.7, ls=":")
        ax.axhline(TARGET_POWER, color="k", lw=0.7, ls="--")
        ax.axhline(ALPHA, color="grey", lw=0.7, ls="--")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} ({design})", fontsize=10)
        ax.set_xlabel("effect (share of outcome)" if relative else "effect (outcome units)")
        ax.set_ylabel("power at 5%")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)

    columns = columns_of(table)
    head = "".join(f"<th>{html.escape(n)}</th>" for n, _ in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(r.get(n), f))}</td>" for n, f in columns)
        + "</tr>"
        for r in table.to_dict("records")
    )
    unit = "share of the outcome" if relative else "outcome units per unit and period"
    at = "" if effect is None else f" Power is at an effect of {effect:g}."
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    paths[3].write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Simulated on the history with the designs and estimators that run live. type1: share of
A/A simulations rejecting at 5%; mde: smallest effect with 80% power at 5% ({unit});
se: mean standard error.{html.escape(at)}</p>
<ul id="notes">{note_html}</ul>
<table id="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Power curves</h2><img id="curves" src="power_curves.png" alt="power against effect size">
</body></html>
""",
        encoding="utf-8",
    )
    return paths
