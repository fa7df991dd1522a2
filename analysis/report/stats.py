"""The report's statistics: the panel normalised, pre-period fits, the sample-ratio check,
covariate balance, and the analysis worker replayed on a finished panel."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.adaptive_live import is_adaptive
from analysis.adaptive_offline import recorded_probabilities
from analysis.errors import AnalysisError
from analysis.estimators import registry
from analysis.panel import Panel, blackout_flags, zero_one
from analysis.results import published_fields
from core import status
from core.ports import EstimatorPlan, ExperimentInfo, PublishedEstimate

SYNTH_ESTIMATORS: tuple[str, ...] = ("sc", "difp", "sdid")

#: product characteristics fixed before assignment (a simulator panel carries all; the live
#: report adds the spec's unit costs as ``unit_cost``)
COVARIATE_CANDIDATES: tuple[str, ...] = (
    "base_price", "unit_cost", "width", "battery", "rating", "weight",
)  # fmt: skip


# --------------------------------------------------------------------------- inputs
def normalise_panel(df: pd.DataFrame, outcome: str = "units") -> pd.DataFrame:
    """Columns product, period, ``outcome``, treated, probability, blackout (+ the rest).

    Accepts the worker's cell table (``product``, ``period``) and the simulator's panel
    (``unit``, ``period``); a missing probability is taken as unknown (NaN), a missing
    blackout as False.
    """
    d = df.copy()
    if "period" not in d.columns and "day" in d.columns:
        d = d.rename(columns={"day": "period"})
    if "product" not in d.columns and "unit" in d.columns:
        d = d.rename(columns={"unit": "product"})
    missing = [c for c in ("product", "period", outcome, "treated") if c not in d.columns]
    if missing:
        raise AnalysisError(f"the panel needs column(s) {missing}; it has {list(d.columns)}")
    values = pd.to_numeric(d[outcome], errors="coerce")
    bad = values.isna() & d[outcome].notna()
    if bad.any():
        raise AnalysisError(
            f"the outcome column {outcome!r} has non-numeric values, e.g. "
            f"{d.loc[bad, outcome].iloc[0]!r}"
        )
    d[outcome] = values
    if "probability" not in d.columns:
        d["probability"] = np.nan
    if "blackout" not in d.columns:
        d["blackout"] = False
    # 0/1 or true/false only: astype stopped "yes" with a traceback, and read "no" and an
    # empty cell as a blackout and a treated share of 0.5 as control
    d["treated"] = zero_one(d, "treated", "Treatment").astype(int)
    d["blackout"] = blackout_flags(d, "blackout")
    return d.sort_values(["product", "period"], kind="stable").reset_index(drop=True)


def split_verdicts(messages: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The estimates topic's messages of one experiment, split into estimates and verdicts.

    A verdict (``"kind": "verdict"``, published by the analysis worker at each look) carries
    ``estimator``, ``metric`` and ``effect`` like an estimate but is none: read as one it would
    pass for the decision metric's estimate. Estimates have no ``kind`` or ``"estimate"``;
    a kind this reader does not know is left out of both. Columns that only verdicts fill
    are dropped from the estimates, so they keep the shape they had before verdicts existed.
    """
    if messages is None or messages.empty:
        return pd.DataFrame(), pd.DataFrame()
    if "kind" not in messages.columns:
        return messages, messages.iloc[0:0]
    kind = messages["kind"].astype(object).where(messages["kind"].notna(), "estimate")
    estimates, verdicts = messages[kind == "estimate"], messages[kind == "verdict"]
    verdict_only = [
        c
        for c in messages.columns
        if c == "kind" or (estimates[c].isna().all() and verdicts[c].notna().any())
    ]
    return estimates.drop(columns=verdict_only), verdicts.dropna(axis=1, how="all")


def _matrix(df: pd.DataFrame, col: str, fill: Any = 0) -> pd.DataFrame:
    return df.pivot(index="product", columns="period", values=col).fillna(fill)


@dataclass(frozen=True)
class PreFit:
    estimator: str
    periods: np.ndarray
    treated: np.ndarray
    synthetic: np.ndarray
    first_treated: int
    pre_rmse: float
    effect: float


