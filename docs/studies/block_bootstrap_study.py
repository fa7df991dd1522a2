"""Coverage of the block estimators' bootstrap (``se="bootstrap"``) over seeded panels.

The panel is ``analysis.pricing_dgp.factor_panel(seed)``: 30 units x 20 periods, 3 treated
from period 15, rank-2 random-walk factors, N(0, 1) noise, tau = 1 (the random scenario of
``panel_core_study.py``). For each seed, ``make(method, se="bootstrap", seed=s,
replications=R)`` through the public API; prints bias, sd, mean SE, coverage of the reported
interval (Student t with the bootstrap's Welch-Satterthwaite df) and of a normal one.

    .venv/bin/python docs/studies/block_bootstrap_study.py --method did --seeds 0:500 --reps 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.estimators.registry import make  # noqa: E402
from analysis.pricing_dgp import factor_panel  # noqa: E402

TAU = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="did")
    ap.add_argument("--seeds", default="0:500")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    a, b = (int(x) for x in args.seeds.split(":"))
    est, se, df, cover_t = [], [], [], []
    t0 = time.perf_counter()
    for s in range(a, b):
        r = make(args.method, se="bootstrap", seed=s, replications=args.reps)
        res = r.fit(factor_panel(s)).result_
        lo, hi = res.conf_int()
        est.append(res.effect)
        se.append(res.se)
        df.append(res.df)
        cover_t.append(lo <= TAU <= hi)
    e, s_, n = np.asarray(est) - TAU, np.asarray(se), len(est)
    cover_n = np.abs(e / s_) <= 1.959964
    print(
        f"{args.method} bootstrap R={args.reps} seeds {a}..{b - 1}: bias {e.mean():+.4f} "
        f"(MC se {e.std(ddof=1) / np.sqrt(n):.4f}), sd {e.std(ddof=1):.3f}, mean SE {s_.mean():.3f}"
        f" (SE/SD {s_.mean() / e.std(ddof=1):.2f}), median df {np.median(df):.1f}, coverage "
        f"t(df) {np.mean(cover_t):.3f}, normal {cover_n.mean():.3f}, |z|>3 "
        f"{np.mean(np.abs(e / s_) > 3):.3f}; {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
