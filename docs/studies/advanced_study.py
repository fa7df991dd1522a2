"""Seeded simulation study of the advanced estimators (MC-NNM, TROP, HT switchback, crossover,
difference in means, staggered adoption) and of confidence sequences under peeking.

Prints bias, RMSE and 95% interval coverage per estimator. Usage:

    python docs/studies/advanced_study.py [--sims 500] [--only mc,trop,ht,crossover,dm,staggered,cs]

Each section's data-generating process is written out below; seeds are 0..sims-1.
Slow: MC-NNM and TROP refit per bootstrap replicate (see docs/analysis-advanced.md for the
figures we measured and the counts we could afford).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from analysis.confseq import ConfidenceSequence
from analysis.estimators.crossover import CrossoverEstimator, DifferenceInMeansEstimator
from analysis.estimators.mcnnm import MCNNMEstimator
from analysis.estimators.staggered import StaggeredDIDEstimator
from analysis.estimators.switchback import SwitchbackHTEstimator
from analysis.estimators.trop import TROPEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult
from controller.designs import randomisation_points as optimal_switchback_points


def factor_block(seed: int, N: int = 30, T: int = 20, n_tr: int = 8, t0: int = 14) -> Panel:
    """Rank-2 factor model + unit and time effects, block adoption, tau = 1.

    Treated units load more on the first factor (selection on loadings), so two-way fixed
    effects alone is biased; the factors are stationary.
    """
    rng = np.random.default_rng(seed)
    load = rng.normal(size=(N, 2))
    load[:n_tr, 0] += 1.0
    fac = rng.normal(size=(T, 2))
    Y = (
        load @ fac.T
        + rng.normal(size=(N, 1))
        + np.linspace(0, 2, T)[None]
        + 0.5 * rng.normal(size=(N, T))
    )
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return Panel(Y=Y + W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))


def summarise(
    name: str, est: list[float], truth: list[float], cover: list[bool], secs: float
) -> None:
    e, t = np.asarray(est), np.asarray(truth)
    err = e - t
    n = len(e)
    cov = np.mean(cover) if cover else float("nan")
    print(
        f"{name:<26} n={n:<4} bias={err.mean():+.4f} (MC se {err.std(ddof=1) / np.sqrt(n):.4f})"
        f"  RMSE={np.sqrt(np.mean(err**2)):.4f}  coverage95={cov:.3f}  sec/sim={secs / n:.2f}",
        flush=True,
    )


def run_panel(
    name: str,
    sims: int,
    make: Callable[[int], tuple[Panel, float]],
    fit: Callable[[Panel, int], EstimateResult],
) -> None:
    est, truth, cover = [], [], []
    t0 = time.perf_counter()
    for s in range(sims):
        p, tau = make(s)
        r = fit(p, s)
        lo, hi = r.conf_int()
        est.append(r.effect)
        truth.append(tau)
        cover.append(bool(lo <= tau <= hi))
        if PROGRESS and (s + 1) % PROGRESS == 0 and s + 1 < sims:
            summarise(f"  ...{name}", est, truth, cover, time.perf_counter() - t0)
    summarise(name, est, truth, cover, time.perf_counter() - t0)


def study_mc(sims: int) -> None:
    run_panel(
        "mc, rank refit (default), bootstrap 100",
        sims,
        lambda s: (factor_block(s), 1.0),
        lambda p, s: MCNNMEstimator(seed=s).fit(p).result_,
    )


def study_mc_convex(sims: int) -> None:
    run_panel(
        "mc, convex (debias=False), bootstrap 100",
        sims,
        lambda s: (factor_block(s), 1.0),
        lambda p, s: MCNNMEstimator(seed=s, debias=False).fit(p).result_,
    )


def study_mc_time_placebo(sims: int) -> None:
    run_panel(
        "mc, rank refit, time placebo",
        sims,
        lambda s: (factor_block(s), 1.0),
        lambda p, s: MCNNMEstimator(seed=s, se="time_placebo").fit(p).result_,
    )


def study_mc_nofactor(sims: int) -> None:
    run_panel(
        "mc, no factors (rank-0 DGP)",
        sims,
        lambda s: (no_factor_block(s), 1.0),
        lambda p, s: MCNNMEstimator(seed=s).fit(p).result_,
    )


def no_factor_block(seed: int, N: int = 30, T: int = 20, n_tr: int = 8, t0: int = 14) -> Panel:
    """Two-way effects + noise only (the low-rank term is zero), block adoption, tau = 1: the
    rank selection must not invent factors that cost precision or coverage."""
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(N, 1)) + np.linspace(0, 2, T)[None] + 0.5 * rng.normal(size=(N, T))
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return Panel(Y=Y + W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))


TROP_BOOT = 50  # --trop-boot
PROGRESS = 0  # --progress: interim summary every PROGRESS simulations (0 = only at the end)


def study_trop(sims: int) -> None:
    run_panel(
        f"trop (placebo tuning, bootstrap {TROP_BOOT}; trop_study.py runs the defaults)",
        sims,
        lambda s: (factor_block(s), 1.0),
        lambda p, s: TROPEstimator(seed=s, n_boot=TROP_BOOT).fit(p).result_,
    )
    run_panel(
        "trop as TWFE (0,0,inf)",
        sims,
        lambda s: (factor_block(s), 1.0),
        lambda p, s: TROPEstimator(0.0, 0.0, float("inf"), se="none").fit(p).result_,
    )


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


def study_ht(sims: int) -> None:
    pts = optimal_switchback_points(48, 2)
    for p in (2, 1, 0):
        run_panel(
            f"ht p={p} (m=2, truth lag-2)",
            sims,
            lambda s: (switchback_panel(s), DELTA.sum()),
            lambda pn, s, p=p: SwitchbackHTEstimator(p, randomization_points=pts).fit(pn).result_,
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


def study_crossover(sims: int) -> None:
    run_panel(
        "crossover (washout 7)",
        sims,
        lambda s: (crossover_panel(s), 1.0),
        lambda p, s: CrossoverEstimator().fit(p).result_,
    )
    run_panel(
        "crossover (no washout)",
        sims,
        lambda s: (crossover_panel(s, False), 1.0),
        lambda p, s: CrossoverEstimator().fit(p).result_,
    )


def random_days(seed: int, N: int = 20, T: int = 42) -> Panel:
    rng = np.random.default_rng(seed)
    W = rng.random((N, T)) < 0.5
    Y = rng.normal(size=(N, 1)) + np.sin(np.arange(T))[None] + rng.normal(size=(N, T)) + 0.5 * W
    return Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))


def study_dm(sims: int) -> None:
    for cl in ("unit", "cell"):
        run_panel(
            f"dm random days ({cl})",
            sims,
            lambda s: (random_days(s), 0.5),
            lambda p, s, cl=cl: DifferenceInMeansEstimator(cluster=cl).fit(p).result_,
        )


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


def study_staggered(sims: int) -> None:
    pop = float(
        np.mean([(1 + 0.3 * (t - g)) * (1 + (g == 5)) for g in COHORTS[:-1] for t in range(g, 20)])
    )
    est, sample_truth, cover, twfe = [], [], [], []
    t0 = time.perf_counter()
    for s in range(sims):
        p, tau = staggered(s)
        r = StaggeredDIDEstimator(seed=s, n_boot=200).fit(p).result_
        lo, hi = r.conf_int()
        est.append(r.effect)
        sample_truth.append(float(tau[p.W].mean()))
        cover.append(bool(lo <= pop <= hi))
        twfe.append(r.details["twfe_static"])
    secs = time.perf_counter() - t0
    summarise("staggered (CS, vs sample)", est, sample_truth, [], secs)
    summarise("staggered (CS, vs popul.)", est, [pop] * sims, cover, secs)
    summarise("pooled TWFE (vs sample)", twfe, sample_truth, [], secs)


def study_cs(sims: int, days: int = 30, per_day: int = 100) -> None:
    rng = np.random.default_rng(0)
    naive = anytime = 0
    t0 = time.perf_counter()
    cs = ConfidenceSequence(target_se=float(np.sqrt(5 / 3 / (days * per_day))), intersect=False)
    n = np.arange(1, days + 1) * per_day
    for start in range(0, sims, 500):
        x = rng.standard_t(5, size=(min(500, sims - start), days * per_day))
        c1, c2 = np.cumsum(x, axis=1)[:, n - 1], np.cumsum(x**2, axis=1)[:, n - 1]
        mean = c1 / n
        se = np.sqrt((c2 / n - mean**2) / n)
        naive += int(np.any(np.abs(mean) > 1.96 * se, axis=1).sum())
        anytime += int(np.any(np.abs(mean) > cs.radius(se), axis=1).sum())
    print(
        f"{'confidence sequence':<26} n={sims:<4} P(ever exclude truth, {days} daily looks): "
        f"naive 95% CI={naive / sims:.3f}  CS={anytime / sims:.3f}  "
        f"width ratio at last look={cs.radius(se[:, -1]).mean() / (1.96 * se[:, -1].mean()):.2f}"
        f"  sec={time.perf_counter() - t0:.1f}",
        flush=True,
    )


STUDIES: dict[str, Callable[[int], None]] = {
    "mc": study_mc,
    "mc-convex": study_mc_convex,
    "mc-nofactor": study_mc_nofactor,
    "mc-tp": study_mc_time_placebo,
    "trop": study_trop,
    "ht": study_ht,
    "crossover": study_crossover,
    "dm": study_dm,
    "staggered": study_staggered,
    "cs": study_cs,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sims", type=int, default=500)
    ap.add_argument("--only", default=",".join(STUDIES))
    ap.add_argument("--trop-boot", type=int, default=50, help="TROP bootstrap replicates")
    ap.add_argument("--progress", type=int, default=0, help="interim summary every N sims")
    args = ap.parse_args()
    global TROP_BOOT, PROGRESS
    TROP_BOOT, PROGRESS = args.trop_boot, args.progress
    for name in args.only.split(","):
        STUDIES[name](args.sims if name != "cs" else max(args.sims, 2000))


if __name__ == "__main__":
    main()
