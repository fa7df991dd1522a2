"""What the console's assignments heatmap costs for a big experiment (issue #55: the page of a
1,000,000-product experiment within 1 s, "with the heatmap aggregated").

- the aggregation alone (``streams.client.heatmap.aggregate``) of a products x periods arm
  and blackout matrix into at most 200 x 200 bins, on the period-major matrices the console
  builds (``schedule_matrices``); baseline in the same run: the same call on product-major
  (C-ordered) matrices, which it first converts;
- the schedule it is made of: one period's draws of every product
  (``controller.designs.period_assignments``), which the console does once per experiment,
  freezes and triggers, and keeps.

    .venv/bin/python benchmarks/bench_heatmap.py [--products 1000000] [--periods 56] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from controller.designs import period_assignments
from controller.spec import ExperimentSpec
from streams.client.heatmap import aggregate


def _median(fn: object, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--periods", type=int, default=56)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    n, t = a.products, a.periods
    rng = np.random.default_rng(0)
    arm = np.asfortranarray(rng.integers(0, 4, size=(n, t), dtype=np.int8))
    black = np.asfortranarray(
        np.where(rng.random((n, t)) < 0.1, rng.integers(1, 4, size=(n, t)), 0).astype(np.int8)
    )
    arm_c, black_c = np.ascontiguousarray(arm), np.ascontiguousarray(black)
    med, best = _median(lambda: aggregate(arm, black, 4), a.runs)
    base_med, base_best = _median(lambda: aggregate(arm_c, black_c, 4), a.runs)
    shape = aggregate(arm, black, 4).cells.shape
    print(f"aggregate {n:,} products x {t} periods (4 arms) -> {shape[0]} x {shape[1]} cells")
    print(f"  period-major (as the console builds it): median {med:.3f} s, best {best:.3f} s")
    print(f"  baseline, product-major: median {base_med:.3f} s, best {base_best:.3f} s")
    start = datetime(2026, 1, 5, tzinfo=UTC)
    spec = ExperimentSpec(
        id="bench-heatmap",
        design="random-days",
        products=tuple(f"p{i}" for i in range(n)),
        start=start,
        end=start + timedelta(days=t),
        washout=timedelta(hours=2),
        treatment_policy="t",
        control_policy="c",
    )
    draw, _ = _median(lambda: period_assignments(spec, 3), max(1, a.runs // 2))
    print(f"  one period's draws of every product (made once, then kept): {draw:.2f} s")
    print(f"  the whole schedule, once: about {draw * t:.0f} s")


if __name__ == "__main__":
    main()
