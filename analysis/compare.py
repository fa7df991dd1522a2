"""Design comparison: many simulated experiments of each design on the same market.

For each run ``r`` the market keeps its products, parameters and substitutes graph (``seed``)
and draws a fresh demand path (``demand_seed``), and every design draws a fresh assignment
(spec seed); all designs of run ``r`` see the same demand path (common random numbers, so the
differences between designs are not Monte-Carlo noise of different paths). Assignments come
from the real designs in :mod:`controller.designs` (pure functions; no store), outcomes from
:class:`analysis.simulation.market.Market`, estimates from the estimator registry.

Estimand of a run: the mean of the market's ``true_effect`` (the global effect of switching
the price policy, see docs/simulator.md) over all products and the days the design analyses
(days with a randomised, non-blackout cell). Reported per design and estimator:

- ``bias``: mean of estimate - truth (with its Monte-Carlo SE ``bias_mcse``);
- ``mean_se`` (mean reported SE) and ``emp_sd`` (SD of estimate - truth across runs);
- ``rmse``; ``coverage`` of the 95% interval; ``power``: share of runs rejecting a zero effect
  at 5% (the type-I error in an A/A market whose effect is zero);
- ``se_reduction``: 1 - emp_sd / emp_sd of the time-bound design's primary estimator (and the
  same with mean reported SEs), the quantity behind the origin article's "random days cut the
  standard error by 60%" (Cooprider & Nassiri, Business Economics 2023).

Estimator names may carry a variance method after a colon (``did:jackknife``) and ``@class``:
the estimator is then fitted to the class x day panel of mean units per product (each class is
one unit), which is the analysis that matches a cluster-randomised design (inference clustered
by class).

The time-bound baseline is ``did:jackknife``: DID's default variance picks the placebo method
whenever there are more control than treated units, and a stratified half-and-half design often
has one or two more controls, which leaves the placebo with a pseudo-control group of one or two
products and an SE several times too large (measured in docs/validation.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from analysis.clustering import cluster_graph
from analysis.estimators import registry
from analysis.panel import Panel
from analysis.simulation.config import MarketConfig
from analysis.simulation.market import Market
from controller import designs
from controller.periods import n_periods
from controller.spec import (
    Arm,
    ClusterMode,
    ClusterSettings,
    CrossoverSettings,
    ExperimentSpec,
    TimeBoundSettings,
)

DESIGNS: tuple[str, ...] = ("time-bound", "random-days", "crossover", "cluster")

#: Estimators fitted for each design by default: the design's own first, then common ones.
DEFAULT_ESTIMATORS: dict[str, tuple[str, ...]] = {
    "time-bound": ("did:jackknife", "did", "sdid", "dm"),
    "random-days": ("dm", "ht", "did"),
    "crossover": ("crossover", "dm", "did"),
    "cluster": ("dm@class", "did@class", "dm"),
}
#: The estimator appropriate to each design (used for the SE reduction).
PRIMARY: dict[str, str] = {
    "time-bound": "did:jackknife",
    "random-days": "dm",
    "crossover": "crossover",
    "cluster": "dm@class",
}
#: Product characteristics passed to estimators that match on them.
COVARIATES: tuple[str, ...] = ("width", "battery", "rating", "weight")
NEEDS_COVARIATES: frozenset[str] = frozenset({"hpte"})
#: A market with no treatment effect at all (A/A): zero price change, no extra lift.
AA_OVERRIDES: dict[str, Any] = {"price_change": 0.0, "effect_modifiers": {}}


@dataclass(frozen=True)
class CompareConfig:
    """What to compare. ``estimators`` maps a design to its estimator names (default above)."""

    market: MarketConfig = field(default_factory=MarketConfig)
    designs: tuple[str, ...] = DESIGNS
    runs: int = 100
    seed: int = 0
    days: int = 28
    allocation: float = 0.5
    estimators: Mapping[str, tuple[str, ...]] | None = None
    cluster_max_size: int = 12
    alpha: float = 0.05
    jobs: int = 1

    def estimators_for(self, design: str) -> tuple[str, ...]:
        table = self.estimators if self.estimators is not None else DEFAULT_ESTIMATORS
        return tuple(table.get(design, DEFAULT_ESTIMATORS.get(design, ("dm",))))


# --------------------------------------------------------------------------- designs
def market_classes(market: Market, max_size: int = 12) -> dict[str, tuple[str, ...]]:
    """Product classes for the cluster design: Louvain communities of the substitutes graph,
    split to at most ``max_size`` products (analysis.clustering)."""
    clustering = cluster_graph(market.substitutes, max_size=max_size, seed=market.seed)
    return {f"c{cid:03d}": tuple(members) for cid, members in clustering.clusters.items()}


def categories(market: Market) -> dict[str, tuple[str, ...]]:
    groups = market.products.groupby("category", sort=True)["product"]
    return {str(c): tuple(p) for c, p in groups}


def make_spec(
    design: str,
    market: Market,
    *,
    days: int = 28,
    seed: int = 0,
    allocation: float = 0.5,
    classes: Mapping[str, tuple[str, ...]] | None = None,
) -> ExperimentSpec:
    """The experiment spec the comparison runs for ``design`` on ``market``.

    time-bound: half of each category treated from day ``days // 2`` (the first half is the
    pre-period). crossover: groups swap at ``days // 2``; the first third of each phase is a
    blackout (the article's 3-week phases with a 1-week blackout). cluster: substitute classes
    redrawn every day. random-days: every product-day redrawn. No washout: the simulator's
    outcomes are whole days.
    """
    zone = ZoneInfo(market.cfg.timezone)
    start = datetime.combine(market.cfg.start_date, time(0)).replace(tzinfo=zone)
    common: dict[str, Any] = {
        "id": f"compare-{design}",
        "design": design,
        "treatment_policy": "treatment",
        "control_policy": "control",
        "start": start,
        "end": start + timedelta(days=days),
        "timezone": market.cfg.timezone,
        "allocation": allocation,
        "seed": seed,
    }
    cats = categories(market)
    if design == "time-bound":
        return ExperimentSpec(
            **common, clusters=cats, time_bound=TimeBoundSettings(start_period=days // 2)
        )
    if design == "crossover":
        phase = days // 2
        return ExperimentSpec(
            **common,
            clusters=cats,
            crossover=CrossoverSettings(phase_periods=phase, blackout_periods=phase // 3),
        )
    if design == "cluster":
        return ExperimentSpec(
            **common,
            clusters=dict(classes or market_classes(market)),
            cluster=ClusterSettings(mode=ClusterMode.SWITCHBACK),
        )
    if design == "random-days":
        return ExperimentSpec(**common, products=tuple(market.product_ids))
    raise ValueError(f"unknown design {design!r}; choose from {', '.join(DESIGNS)}")


def design_matrices(
    spec: ExperimentSpec, units: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, probability, blackout), each len(units) x T, of ``spec`` from controller.designs.

    Fixed-group designs (time-bound, crossover, fixed clusters) need one draw per unit, and
    cluster switchbacks one per class and period; other designs go cell by cell through
    ``designs.assign``. A test checks every path against ``designs.schedule``.
    """
    T = n_periods(spec)
    n = len(units)
    W = np.zeros((n, T), dtype=bool)
    P = np.zeros((n, T))
    B = np.zeros((n, T), dtype=bool)
    d = spec.design
    if d == "time-bound":
        assert spec.time_bound is not None
        s0 = spec.time_bound.start_period
        for i, u in enumerate(units):
            a, p = designs.arm(spec, u, s0)
            W[i, s0:] = a == Arm.TREATMENT
            P[i, s0:] = p
    elif d == "crossover":
        assert spec.crossover is not None
        phase, black = spec.crossover.phase_periods, spec.crossover.blackout_periods
        k = np.arange(T)
        even = (k // phase) % 2 == 0
        for i, u in enumerate(units):
            in_a = designs.arm(spec, u, 0)[0] == Arm.TREATMENT
            W[i] = even == in_a
        P[:] = np.where(even, spec.allocation, 1.0 - spec.allocation)
        B[:] = k % phase < black
    elif d == "cluster":
        rep = {c: members[0] for c, members in spec.clusters.items()}
        cls = [spec.class_of(u) for u in units]
        per_class = {
            c: [designs.arm(spec, r, t)[0] == Arm.TREATMENT for t in range(T)]
            for c, r in rep.items()
        }
        for i, c in enumerate(cls):
            W[i] = per_class[c]  # type: ignore[index]
        P[:] = spec.allocation
    else:
        for i, u in enumerate(units):
            for t in range(T):
                cell = designs.assign(spec, u, t)
                W[i, t] = cell.arm == Arm.TREATMENT
                P[i, t] = cell.probability
                B[i, t] = any(
                    b.start <= cell.period_start and b.end >= cell.period_end
                    for b in cell.blackouts
                )
    return W, P, B


# --------------------------------------------------------------------------- estimation
def class_panel(
    df: pd.DataFrame, class_of: Mapping[str, str], outcome: str = "units"
) -> pd.DataFrame:
    """Class x day panel: mean outcome per product of each class (arms are shared in a class)."""
    g = df.assign(cls=df["product"].map(class_of)).groupby(["cls", "day"], sort=True)
    out = g.agg(
        y=(outcome, "mean"),
        treated=("treated", "max"),
        blackout=("blackout", "max"),
        probability=("probability", "first"),
    ).reset_index()
    return out.rename(columns={"cls": "product", "y": outcome})


def fit_estimator(
    name: str,
    df: pd.DataFrame,
    *,
    class_of: Mapping[str, str] | None = None,
    seed: int = 0,
    outcome: str = "units",
) -> dict[str, float]:
    """Fit registry estimator ``name`` (``base@class`` on the class panel) to a long panel with
    columns product, day, ``outcome``, treated, blackout, probability."""
    spec_part, _, level = name.partition("@")
    base, _, se = spec_part.partition(":")
    data = df
    if level == "class":
        if class_of is None:
            raise ValueError(f"{name} needs product classes")
        data = class_panel(df, class_of, outcome)
    elif level:
        raise ValueError(f"unknown level {level!r} in {name!r}; only '@class' is supported")
    covs = [c for c in COVARIATES if c in data.columns] if base in NEEDS_COVARIATES else []
    panel = Panel.from_long(
        data,
        unit="product",
        time="day",
        outcome=outcome,
        treated="treated",
        blackout="blackout",
        probability="probability",
        covariates=covs,
    )
    params: dict[str, Any] = {"seed": seed}
    if se:
        params["se"] = se
    res = registry.make(base, **params).fit(panel).result
    lo, hi = res.conf_int(0.05)
    return {
        "effect": res.effect,
        "se": res.se,
        "ci_low": lo,
        "ci_high": hi,
        "pvalue": res.pvalue(),
        "se_method": res.se_method,  # type: ignore[dict-item]
    }


def _run_seed(seed: int, run: int) -> int:
    return (seed * 1_000_003 + 7919 * (run + 1)) % (2**31 - 1)


def simulate_run(
    cfg: CompareConfig, run: int, classes: Mapping[str, tuple[str, ...]] | None = None
) -> list[dict[str, Any]]:
    """One run: every design on one fresh demand path; one row per design and estimator."""
    market = Market(cfg.market, seed=cfg.seed, demand_seed=_run_seed(cfg.seed, run))
    units = list(market.product_ids)
    if classes is None and "cluster" in cfg.designs:
        classes = market_classes(market, cfg.cluster_max_size)
    class_of = {p: c for c, members in (classes or {}).items() for p in members}
    rows: list[dict[str, Any]] = []
    for design in cfg.designs:
        spec = make_spec(
            design,
            market,
            days=cfg.days,
            seed=_run_seed(cfg.seed + 1, run),
            allocation=cfg.allocation,
            classes=classes,
        )
        W, P, B = design_matrices(spec, units)
        df = market.simulate_panel(W)
        df["probability"] = P.ravel()
        df["blackout"] = B.ravel()
        analysed = ((P > 0) & ~B).any(axis=0)
        te = df["true_effect"].to_numpy().reshape(W.shape)
        de = df["direct_effect"].to_numpy().reshape(W.shape)
        truth = float(te[:, analysed].mean())
        truth_direct = float(de[:, analysed].mean())
        for est in cfg.estimators_for(design):
            row: dict[str, Any] = {
                "design": design,
                "estimator": est,
                "run": run,
                "truth": truth,
                "truth_direct": truth_direct,
                "treated_share": float(W[:, analysed].mean()),
            }
            try:
                row |= fit_estimator(est, df, class_of=class_of, seed=run)
                row["error"] = ""
            except Exception as exc:  # noqa: BLE001 - a failing estimator is reported, not fatal
                row |= {"effect": math.nan, "se": math.nan, "ci_low": math.nan}
                row |= {"ci_high": math.nan, "pvalue": math.nan, "se_method": ""}
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
    return rows


def _run_chunk(
    args: tuple[CompareConfig, list[int], dict[str, tuple[str, ...]] | None],
) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    cfg, runs, classes = args
    with threadpool_limits(1):
        return [row for r in runs for row in simulate_run(cfg, r, classes)]


def run_comparison(cfg: CompareConfig) -> pd.DataFrame:
    """Every run of every design and estimator, one row each (see :func:`simulate_run`)."""
    bad = [d for d in cfg.designs if d not in DESIGNS]
    if bad:
        raise ValueError(f"unknown design(s) {bad}; choose from {', '.join(DESIGNS)}")
    if cfg.runs < 2:
        raise ValueError("runs must be at least 2 (an SD needs two runs)")
    classes = None
    if "cluster" in cfg.designs:  # products and graph do not depend on the demand path
        classes = market_classes(Market(cfg.market, seed=cfg.seed), cfg.cluster_max_size)
    runs = list(range(cfg.runs))
    if cfg.jobs <= 1:
        rows = _run_chunk((cfg, runs, classes))
    else:
        chunks = [runs[j :: cfg.jobs] for j in range(cfg.jobs)]
        with ProcessPoolExecutor(cfg.jobs) as pool:
            rows = [
                r
                for part in pool.map(_run_chunk, [(cfg, c, classes) for c in chunks])
                for r in part
            ]
    return (
        pd.DataFrame(rows)
        .sort_values(["design", "estimator", "run"], kind="stable")
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------- summary
def summarise(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Bias, SEs, RMSE, coverage and power per design and estimator, plus SE reductions."""
    out = []
    for (design, est), g in runs.groupby(["design", "estimator"], sort=False):
        ok = g[np.isfinite(g["effect"])]
        err = ok["effect"] - ok["truth"]
        n = len(ok)
        finite_ci = ok[np.isfinite(ok["ci_low"]) & np.isfinite(ok["ci_high"])]
        covered = (finite_ci["ci_low"] <= finite_ci["truth"]) & (
            finite_ci["truth"] <= finite_ci["ci_high"]
        )
        errors = g.loc[g["error"] != "", "error"]
        out.append(
            {
                "design": design,
                "estimator": est,
                "runs": len(g),
                "failed": len(g) - n,
                "truth": float(ok["truth"].mean()) if n else math.nan,
                "bias": float(err.mean()) if n else math.nan,
                "bias_mcse": float(err.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                "bias_vs_direct": float((ok["effect"] - ok["truth_direct"]).mean())
                if n
                else math.nan,
                "mean_se": float(ok["se"].mean()) if n else math.nan,
                "emp_sd": float(err.std(ddof=1)) if n > 1 else math.nan,
                "rmse": float(np.sqrt((err**2).mean())) if n else math.nan,
                "coverage": float(covered.mean()) if len(finite_ci) else math.nan,
                "power": float((ok["pvalue"] < alpha).mean()) if n else math.nan,
                "first_error": str(errors.iloc[0]) if len(errors) else "",
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["se_ratio"] = table["mean_se"] / table["emp_sd"]
    base = table[(table["design"] == "time-bound") & (table["estimator"] == PRIMARY["time-bound"])]
    if len(base):
        b_sd, b_se = float(base["emp_sd"].iloc[0]), float(base["mean_se"].iloc[0])
        table["se_reduction"] = 1.0 - table["emp_sd"] / b_sd
        table["reported_se_reduction"] = 1.0 - table["mean_se"] / b_se
    else:
        table["se_reduction"] = math.nan
        table["reported_se_reduction"] = math.nan
    table["primary"] = [
        PRIMARY.get(d) == e for d, e in zip(table["design"], table["estimator"], strict=True)
    ]
    return table


def format_table(table: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (stdout)."""
    cols = [
        ("design", "{}", 12),
        ("estimator", "{}", 14),
        ("runs", "{:d}", 5),
        ("failed", "{:d}", 6),
        ("truth", "{:.3f}", 7),
        ("bias", "{:+.3f}", 7),
        ("mean_se", "{:.3f}", 7),
        ("emp_sd", "{:.3f}", 7),
        ("rmse", "{:.3f}", 7),
        ("coverage", "{:.3f}", 8),
        ("power", "{:.3f}", 6),
        ("se_reduction", "{:+.0%}", 12),
    ]
    lines = [" ".join(f"{c:>{w}}" for c, _, w in cols)]
    for _, r in table.iterrows():
        cells = []
        for c, f, w in cols:
            v = r[c]
            if isinstance(v, float) and not math.isfinite(v):
                s = "-"
            else:
                s = f.format(int(v) if f == "{:d}" else v)
            cells.append(f"{s:>{w}}")
        lines.append(" ".join(cells) + ("  *" if r.get("primary") else ""))
    lines.append(
        "* the design's own estimator; se_reduction = 1 - emp_sd / emp_sd(time-bound, did:jackknife)"
    )
    failed = table[table["failed"] > 0]
    for _, r in failed.iterrows():
        lines.append(
            f"! {r['design']}/{r['estimator']}: {r['failed']} failed, e.g. {r['first_error']}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots
def plot_comparison(
    runs: pd.DataFrame, table: pd.DataFrame, out_dir: Path, prefix: str = ""
) -> list[Path]:
    """Error distributions, SEs and coverage/power per design and estimator (PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    labels = [f"{d}\n{e}" for d, e in zip(table["design"], table["estimator"], strict=True)]
    x = np.arange(len(table))

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 4.2))
    data = []
    for d, e in zip(table["design"], table["estimator"], strict=True):
        g = runs[(runs["design"] == d) & (runs["estimator"] == e)]
        err = (g["effect"] - g["truth"]).to_numpy()
        data.append(err[np.isfinite(err)])
    ax.boxplot(data, positions=x, widths=0.6, showfliers=False)
    for i, e in enumerate(data):
        jitter = np.random.default_rng(i).uniform(-0.2, 0.2, len(e))
        ax.plot(x[i] + jitter, e, ".", alpha=0.25, ms=3, color="tab:blue")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("estimate - true effect (units/product-day)")
    ax.set_title("Estimation error by design and estimator")
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}errors.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 4.0))
    ax.bar(x - 0.2, table["emp_sd"], 0.4, label="empirical SD of the estimate")
    ax.bar(x + 0.2, table["mean_se"], 0.4, label="mean reported SE")
    for i, r in enumerate(table.itertuples()):
        if math.isfinite(r.se_reduction) and r.design != "time-bound":
            ax.annotate(
                f"{r.se_reduction:+.0%}", (i - 0.2, r.emp_sd), ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("units/product-day")
    ax.set_title("Standard errors (labels: SD change vs time-bound DID)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}standard_errors.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 3.8))
    ax.bar(x - 0.2, table["coverage"], 0.4, label="95% interval coverage")
    ax.bar(x + 0.2, table["power"], 0.4, label="rejection rate at 5%")
    ax.axhline(0.95, color="tab:blue", ls="--", lw=0.8)
    ax.axhline(0.05, color="tab:orange", ls="--", lw=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("Coverage and rejection rate (power, or type-I error in an A/A market)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}coverage_power.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_outputs(
    runs: pd.DataFrame, table: pd.DataFrame, out_dir: Path, prefix: str = ""
) -> list[Path]:
    """runs.csv, summary.csv and the PNG plots under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{prefix}runs.csv", out_dir / f"{prefix}summary.csv"]
    runs.to_csv(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    return paths + plot_comparison(runs, table, out_dir, prefix)


def parse_estimators(
    items: Iterable[str], designs_: Sequence[str]
) -> dict[str, tuple[str, ...]] | None:
    """``--estimators`` values: ``design=a,b`` for one design, or ``a,b`` for every design."""
    table: dict[str, list[str]] = {}
    for item in items:
        design, sep, names = item.partition("=")
        if not sep:
            names, targets = design, list(designs_)
        else:
            targets = [design]
        for t in targets:
            table.setdefault(t, []).extend(n for n in names.split(",") if n)
    return {k: tuple(v) for k, v in table.items()} or None