def pre_period_fits(
    panel: Panel, estimators: Sequence[str] = SYNTH_ESTIMATORS, seed: int = 0
) -> list[PreFit]:
    """Treated mean path against the synthetic control of each sc-type estimator.

    Only for block designs with a pre-period (empty otherwise). The synthetic path is the
    control units weighted by the estimator's unit weights; for difp and sdid, which allow a
    level difference, it is shifted to match the treated pre-period mean.
    """
    if not panel.is_block or panel.blackout.any():
        return []
    p = panel.sorted_for_block()
    try:
        N0, T0 = p.block_structure()
    except AnalysisError:
        return []
    if T0 < 2:
        return []
    treated = p.Y[N0:].mean(axis=0)
    fits = []
    for name in estimators:
        try:
            res = registry.make(name, seed=seed, se="none").fit(p).result
        except (AnalysisError, ValueError):
            continue
        w = res.details.get("unit_weights") or {}
        omega = np.array([w.get(u, 0.0) for u in p.units[:N0]])
        synth = omega @ p.Y[:N0]
        if name != "sc":
            synth = synth + (treated[:T0].mean() - synth[:T0].mean())
        rmse = float(np.sqrt(np.mean((treated[:T0] - synth[:T0]) ** 2)))
        fits.append(PreFit(name, p.times, treated, synth, T0, rmse, res.effect))
    return fits


# --------------------------------------------------------------------------- balance
@dataclass(frozen=True)
class SampleRatio:
    """Realised treated share of the independent draws against the design probability."""

    level: str  # "product", "class" or "cell"
    n: int
    treated: int
    expected_share: float
    pvalue: float

    @property
    def share(self) -> float:
        return self.treated / self.n if self.n else math.nan


def sample_ratio_check(df: pd.DataFrame) -> SampleRatio | None:
    """Binomial test of the treated count among the design's independent draws.

    When every product keeps one arm over its randomised periods (time-bound, crossover in its
    first phase, fixed clusters) the draws are products (their first randomised period); when
    a ``class`` column is present, class x period; otherwise product x period cells (random
    days). Cells with P(treatment) of 0 or 1, unknown or in blackout are left out. With unequal
    probabilities the count is compared with its Poisson-binomial mean and variance (normal
    approximation).
    """
    d = df[(df["probability"] > 0) & (df["probability"] < 1) & ~df["blackout"]]
    if d.empty:
        return None
    draws, level = _independent_draws(d)
    n = len(draws)
    k = int(draws["treated"].sum())
    p = draws["probability"].to_numpy(float)
    if np.allclose(p, p[0]):
        pval = float(stats.binomtest(k, n, float(p[0])).pvalue)
    else:
        mu, var = float(p.sum()), float((p * (1 - p)).sum())
        pval = float(2 * stats.norm.sf(abs(k - mu) / math.sqrt(var))) if var > 0 else math.nan
    return SampleRatio(level, n, k, float(p.mean()), pval)


@dataclass(frozen=True)
class ArmSampleRatio:
    """Realised count of each arm among the design's independent draws against the counts
    its allocations expect (Pearson's chi-square, k - 1 degrees of freedom)."""

    level: str  # "product", "class" or "cell"
    n: int
    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    pvalue: float


