"""Seeded simulation study of the advanced estimators (MC-NNM, TROP, HT switchback, crossover,
difference in means, staggered adoption) and of confidence sequences under peeking
(docs/analysis-advanced.md, "Simulation study").

    .venv/bin/python -m lab.studies advanced [--runs 500] [--set only=ht,dm] [--set cs_runs=2000]
    .venv/bin/python -m lab.studies advanced-mc [--runs 500] [--jobs J] [--set only=mc-tp]
        [--set trop_boot=50]

Two studies: ``advanced`` (HT switchback, crossover, difference in means, staggered adoption,
confidence sequences; about a minute), which renders the ``advanced-study`` section of
docs/analysis-advanced.md from docs/figures/advanced.json (template ``advanced.md.j2``), and
``advanced-mc`` (MC-NNM and TROP on the factor block, which refit per bootstrap replicate:
hours), saved in docs/figures/advanced-mc.json. A case is an estimator on its data-generating
process (below), a run a seed (0..runs-1): bias (with its Monte-Carlo SE), RMSE and the
coverage of the estimator's own 95% interval per case. ``only`` runs the groups it names,
comma-separated (all by default: mc, mc-convex, mc-nofactor, mc-tp, trop; ht, crossover, dm,
staggered, cs). The confidence sequence case is one run of ``cs_runs`` simulated experiments
of 30 daily looks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.confseq import ConfidenceSequence
from analysis.estimators.crossover import CrossoverEstimator, DifferenceInMeansEstimator
from analysis.estimators.mcnnm import MCNNMEstimator
from analysis.estimators.staggered import StaggeredDIDEstimator
from analysis.estimators.switchback import SwitchbackHTEstimator
from analysis.estimators.trop import TROPEstimator
from analysis.panel import Panel
from analysis.pricing_dgp import factor_block
from analysis.results import EstimateResult
from controller.designs import randomisation_points as optimal_switchback_points
from lab.studies.harness import Case, Page, Results, Row, Run, Study, error_summary


def no_factor_block(seed: int, N: int = 30, T: int = 20, n_tr: int = 8, t0: int = 14) -> Panel:
    """Two-way effects + noise only (the low-rank term is zero), block adoption, tau = 1: the
    rank selection must not invent factors that cost precision or coverage."""
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(N, 1)) + np.linspace(0, 2, T)[None] + 0.5 * rng.normal(size=(N, T))
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return Panel(Y=Y + W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))


DELTA = np.array([1.0, 0.6, 0.4])  # carryover order m = 2, lag-2 effect 2.0


def switchback_panel(seed: int, N: int = 20, T: int = 48, m: int = 2) -> Panel:
    """Optimal design for m = 2; outcomes with unit levels, a daily cycle and AR(1) noise."""
    rng = np.random.default_rng(seed)
    pts = optimal_switchback_points(T, m)
    is_pt = np.zeros(T, bool)
    is_pt[pts] = True
    block = np.cumsum(is_pt) - 1
    W = (rng.random((N, block.max() + 1)) < 0.5)[:, block]
    noise = np.zeros((N, T))
    eps = rng.normal(size=(N, T)) * 0.5
    for t in range(T):
        noise[:, t] = (0.5 * noise[:, t - 1] if t else 0) + eps[:, t]
    Y = 5 + rng.normal(size=(N, 1)) + np.sin(np.arange(T) / 3)[None] + noise
    for lag, d in enumerate(DELTA):
        Y[:, lag:] += d * W[:, : T - lag]
    return Panel(
        Y=Y,
        W=W,
        units=np.arange(N),
        times=np.arange(T),
        blackout=np.zeros_like(W),
        probability=np.full((N, T), 0.5),
    )


def crossover_panel(seed: int, blackout: bool = True) -> Panel:
    """AB/BA crossover, 20 products, 2 phases of 21 days, 7-day washout, ramping carryover."""
    N, T, PH, WASH = 20, 42, 21, 7
    rng = np.random.default_rng(seed)
    A = rng.permutation(N) < N // 2
    W = np.zeros((N, T), bool)
    W[A, :PH] = True
    W[~A, PH:] = True
    since = np.concatenate([np.arange(PH), np.arange(T - PH)])
    ramp = np.minimum(since / 5, 1.0)[None]
    decay = np.concatenate([np.zeros(PH), np.maximum(1 - np.arange(T - PH) / 5, 0)])[None]
    Y = (
        2 * rng.normal(size=(N, 1))
        + np.sin(np.arange(T))[None]
        + 0.5 * rng.normal(size=(N, T))
        + W * ramp
        + (~W) * decay * A[:, None]
    )
    B = np.zeros((N, T), bool)
    if blackout:
        B[:, :WASH] = True
        B[:, PH : PH + WASH] = True
    return Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=B)


def random_days(seed: int, N: int = 20, T: int = 42) -> Panel:
    rng = np.random.default_rng(seed)
    W = rng.random((N, T)) < 0.5
    Y = rng.normal(size=(N, 1)) + np.sin(np.arange(T))[None] + rng.normal(size=(N, T)) + 0.5 * W
    return Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))


COHORTS = (5, 10, 15, 20)


def staggered(seed: int, N: int = 60, T: int = 20) -> tuple[Panel, np.ndarray]:
    """Cohorts 5/10/15/never; effect 1 + 0.3 * time since start, doubled for cohort 5."""
    rng = np.random.default_rng(seed)
    start = rng.choice(COHORTS, size=N)
    e = np.arange(T)[None] - start[:, None]
    W = e >= 0
    tau = np.where(W, (1 + 0.3 * e) * (1 + (start[:, None] == 5)), 0.0)
    Y = rng.normal(size=(N, 1)) + np.linspace(0, 2, T)[None] + rng.normal(size=(N, T)) + tau
    p = Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))
    return p, tau


#: the staggered design's population ATT: the mean effect over the treated cohorts' cells
POPULATION_ATT = float(
    np.mean([(1 + 0.3 * (t - g)) * (1 + (g == 5)) for g in COHORTS[:-1] for t in range(g, 20)])
)

Fit = Callable[[Panel, int, Mapping[str, Any]], EstimateResult]


def ht_fit(p: int) -> Fit:
    """HT with carryover order ``p`` on the optimal design of 48 periods for m = 2."""
    pts = optimal_switchback_points(48, 2)
    return lambda panel, s, o: SwitchbackHTEstimator(p, randomization_points=pts).fit(panel).result_


def dm_fit(cluster: str) -> Fit:
    return lambda panel, s, o: DifferenceInMeansEstimator(cluster=cluster).fit(panel).result_  # type: ignore[arg-type]


#: case name -> (its label, the DGP of seed s with its truth, the estimator's fit)
PANEL_CASES: dict[str, tuple[str, Callable[[int], tuple[Panel, float]], Fit]] = {
    "mc": (
        "mc, rank refit (default), bootstrap 100",
        lambda s: (factor_block(s), 1.0),
        lambda p, s, o: MCNNMEstimator(seed=s).fit(p).result_,
    ),
    "mc-convex": (
        "mc, convex (debias=False), bootstrap 100",
        lambda s: (factor_block(s), 1.0),
        lambda p, s, o: MCNNMEstimator(seed=s, debias=False).fit(p).result_,
    ),
    "mc-nofactor": (
        "mc, no factors (rank-0 DGP)",
        lambda s: (no_factor_block(s), 1.0),
        lambda p, s, o: MCNNMEstimator(seed=s).fit(p).result_,
    ),
    "mc-tp": (
        "mc, rank refit, time placebo",
        lambda s: (factor_block(s), 1.0),
        lambda p, s, o: MCNNMEstimator(seed=s, se="time_placebo").fit(p).result_,
    ),
    "trop": (
        "trop (placebo tuning, bootstrap trop_boot; the trop study runs the defaults)",
        lambda s: (factor_block(s), 1.0),
        lambda p, s, o: TROPEstimator(seed=s, n_boot=o["trop_boot"]).fit(p).result_,
    ),
    "trop-twfe": (
        "trop as TWFE (0,0,inf)",
        lambda s: (factor_block(s), 1.0),
        lambda p, s, o: TROPEstimator(0.0, 0.0, float("inf"), se="none").fit(p).result_,
    ),
    **{
        f"ht-p{p}": (
            f"ht p={p} (m=2, truth lag-2)",
            lambda s: (switchback_panel(s), float(DELTA.sum())),
            ht_fit(p),
        )
        for p in (2, 1, 0)
    },
    "crossover": (
        "crossover (washout 7)",
        lambda s: (crossover_panel(s), 1.0),
        lambda p, s, o: CrossoverEstimator().fit(p).result_,
    ),
    "crossover-no-washout": (
        "crossover (no washout)",
        lambda s: (crossover_panel(s, False), 1.0),
        lambda p, s, o: CrossoverEstimator().fit(p).result_,
    ),
    **{
        f"dm-{cl}": (f"dm random days ({cl})", lambda s: (random_days(s), 0.5), dm_fit(cl))
        for cl in ("unit", "cell")
    },
}


def staggered_run(s: int) -> Row:
    p, tau = staggered(s)
    r = StaggeredDIDEstimator(seed=s, n_boot=200).fit(p).result_
    lo, hi = r.conf_int()
    return {
        "effect": r.effect,
        "sample_att": float(tau[p.W].mean()),
        "ci_low": lo,
        "ci_high": hi,
        "twfe": r.details["twfe_static"],
    }


def cs_run(sims: int, days: int = 30, per_day: int = 100) -> Row:
    """``sims`` experiments of ``days`` daily looks at a running mean of ``per_day`` t(5) draws
    a day: the share in which the fixed 95% interval, and the confidence sequence, excluded
    the truth at some look."""
    rng = np.random.default_rng(0)
    naive = anytime = 0
    cs = ConfidenceSequence(target_se=float(np.sqrt(5 / 3 / (days * per_day))), intersect=False)
    n = np.arange(1, days + 1) * per_day
    for start in range(0, sims, 500):
        x = rng.standard_t(5, size=(min(500, sims - start), days * per_day))
        c1, c2 = np.cumsum(x, axis=1)[:, n - 1], np.cumsum(x**2, axis=1)[:, n - 1]
        mean = c1 / n
        se = np.sqrt((c2 / n - mean**2) / n)
        naive += int(np.any(np.abs(mean) > 1.96 * se, axis=1).sum())
        anytime += int(np.any(np.abs(mean) > cs.radius(se), axis=1).sum())
    return {
        "sims": sims,
        "days": days,
        "per_day": per_day,
        "naive_ever_excluded": naive / sims,
        "cs_ever_excluded": anytime / sims,
        # of the last batch, as the former script printed it
        "width_ratio_last_look": float(cs.radius(se[:, -1]).mean() / (1.96 * se[:, -1].mean())),
    }


def group(name: str) -> str:
    """The group ``only`` names a case by: its name, but one for TROP's two cases, HT's three,
    the crossover's two and dm's two (as the former script's ``--only``)."""
    for g in ("trop", "ht", "crossover", "dm"):
        if name.startswith(g):
            return g
    return name


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row | list[Row]:
    name = case["case"]
    only = [p for p in str(settings["only"]).split(",") if p]
    if only and case["group"] not in only:
        return []
    t0 = time.perf_counter()
    if name == "staggered":
        row = staggered_run(run)
    elif name == "cs":
        row = cs_run(int(settings["cs_runs"]))
    else:
        _, make, fit = PANEL_CASES[name]
        panel, truth = make(run)
        r = fit(panel, run, settings)
        lo, hi = r.conf_int()
        row = {"effect": r.effect, "se": r.se, "truth": truth, "ci_low": lo, "ci_high": hi}
    return {**row, "seconds": time.perf_counter() - t0}


def context(results: Results) -> dict[str, Any]:
    """The template's variables: the table's rows by case, and the confidence sequences."""
    assert isinstance(results, dict)
    return {"rows": {r["case"]: r for r in results["table"]}, "cs": results["cs"]}


def _summary(
    name: str, label: str, g: pd.DataFrame, target: pd.Series, covered: bool = True
) -> Row:
    s = error_summary(g["effect"], np.zeros(len(g)), target, g["ci_low"], g["ci_high"])
    return {
        "case": name,
        "estimator": label,
        "sims": len(g),
        "bias": s["bias"],
        "bias_mcse": s["bias_mcse"],
        "rmse": s["rmse"],
        "coverage": s["coverage"] if covered else None,
        # the variance the SE claims against the estimate's own, over the runs
        "mean_variance": float(np.mean(np.square(g["se"]))) if covered else None,
        "emp_variance": float(g["effect"].var(ddof=0)),
        "seconds_per_sim": float(g["seconds"].mean()),
    }


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    table: list[Row] = []
    out: dict[str, Any] = {"table": table, "options": dict(run.options)}
    if rows.empty:
        return out
    for name, g in rows.groupby("case", sort=False):
        if name == "cs":
            out["cs"] = {k: int(g[k].iloc[0]) for k in ("sims", "days", "per_day")} | {
                k: float(g[k].iloc[0])
                for k in ("naive_ever_excluded", "cs_ever_excluded", "width_ratio_last_look")
            }
        elif name == "staggered":
            pop = pd.Series(POPULATION_ATT, index=g.index)
            sample = g["sample_att"]
            table.append(_summary("staggered", "staggered (CS, vs sample)", g, sample, False))
            table.append(_summary("staggered-population", "staggered (CS, vs popul.)", g, pop))
            twfe = g.assign(effect=g["twfe"])
            table.append(_summary("twfe", "pooled TWFE (vs sample)", twfe, sample, False))
        else:
            label = PANEL_CASES[str(name)][0]
            if name == "trop":
                label = label.replace("trop_boot", str(run.options["trop_boot"]))
            table.append(_summary(str(name), label, g, g["truth"]))
    return out


#: the slow cases: MC-NNM and TROP refit per bootstrap replicate (about 2 s a run for MC-NNM)
SLOW = ("mc", "mc-convex", "mc-nofactor", "mc-tp", "trop", "trop-twfe")

STUDY = Study(
    name="advanced",
    cases=(
        *({"case": n, "group": group(n)} for n in PANEL_CASES if n not in SLOW),
        {"case": "staggered", "group": "staggered"},
        {"case": "cs", "group": "cs", "runs": 1},
    ),
    run_one=run_one,
    summarise=summarise,
    results="advanced.json",
    runs=500,
    options={"only": "", "cs_runs": 2000},
    page=Page("docs/analysis-advanced.md", "advanced.md.j2", section="advanced-study"),
    context=context,
)
#: MC-NNM and TROP on the factor block: hours at 500 runs, so a study of their own
MC = Study(
    name="advanced-mc",
    cases=tuple({"case": n, "group": group(n)} for n in SLOW),
    run_one=run_one,
    summarise=summarise,
    results="advanced-mc.json",
    runs=500,
    options={"only": "", "trop_boot": 50},
)
