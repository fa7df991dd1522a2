"""Benchmark: HPTE on 10,000 products x 90 days with 200 bootstrap replicates, and building the
substitutable-items graph from a year of history on 20,000 products.

    .venv/bin/python benchmarks/bench_pricing_methods.py [--repeats 3]

Prints the wall time of each run and the median. Reference points in the same process:
- HPTE step 1 (batched least-squares detrending) vs a per-product ``np.linalg.lstsq`` loop;
- graph pair tests (Gram-matrix closed form) vs one ``np.linalg.lstsq`` per ordered pair, timed on
  one category and scaled by the number of ordered pairs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from analysis.estimators.hpte import (
    HPTEEstimator,
    detrended_first_differences,
    forecast_design,
    season_index,
)
from analysis.graph import build_graph
from analysis.pricing_dgp import simulate_history, simulate_hpte_panel


def _timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_hpte(repeats: int) -> None:
    sim = simulate_hpte_panel(10_000, 60, 30, seed=0)
    panel = sim.panel
    print("HPTE: 10,000 products x 90 days (60 pre + 30 post), 200 bootstrap replicates")
    times = _timed(lambda: HPTEEstimator(seed=0, n_bootstrap=200).fit(panel), repeats)
    print(
        f"  full fit   runs {[f'{t:.2f}' for t in times]} s, median {statistics.median(times):.2f} s"
    )
    t_none = _timed(lambda: HPTEEstimator(seed=0, se="none").fit(panel), repeats)
    print(f"  no SE      median {statistics.median(t_none):.2f} s (forests + one estimate)")
    season = season_index(panel.times, 7)
    t_vec = _timed(lambda: detrended_first_differences(panel.Y, panel.usable, 60, season), repeats)
    Z = forecast_design(90, 60, season, True)

    def loop() -> None:
        for i in range(panel.n_units):
            coef, *_ = np.linalg.lstsq(Z[:60], panel.Y[i, :60], rcond=None)
            _ = (panel.Y[i, 60:] - Z[60:] @ coef).mean()

    t_loop = _timed(loop, 1)
    print(
        f"  step 1 detrending: batched {statistics.median(t_vec) * 1e3:.0f} ms vs per-product loop "
        f"{t_loop[0] * 1e3:.0f} ms (x{t_loop[0] / statistics.median(t_vec):.0f})"
    )


def bench_graph(repeats: int) -> None:
    t = time.perf_counter()
    hist = simulate_history(510, category_size=(20, 60), seed=0)  # >= 20,000 products
    h = hist.history
    n_products = h["product"].nunique()
    sizes = h.groupby("category")["product"].nunique()
    n_pairs = int((sizes * (sizes - 1)).sum())
    print(
        f"\nGraph: {n_products} products in {sizes.size} categories (20-60 each), 365 days, "
        f"{len(h):,} rows, {n_pairs // 2:,} candidate pairs (simulated in {time.perf_counter() - t:.1f} s)"
    )
    times = _timed(lambda: build_graph(h), repeats)
    print(
        f"  build_graph runs {[f'{x:.2f}' for x in times]} s, median {statistics.median(times):.2f} s"
    )
    # reference: one least-squares fit per ordered pair, on one category, scaled up
    cat = sizes.index[0]
    sub = h[h["category"] == cat]
    lp = np.log(sub.pivot(index="product", columns="date", values="price").to_numpy())
    lq = np.log1p(sub.pivot(index="product", columns="date", values="units").to_numpy())
    m, T = lp.shape
    base = np.column_stack([np.ones(T), np.linspace(-1, 1, T), lq.mean(0), lp.mean(0)])
    t = time.perf_counter()
    for j in range(m):
        for i in range(m):
            if i != j:
                X = np.column_stack([base, lp[j], lp[i]])
                np.linalg.lstsq(X, lq[j], rcond=None)
    per_pair = (time.perf_counter() - t) / (m * (m - 1))
    print(
        f"  reference per-pair lstsq: {per_pair * 1e6:.0f} us per ordered pair -> "
        f"{per_pair * n_pairs:.0f} s for all pairs (x{per_pair * n_pairs / statistics.median(times):.0f} "
        "the full vectorised build)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", choices=["hpte", "graph", "all"], default="all")
    args = ap.parse_args()
    if args.part in ("hpte", "all"):
        bench_hpte(args.repeats)
    if args.part in ("graph", "all"):
        bench_graph(args.repeats)


if __name__ == "__main__":
    main()