def _independent_draws(d: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The design's independent draws among randomised cells (see :func:`sample_ratio_check`)."""
    fixed = d.groupby("product")["treated"].nunique().max() == 1
    if "arm" in d.columns and fixed:
        fixed = bool(d.groupby("product")["arm"].nunique().max() == 1)
    if "class" in d.columns and not fixed:
        agg: dict[str, tuple[str, str]] = {
            "treated": ("treated", "max"),
            "probability": ("probability", "first"),
        }
        if "arm" in d.columns:
            agg["arm"] = ("arm", "first")
        return d.groupby(["class", "period"]).agg(**agg), "class"  # type: ignore[call-overload]
    if fixed:
        return d.sort_values("period").groupby("product").first(), "product"
    return d, "cell"


def arm_sample_ratio_check(
    df: pd.DataFrame, allocations: Mapping[str, float], control: str
) -> ArmSampleRatio | None:
    """Pearson's chi-square of every arm's count among the design's independent draws (the
    same draws as :func:`sample_ratio_check`) against the counts the spec's ``allocations``
    expect: a draw whose probability of leaving the control is ``p`` is expected in the
    control with ``1 - p`` and in arm ``a`` with ``p * allocation_a / (1 - allocation_control)``
    (the arms other than the control share the treated draws in their allocations' ratio).
    With unequal probabilities the counts are sums of unlike multinomials and the chi-square
    is an approximation. None when there is no randomised draw or the panel names no arm.
    """
    if "arm" not in df.columns or control not in allocations:
        return None
    d = df[(df["probability"] > 0) & (df["probability"] < 1) & ~df["blackout"]]
    if d.empty:
        return None
    draws, level = _independent_draws(d)
    p = draws["probability"].to_numpy(float)
    arm = draws["arm"].astype(str).to_numpy()
    others = math.fsum(v for a, v in allocations.items() if a != control)
    names = list(allocations)
    observed = {a: int((arm == a).sum()) for a in names}
    expected = {
        a: float((1 - p).sum()) if a == control else float(p.sum()) * allocations[a] / others
        for a in names
    }
    if sum(observed.values()) != len(draws) or min(expected.values()) <= 0:
        return None  # an arm the spec does not list: nothing to compare it with
    stat = float(sum((observed[a] - expected[a]) ** 2 / expected[a] for a in names))
    pval = float(stats.chi2.sf(stat, len(names) - 1))
    return ArmSampleRatio(level, len(draws), observed, expected, stat, pval)


def covariate_balance(df: pd.DataFrame, outcome: str = "units") -> pd.DataFrame:
    """Standardised mean differences (treated - control) / pooled SD, over randomised cells.

    Covariates are the product characteristics present in the panel and, when the design has
    a pre-period (cells with P(treatment) = 0 before a product's first randomised period), the
    product's pre-period mean outcome. Products enter with the share of their randomised cells
    in each arm, so a switchback's products count in both arms.
    """
    cand = [c for c in COVARIATE_CANDIDATES if c in df.columns]
    per_unit = (
        df.groupby("product")[cand].first() if cand else pd.DataFrame(index=df["product"].unique())
    )
    pre = df[(df["probability"] == 0) & ~df["blackout"]]
    rand = df[(df["probability"] > 0) & ~df["blackout"]]
    if not pre.empty and not rand.empty:
        first_rand = rand.groupby("product")["period"].min()
        pre = pre[pre["period"] < pre["product"].map(first_rand)]
        if not pre.empty:
            per_unit["pre-period outcome"] = pre.groupby("product")[outcome].mean()
    if rand.empty or per_unit.shape[1] == 0:
        return pd.DataFrame(columns=["covariate", "mean_treated", "mean_control", "smd"])
    share = rand.groupby("product")["treated"].mean().reindex(per_unit.index).fillna(0.0)
    rows = []
    for c in per_unit.columns:
        x = per_unit[c].astype(float)
        ok = x.notna()
        w1, w0, xv = share[ok].to_numpy(), 1 - share[ok].to_numpy(), x[ok].to_numpy()
        if w1.sum() == 0 or w0.sum() == 0:
            continue
        m1, m0 = float((w1 * xv).sum() / w1.sum()), float((w0 * xv).sum() / w0.sum())
        sd = float(xv.std(ddof=1)) if len(xv) > 1 else math.nan
        rows.append(
            {
                "covariate": c,
                "mean_treated": m1,
                "mean_control": m0,
                "smd": (m1 - m0) / sd if sd and sd > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- running estimates
@dataclass
class _ReplaySource:
    """A PanelSource that shows the worker the first ``k`` periods of a finished panel."""

    df: pd.DataFrame
    info: Any
    k: int = 0

    async def experiments(self) -> list[Any]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return self.df[self.df["period"] < self.k]


@dataclass
class _AdaptiveReplaySource(_ReplaySource):
    """A replay source of an adaptive ladder: also the recorded probabilities
    (``core.ports.AllocationSource``) of the periods it shows, read off the panel's
    ``probability_<arm>`` columns."""

    recorded: Mapping[int, tuple[float, ...]] = field(default_factory=dict)

    async def allocations(self, exp_id: str) -> dict[int, tuple[float, ...]]:
        return {t: p for t, p in self.recorded.items() if t < self.k}


@dataclass
class _ListSink:
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def publish(
        self,
        experiment: str,
        result: PublishedEstimate,
        as_of: datetime,
        cs: tuple[float, float] | None,
    ) -> None:
        row = published_fields(result, cs)  # what the estimates topic would carry
        self.rows.append(row | {"experiment": experiment, "as_of": as_of})

    async def publish_verdict(
        self, experiment: str, verdict: Mapping[str, Any], as_of: datetime
    ) -> None:
        self.rows.append(
            dict(verdict) | {"kind": "verdict", "experiment": experiment, "as_of": as_of}
        )

    async def publish_demand(
        self, experiment: str, demand: Mapping[str, Any], as_of: datetime
    ) -> None:
        # as the Kafka sink publishes it: the result's fields, method named as estimator
        fields = {k: v for k, v in demand.items() if k != "method"}
        self.rows.append(
            fields
            | {"kind": "demand", "estimator": "demand", "experiment": experiment, "as_of": as_of}
        )

    async def publish_adaptive(
        self, experiment: str, look: Mapping[str, Any], as_of: datetime
    ) -> None:
        # as the Kafka sink publishes it: the look's fields as its own message (kind adaptive)
        self.rows.append(dict(look) | {"kind": "adaptive", "experiment": experiment,
                                       "as_of": as_of})  # fmt: skip


@dataclass
class _StepClock:
    t: datetime

    def now(self) -> datetime:
        return self.t

    async def sync(self) -> None:
        return None


def replay_estimates(
    df: pd.DataFrame,
    *,
    experiment: str,
    design: str,
    estimators: Sequence[EstimatorPlan | str],
    start: datetime | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Running estimates of a finished panel, computed the way the analysis worker does.

    The real :class:`analysis.worker.AnalysisWorker` runs once after each period, on the
    periods completed so far, with ``estimators`` (the design's own, which the caller gets from
    the design) and its confidence sequence tuned at the first look to the planned horizon.
    ``params``: the experiment's spec as the worker is told it (its JSON form: decision
    metric, guardrails, MDE, unit costs, period); with them the worker also decides a verdict
    at each look, as it does live. Returns the messages it would have published, verdicts
    (``kind: verdict``) included.

    A panel of more than two arms (the spec's ``arms``, else the panel's ``arm`` column) is
    replayed as the worker runs it live: each arm against the control, and for a price ladder
    the demand curve at each look (``kind: demand``). An adaptive ladder (``params`` with an
    ``adaptive:`` block) is replayed with the probabilities its panel recorded (its
    ``probability_<arm>`` columns; an AnalysisError without them), as the worker reads them
    live: its ``aipw_adaptive`` estimates and its looks (``kind: adaptive``).
    """
    from analysis.worker import AnalysisWorker

    d = normalise_panel(df)
    periods = sorted(d["period"].unique())
    remap = {p: i for i, p in enumerate(periods)}
    d = d.assign(period=d["period"].map(remap))
    plans = tuple(EstimatorPlan(e) if isinstance(e, str) else e for e in estimators)
    named = len((params or {}).get("arms") or ())
    # the sequences' horizon is the spec's planned periods, as live (a partial panel, an
    # export of a running experiment, would otherwise get a shorter one than the worker's);
    # without a spec, the panel's periods
    horizon = max(len(periods), int((params or {}).get("n_periods") or 0))
    info = ExperimentInfo(
        experiment, design, status.RUNNING, {**(params or {}), "n_periods": horizon},
        estimators=plans, planned_periods=horizon,
        arms=named or (int(d["arm"].nunique()) if "arm" in d.columns else 2),
    )  # fmt: skip
    source = _ReplaySource(d, info)
    if is_adaptive(info.params):  # its weights: the probabilities the panel recorded
        names = [str(a["name"]) for a in info.params.get("arms") or ()]
        source = _AdaptiveReplaySource(d, info, recorded=recorded_probabilities(d, "period", names))
    sink = _ListSink()
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC)
    clock = _StepClock(t0)
    verdicts = sink if params is not None else None  # no spec: no decision metric to decide on
    worker = AnalysisWorker(
        source=source, sink=sink, clock=clock, seed=seed, verdicts=verdicts, demand=sink,
        adaptive=sink,
    )  # fmt: skip
    for k in range(2, len(periods) + 1):
        source.k = k
        clock.t = t0 + timedelta(days=k)
        asyncio.run(worker.run_once())
    return pd.DataFrame(sink.rows)


def final_estimates(df: pd.DataFrame, estimators: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """One fit of each estimator on the whole panel (when no running estimates exist)."""
    panel = to_panel(df)
    rows = []
    for name in estimators:
        try:
            res = registry.make(name, seed=seed).fit(panel).result
        except (AnalysisError, ValueError):
            continue
        rows.append(res.to_dict() | {"estimator": name})
    return pd.DataFrame(rows)


def to_panel(df: pd.DataFrame, outcome: str = "units") -> Panel:
    d = normalise_panel(df, outcome)
    has_p = d["probability"].notna().all()
    return Panel.from_long(
        d,
        unit="product",
        time="period",
        outcome=outcome,
        treated="treated",
        blackout="blackout",
        probability="probability" if has_p else None,
    )
