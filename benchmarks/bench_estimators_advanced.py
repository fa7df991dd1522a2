"""Wall time of the advanced estimators on 1,000 units x 100 periods (and TROP's scaling).

Prints one line per case: seconds (median of ``--repeat`` runs) and the estimate. Where a Python
reference implementation is installed (diff-diff: Callaway-Sant'Anna and TROP), it is timed in
the same run on the same data and the ratio printed. Usage:

    python benchmarks/bench_estimators_advanced.py [--repeat 3] [--skip-reference]
    python benchmarks/bench_estimators_advanced.py --trop-tuning-only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.estimators.crossover import (  # noqa: E402
    CrossoverEstimator,
    DifferenceInMeansEstimator,
)
from analysis.estimators.mcnnm import MCNNMEstimator  # noqa: E402
from analysis.estimators.staggered import StaggeredDIDEstimator  # noqa: E402
from analysis.estimators.switchback import SwitchbackHTEstimator  # noqa: E402
from analysis.estimators.trop import TROPEstimator  # noqa: E402
from analysis.panel import Panel  # noqa: E402
from benchmarks._common import median_time  # noqa: E402

N, T = 1000, 100


def report(name: str, secs: float, val: float, extra: str = "") -> None:
    print(f"{name:<48} {secs:9.3f} s   estimate {val:+.4f}  {extra}", flush=True)


def factor_panel(rng: np.random.Generator, W: np.ndarray, prob: float | None = None) -> Panel:
    n, t = W.shape
    Y = (
        rng.normal(size=(n, 3)) @ rng.normal(size=(t, 3)).T
        + rng.normal(size=(n, 1))
        + np.linspace(0, 2, t)[None]
        + 0.5 * rng.normal(size=(n, t))
        + 1.0 * W
    )
    P = None if prob is None else np.full((n, t), prob)
    return Panel(
        Y=Y, W=W, units=np.arange(n), times=np.arange(t), blackout=np.zeros_like(W), probability=P
    )


def block_W(n: int, t: int, n_tr: int, t0: int) -> np.ndarray:
    W = np.zeros((n, t), bool)
    W[:n_tr, t0:] = True
    return W


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--trop-tuning-only", action="store_true", help="only TROP's tuning cost")
    ap.add_argument(
        "--prop99", action="store_true", help="only TROP on Proposition 99, beside SDID"
    )
    args = ap.parse_args()
    r = args.repeat
    rng = np.random.default_rng(0)
    if args.trop_tuning_only:
        trop_tuned(rng)
        return
    if args.prop99:
        prop99(r)
        return
    start = rng.choice([20, 40, 60, 80, T], size=N)
    stag = factor_panel(rng, np.arange(T)[None] >= start[:, None])
    if not args.reference_only:
        ours(rng, r)
    if not args.skip_reference:
        reference(rng, r, stag, start)


def ours(rng: np.random.Generator, r: int) -> None:
    print(f"--- {N} units x {T} periods, median of {r} run(s)")

    block = factor_panel(rng, block_W(N, T, 100, 90))
    s, v = median_time(lambda: MCNNMEstimator(seed=0, se="none").fit(block).result_.effect, r)
    report("mc: 5-fold CV over 10 lambdas, no SE", s, v)
    s1, v = median_time(lambda: MCNNMEstimator(seed=0, n_boot=5).fit(block).result_.effect, 1)
    report("mc: + 5 bootstrap replicates", s1, v, f"(~{(s1 - s) / 5:.2f} s per replicate)")

    switch = factor_panel(rng, rng.random((N, T)) < 0.5, prob=0.5)
    s, v = median_time(lambda: SwitchbackHTEstimator(0).fit(switch).result_.effect, r)
    report("ht p=0 random days, conservative bound", s, v)
    s, v = median_time(lambda: SwitchbackHTEstimator(2).fit(switch).result_.effect, r)
    report("ht p=2 random days, conservative bound", s, v)
    s, v = median_time(
        lambda: (
            SwitchbackHTEstimator(0, se="randomization", n_draws=200, seed=0)
            .fit(switch)
            .result_.effect
        ),
        1,
    )
    report("ht p=0 + randomisation test (200 draws)", s, v)
    s, v = median_time(lambda: DifferenceInMeansEstimator().fit(switch).result_.effect, r)
    report("dm random days, unit-clustered", s, v)

    W = np.zeros((N, T), bool)
    W[: N // 2, :50] = True
    W[N // 2 :, 50:] = True
    B = np.zeros((N, T), bool)
    B[:, :7] = True
    B[:, 50:57] = True
    cross = Panel(Y=factor_panel(rng, W).Y, W=W, units=np.arange(N), times=np.arange(T), blackout=B)
    s, v = median_time(lambda: CrossoverEstimator().fit(cross).result_.effect, r)
    report("crossover with washout", s, v)

    start = rng.choice([20, 40, 60, 80, T], size=N)
    stag = factor_panel(rng, np.arange(T)[None] >= start[:, None])
    s_cs, v = median_time(lambda: StaggeredDIDEstimator(seed=0).fit(stag).result_.effect, r)
    report("staggered (Callaway-Sant'Anna, 200 bootstrap)", s_cs, v)
    s_cs0, v = median_time(lambda: StaggeredDIDEstimator(se="none").fit(stag).result_.effect, r)
    report("staggered, point estimate only", s_cs0, v)

    # TROP: per-treated-cell fits; cost depends on how many cells share a weight pattern
    s, v = median_time(
        lambda: TROPEstimator(0.0, 0.0, float("inf"), se="none").fit(block).result_.effect, r
    )
    report("trop (0,0,inf) = TWFE, 1000 treated cells", s, v)
    s, v = median_time(
        lambda: TROPEstimator(0.1, 0.0, float("inf"), se="none").fit(block).result_.effect, 1
    )
    report("trop time weights only: 10 fits", s, v)
    s, v = median_time(
        lambda: TROPEstimator(0.1, 0.0, 0.03, se="none").fit(block).result_.effect, 1
    )
    report("trop time weights + low rank: 10 fits", s, v)
    small = factor_panel(rng, block_W(N, T, 5, 98))  # 10 treated cells
    s, v = median_time(
        lambda: TROPEstimator(0.1, 1.0, 0.03, se="none").fit(small).result_.effect, 1
    )
    report("trop full weights + low rank, 10 treated cells", s, v, f"({s / 10:.2f} s per cell)")
    s, v = median_time(
        lambda: TROPEstimator(0.1, 1.0, 0.03, se="none", relax=True).fit(small).result_.effect, 1
    )
    report("trop same, relax=True (loadings refit)", s, v, f"({s / 10:.2f} s per cell)")
    trop_tuned(rng)


def prop99(r: int) -> None:
    """TROP at its defaults, with its SE, on Proposition 99 (the panel `pricelab analyze
    --method trop` reads), beside SDID with its SE in the same process, repeats interleaved:
    the ratio of medians is the figure (the machine's load moves both). The exact path
    (``warm_tuning=False, threads=1``: every tuning fit from zero, one chunk of fits after
    another) must give the same estimate and SE to 3 digits."""
    import pandas as pd

    from analysis.estimators.synth import SyntheticDID

    root = Path(__file__).resolve().parents[1]
    df = pd.read_csv(root / "tests" / "data" / "california_prop99.csv", sep=";")
    p = Panel.from_long(df, unit="State", time="Year", outcome="PacksPerCapita", treated="treated")
    fits = {
        "sdid (placebo SE)": lambda: SyntheticDID().fit(p).result_,
        "trop, default (warm tuning, 2 threads)": lambda: TROPEstimator().fit(p).result_,
        "trop, exact path (no warm start, 1 thread)": lambda: (
            TROPEstimator(warm_tuning=False, threads=1).fit(p).result_
        ),
    }
    secs: dict[str, list[float]] = {k: [] for k in fits}
    got: dict[str, tuple[float, float]] = {}
    for _ in range(r):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            res = fit()
            secs[name].append(time.perf_counter() - t0)
            got[name] = (res.effect, res.se)
    base = statistics.median(secs["sdid (placebo SE)"])
    print(f"--- Proposition 99 (39 states x 31 years), {r} interleaved repeats, medians")
    for name in fits:
        med = statistics.median(secs[name])
        eff, se = got[name]
        print(
            f"{name:<42} {med:7.2f} s  x{med / base:6.1f} sdid   estimate {eff:+.3f}  se {se:.3f}",
            flush=True,
        )
    fast, exact = (
        got["trop, default (warm tuning, 2 threads)"],
        got["trop, exact path (no warm start, 1 thread)"],
    )
    same = all(round(x, 3) == round(y, 3) for x, y in zip(fast, exact, strict=True))
    print(f"warm tuning and the exact path agree to 3 digits: {same}")


def trop_tuned(rng: np.random.Generator) -> None:
    """TROP's tuning cost as the panel grows: the default (placebo paths over the whole grid,
    relaxed refit) against the estimator before 2026-11-23 (coordinate search, convex fit) with
    placebo-path and with single-cell leave-one-out tuning, the same panels."""
    print("--- TROP with tuning and no SE, block 10% treated x 5 post")
    warm = factor_panel(np.random.default_rng(1), block_W(20, 10, 2, 5))
    TROPEstimator(seed=0, se="none").fit(warm)  # first-call costs out of the first timing
    for n, t in ((50, 20), (100, 30), (200, 50), (400, 50)):
        p = factor_panel(rng, block_W(n, t, n // 10, t - 5))
        before = {"search": "coordinate", "relax": False}  # the estimator before 2026-11-23
        for rule, kw in (
            ("default: placebo, grid, relax", {}),
            ("placebo, coordinate, convex", before),
            ("loo, coordinate, convex", {"tuning": "loo", **before}),
        ):
            s, v = median_time(
                lambda p=p, kw=kw: TROPEstimator(seed=0, se="none", **kw).fit(p).result_.effect,
                1,
            )
            report(f"trop tuned ({rule}) {n}x{t}", s, v)


def reference(rng: np.random.Generator, r: int, stag: Panel, start: np.ndarray) -> None:
    try:
        import diff_diff  # reference implementations (dev extra)
    except ImportError:
        print("diff-diff not installed; skipping reference timings")
        return
    print(f"--- reference: diff-diff {diff_diff.__version__}")
    long = stag.to_long()
    first = np.where(start < T, start, 0)
    long["first_treat"] = np.repeat(first, T)
    cs = diff_diff.CallawaySantAnna(control_group="not_yet_treated", estimation_method="reg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_ref, v_ref = median_time(
            lambda: float(
                cs.fit(
                    long, outcome="outcome", unit="unit", time="time", first_treat="first_treat"
                ).overall_att
            ),
            r,
        )
    s_cs0, v_cs = median_time(lambda: StaggeredDIDEstimator(se="none").fit(stag).result_.effect, r)
    report("ours staggered, point estimate only", s_cs0, v_cs)
    report(
        "diff-diff CallawaySantAnna (not-yet, reg, no bootstrap)",
        s_ref,
        v_ref,
        f"ratio ref/ours (point) = {s_ref / s_cs0:.1f}",
    )
    for n, t in ((50, 20), (100, 30)):
        p = factor_panel(rng, block_W(n, t, n // 10, t - 5))
        df = p.to_long()
        grid = {
            "lambda_time_grid": [0.1],
            "lambda_unit_grid": [0.5],
            "lambda_nn_grid": [float("inf")],
        }
        ref = diff_diff.TROP(method="local", n_bootstrap=2, seed=0, **grid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s_ref, v_ref = median_time(
                lambda df=df, ref=ref: float(
                    ref.fit(
                        df, outcome="outcome", treatment="treated", unit="unit", time="time"
                    ).att
                ),
                1,
            )
        ours = TROPEstimator(0.1, 0.5, float("inf"), se="none")
        s_o, v_o = median_time(lambda p=p, ours=ours: ours.fit(p).result_.effect, 1)
        report(f"diff-diff TROP local fixed (0.1,0.5,inf) {n}x{t}", s_ref, v_ref)
        report(
            f"ours  TROP fixed (0.1, 0.5/median dist, inf) {n}x{t}",
            s_o,
            v_o,
            f"ratio ref/ours = {s_ref / s_o:.1f}",
        )
        zero = {
            "lambda_time_grid": [0.0],
            "lambda_unit_grid": [0.0],
            "lambda_nn_grid": [float("inf")],
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v0 = (
                diff_diff.TROP(method="local", n_bootstrap=2, seed=0, **zero)
                .fit(df, outcome="outcome", treatment="treated", unit="unit", time="time")
                .att
            )
        v1 = TROPEstimator(0.0, 0.0, float("inf"), se="none", tol=1e-10).fit(p).result_.effect
        print(f"    TWFE special case {n}x{t}: diff-diff {v0:+.6f}  ours {v1:+.6f}")


if __name__ == "__main__":
    main()
