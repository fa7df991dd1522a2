"""TROP's interval coverage at its defaults, seed by seed, and where its error comes from.

Two parts, both on ``advanced_study.factor_block`` (30 x 20, 8 treated from period 14, rank-2
factors with selection on the first loading, tau = 1):

``coverage``: ``TROPEstimator(seed=s, n_boot=B, search=..., relax=...)`` - the stratified
unit bootstrap at its default - for each seed of ``--seeds A:B``. The options are always
passed: without ``--search grid --relax`` this is the estimator before 2026-11-23 (coordinate
search, convex fit), so the earlier runs' commands still reproduce them; one row per seed is
appended to ``--out`` (TSV), so a long run can be split over processes and resumed. Columns:
seed, effect, se, df, ci_low, ci_high, lambda_time, lambda_unit, lambda_nn, twfe effect,
seconds.

``decompose``: for each seed of ``--seeds``, hold the unit effects, loadings and factors of
that seed fixed and redraw only the idiosyncratic noise ``--draws`` times; fit TROP at the
seed's tuned lambdas (no SE) to each draw. The mean error over the draws is the conditional
bias given the factors (the part a unit bootstrap, which holds the periods fixed, cannot
see), their sd the conditional noise; the seed's bootstrap SE is printed beside them.

    .venv/bin/python docs/studies/trop_study.py coverage --seeds 0:500 --out /tmp/trop.tsv
    .venv/bin/python docs/studies/trop_study.py summary /tmp/trop.tsv
    .venv/bin/python docs/studies/trop_study.py decompose --seeds 0:20 --draws 30
    .venv/bin/python docs/studies/trop_study.py refit --seeds 0:5
    .venv/bin/python docs/studies/trop_study.py time-placebo --tuned /tmp/trop.tsv --out /tmp/tp.tsv

``time-placebo``: for every seed of a ``coverage`` TSV, the same fit at that seed's tuned
lambdas with ``se="time_placebo"`` (Almeida et al.'s Time-Placebo; 7 windows of 6 periods in
the 14-period pre-period here); rows: seed, effect, se, df, ci_low, ci_high, seconds.
``--se`` names another variance method for the same fits (e.g. ``placebo``: unit placebo,
Student t(N0 - 1)); ``--dgp`` and ``--relax`` must be those of the coverage run (the TSV
holds the tuned lambdas, not the options).
``summary`` reads either file.

``refit``: why TROP has no post-selection rank refit. For each seed, TROP's weights of every
treated cell at tuned-like rates (time 0.3, unit 2 per median distance), then the weighted
rank-2 least-squares fit without penalty (``mcnnm.fit_fe_rank``, hard-impute) stopped after
200, 1,000 and 5,000 iterations: the objective falls and the imputed treated cells get worse.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from advanced_study import factor_block  # noqa: E402

from analysis.estimators.trop import TROPEstimator  # noqa: E402
from analysis.panel import Panel  # noqa: E402
from analysis.pricing_dgp import factor_panel  # noqa: E402

TAU = 1.0

#: ``coverage --dgp``: the panel of each seed. ``factor_block`` (the default) is this study's
#: DGP; ``core_random`` / ``core_confounded`` are docs/studies/panel_core_study.py's scenarios
#: (30 x 20, 3 treated from period 15, random-walk factors, N(0, 1) noise), on which the core
#: estimators (did, sc, difp, sdid) were judged.
DGPS = {
    "factor_block": factor_block,
    "core_random": lambda s: factor_panel(s, n_pre=15),
    "core_confounded": lambda s: factor_panel(s, n_pre=15, confounded=True),
}


def _done_seeds(out: Path) -> set[int]:
    """Seeds already in a resumable TSV (one row per seed, seed first)."""
    if not out.exists():
        return set()
    return {int(line.split("\t")[0]) for line in out.read_text().splitlines() if line}


def _seeds(text: str) -> range:
    a, b = text.split(":")
    return range(int(a), int(b))


#: ``coverage --wide``: the default grids extended past the boundary values the tuning chose
#: in most seeds (lambda_unit 2 and lambda_nn 0.01 are the defaults' ends)
WIDE = {
    "lambda_unit_grid": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    "lambda_nn_grid": (float("inf"), 0.1, 0.03, 0.01, 0.003, 0.001),
}


def coverage(
    seeds: range,
    out: Path,
    n_boot: int,
    wide: bool = False,
    tuning: str = "placebo",
    se: str | None = None,
    dgp: str = "factor_block",
    search: str = "coordinate",
    relax: bool = False,
) -> None:
    make = DGPS[dgp]
    done = _done_seeds(out)
    with out.open("a") as f:
        for s in seeds:
            if s in done:
                continue
            p = make(s)
            t0 = time.perf_counter()
            kw = {
                "tuning": tuning, "se": se, "search": search, "relax": relax,
                **(WIDE if wide else {}),
            }  # fmt: skip
            r = TROPEstimator(seed=s, n_boot=n_boot, **kw).fit(p).result_
            secs = time.perf_counter() - t0
            twfe = TROPEstimator(0.0, 0.0, float("inf"), se="none").fit(p).result_.effect
            lo, hi = r.conf_int()
            d = r.details
            row = (
                s, r.effect, r.se, r.df, lo, hi,
                d["lambda_time"], d["lambda_unit"], d["lambda_nn"], twfe, secs,
            )  # fmt: skip
            f.write("\t".join(str(v) for v in row) + "\n")
            f.flush()


def time_placebo(
    tuned: Path, out: Path, se: str = "time_placebo", dgp: str = "factor_block", relax: bool = False
) -> None:
    make = DGPS[dgp]
    done = _done_seeds(out)
    rows = [line.split("\t") for line in tuned.read_text().splitlines() if line[:1].isdigit()]
    with out.open("a") as f:
        for row in sorted(rows, key=lambda r: int(r[0])):
            s = int(row[0])
            if s in done:
                continue
            lams = (float(row[6]), float(row[7]), float(row[8]))
            t0 = time.perf_counter()
            r = TROPEstimator(*lams, se=se, seed=s, relax=relax).fit(make(s)).result_
            lo, hi = r.conf_int()
            vals = (s, r.effect, r.se, r.df, lo, hi, *lams, float("nan"), time.perf_counter() - t0)
            f.write("\t".join(str(v) for v in vals) + "\n")
            f.flush()


def summary(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if line[:1].isdigit()]  # no header
    rows = np.array([[float(v) for v in line.split("\t")] for line in lines])
    eff, se, df = rows[:, 1], rows[:, 2], rows[:, 3]
    n = len(rows)
    err = eff - TAU
    cover_t = (rows[:, 4] <= TAU) & (rows[:, 5] >= TAU)
    z = err / se
    cover_n = np.abs(z) <= stats.norm.ppf(0.975)
    twfe_err = rows[:, 9] - TAU
    print(f"seeds {n} (from {int(rows[:, 0].min())} to {int(rows[:, 0].max())})")
    print(f"bias {err.mean():+.4f} (MC se {err.std(ddof=1) / np.sqrt(n):.4f})  sd {err.std(ddof=1):.4f}"
          f"  RMSE {np.sqrt(np.mean(err**2)):.4f}  mean SE {se.mean():.4f}  median df {np.median(df):.1f}")  # fmt: skip
    print(f"coverage t(df) {cover_t.mean():.3f} (MC se {np.sqrt(cover_t.mean() * (1 - cover_t.mean()) / n):.3f})"
          f"  normal {cover_n.mean():.3f}  sd(z) {z.std(ddof=1):.3f}  q95|z| {np.quantile(np.abs(z), 0.95):.2f}")  # fmt: skip
    print(
        f"TWFE (0, 0, inf): bias {twfe_err.mean():+.4f}  RMSE {np.sqrt(np.mean(twfe_err**2)):.4f}"
    )
    print(
        f"seconds per seed: median {np.median(rows[:, 10]):.1f}, total {rows[:, 10].sum() / 60:.1f} min"
    )
    lam = [tuple(r) for r in rows[:, 6:9]]
    vals, counts = np.unique(np.array(lam), axis=0, return_counts=True)
    top = np.argsort(-counts)[:6]
    print("most tuned (time, unit, nn):", ", ".join(f"{tuple(vals[k])} x{counts[k]}" for k in top))
    for name, mask in (
        ("lambda_nn finite", np.isfinite(rows[:, 8])),
        ("no low rank", ~np.isfinite(rows[:, 8])),
    ):
        if mask.any():
            print(f"  {name}: {mask.sum()} seeds, coverage t {cover_t[mask].mean():.3f}, sd {err[mask].std(ddof=1):.3f}, mean SE {se[mask].mean():.3f}")  # fmt: skip


def _redraw(seed: int, draw: int) -> Panel:
    """factor_block(seed) with its noise (the last draw of the generator) redrawn."""
    p = factor_block(seed)
    rng = np.random.default_rng(seed)
    N, T = p.Y.shape
    rng.normal(size=(N, 2))
    rng.normal(size=(T, 2))
    rng.normal(size=(N, 1))
    old = 0.5 * rng.normal(size=(N, T))
    new = 0.5 * np.random.default_rng([seed, draw]).normal(size=(N, T))
    return Panel(Y=p.Y - old + new, W=p.W, units=p.units, times=p.times, blackout=p.blackout)


def decompose(seeds: range, draws: int) -> None:
    print("seed  lambdas            boot SE  cond bias  cond sd  sqrt(bias^2+sd^2)")
    for s in seeds:
        r = TROPEstimator(seed=s, n_boot=50).fit(factor_block(s)).result_
        d = r.details
        lams = (d["lambda_time"], d["lambda_unit"], d["lambda_nn"])
        est = np.array(
            [
                TROPEstimator(*lams, se="none").fit(_redraw(s, k)).result_.effect
                for k in range(draws)
            ]
        )
        bias, sd = est.mean() - TAU, est.std(ddof=1)
        print(f"{s:4d}  {str(lams):18s} {r.se:7.3f}  {bias:+9.3f}  {sd:7.3f}  {np.hypot(bias, sd):7.3f}",
              flush=True)  # fmt: skip


def refit(seeds: range) -> None:
    from threadpoolctl import threadpool_limits

    from analysis.estimators.mcnnm import fit_fe_rank
    from analysis.estimators.trop import _pair_stats

    print("seed  iterations  objective  mean error  max |error|  (treated cells' Y(0))")
    for s in seeds:
        p = factor_block(s)
        Y, W = p.Y, p.W
        obs = ~W
        N, T = Y.shape
        S, n = _pair_stats(Y, obs, np.arange(N))
        dist = np.sqrt(S / n)
        med = np.median(dist[~np.eye(N, dtype=bool)])
        ti, tt = np.nonzero(W)
        weights = []
        for i, t in zip(ti, tt, strict=True):
            uw = np.exp(-2.0 / med * dist[i])
            uw[i] = 1.0
            weights.append(obs * uw[:, None] * np.exp(-0.3 * np.abs(np.arange(T) - t))[None])
        Wt = np.array(weights)
        truth = Y[ti, tt] - TAU
        k = np.arange(len(ti))
        for iters in (200, 1000, 5000):
            with threadpool_limits(1, "blas"):
                a, b, L, _ = fit_fe_rank(Y, Wt, 2, max_iter=iters, tol=0.0)
            fit = a[:, :, None] + b[:, None, :] + L
            objective = float((Wt * (Y[None] - fit) ** 2).sum())
            err = a[k, ti] + b[k, tt] + L[k, ti, tt] - truth
            print(f"{s:4d}  {iters:10d}  {objective:9.2f}  {err.mean():+10.3f}  {np.abs(err).max():11.2f}",
                  flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("coverage")
    c.add_argument("--seeds", default="0:500")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--n-boot", type=int, default=100)
    c.add_argument("--wide", action="store_true", help="tuning grids extended (WIDE)")
    c.add_argument(
        "--tuning", default="placebo", help="placebo (default since 2026-11-23) or loo (before)"
    )
    c.add_argument("--se", default=None, help="variance method (default: the estimator's)")
    c.add_argument("--dgp", default="factor_block", choices=sorted(DGPS))
    c.add_argument("--search", default="coordinate", choices=("coordinate", "grid"))
    c.add_argument("--relax", action="store_true", help="relaxed refit of the low-rank term")
    s = sub.add_parser("summary")
    s.add_argument("path", type=Path)
    d = sub.add_parser("decompose")
    d.add_argument("--seeds", default="0:20")
    d.add_argument("--draws", type=int, default=30)
    tp = sub.add_parser("time-placebo")
    tp.add_argument("--tuned", type=Path, required=True)
    tp.add_argument("--out", type=Path, required=True)
    tp.add_argument("--se", default="time_placebo", help="variance method at the tuned lambdas")
    tp.add_argument("--dgp", default="factor_block", choices=sorted(DGPS))
    tp.add_argument("--relax", action="store_true", help="as the coverage run (must match it)")
    f = sub.add_parser("refit")
    f.add_argument("--seeds", default="0:5")
    args = ap.parse_args()
    if args.cmd == "coverage":
        coverage(
            _seeds(args.seeds), args.out, args.n_boot, args.wide, args.tuning, args.se,
            args.dgp, args.search, args.relax,
        )  # fmt: skip
    elif args.cmd == "summary":
        summary(args.path)
    elif args.cmd == "time-placebo":
        time_placebo(args.tuned, args.out, args.se, args.dgp, args.relax)
    elif args.cmd == "refit":
        refit(_seeds(args.seeds))
    else:
        decompose(_seeds(args.seeds), args.draws)


if __name__ == "__main__":
    main()
