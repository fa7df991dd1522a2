"""Does TROP's estimate on California Proposition 99 depend on the seed? (issue #27)

The panel is ``tests/data/california_prop99.csv`` (39 states x 31 years, California treated
from 1989), fitted as ``pricelab analyze ... --method trop [--seed S]`` fits it:
``TROPEstimator(seed=S)`` at its defaults (one treated unit, so the SE is the unit placebo).
For each seed of ``--seeds A:B`` and then twice with no seed (``seed=None``, the CLI without
``--seed``) it prints the estimate, the SE, the tuned (lambda_time, lambda_unit, lambda_nn)
and the seconds, then the spread (max - min) of the estimates and of the SEs over the seeds.

``--n-tune K`` sets the number of placebo units that score the tuning grid (default: the
estimator's); ``--grid`` prints, instead, the tuning loss and the estimate (no SE) at every
point of the grid, to see how far apart the points the tuning chooses between are.

    python docs/studies/trop_seed_study.py --seeds 0:8
    python docs/studies/trop_seed_study.py --seeds 0:8 --n-tune 38
    python docs/studies/trop_seed_study.py --grid
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimators.trop import TROPEstimator  # noqa: E402
from analysis.panel import Panel  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "california_prop99.csv"


def prop99() -> Panel:
    df = pd.read_csv(DATA, sep=";")
    return Panel.from_long(
        df, unit="State", time="Year", outcome="PacksPerCapita", treated="treated"
    )


def seeds(panel: Panel, seed_list: list[int | None], options: dict[str, Any]) -> None:
    print("seed\teffect\tse\tse_method\t(time, unit, nn)\tseconds")
    effects: dict[int | None, float] = {}
    ses: dict[int | None, float] = {}
    runs_without_seed = 0
    for s in seed_list:
        t0 = time.perf_counter()
        r = TROPEstimator(seed=s, **options).fit(panel).result_
        secs = time.perf_counter() - t0
        d = r.details
        lam = (d["lambda_time"], d["lambda_unit"], d["lambda_nn"])
        runs_without_seed += s is None
        label = s if s is not None else f"None (run {runs_without_seed})"
        print(f"{label}\t{r.effect:.4f}\t{r.se:.4f}\t{r.se_method}\t{lam}\t{secs:.1f}")
        if s is not None:
            effects[s], ses[s] = r.effect, r.se
        else:
            effects.setdefault(None, r.effect)
            ses.setdefault(None, r.se)
            if effects[None] != r.effect or ses[None] != r.se:
                print("  seed=None: a second run gave a different result")
    e = np.array([v for k, v in effects.items() if k is not None])
    se = np.array([v for k, v in ses.items() if k is not None])
    sd = f", sd {e.std(ddof=1):.4f}" if e.size > 1 else ""
    print(
        f"over {e.size} seeds: effect {e.min():.4f} .. {e.max():.4f} (spread {np.ptp(e):.4f}{sd}); "
        f"se {se.min():.4f} .. {se.max():.4f} (spread {np.ptp(se):.4f})"
    )


def grid(panel: Panel, options: dict[str, Any]) -> None:
    """The tuning loss (from the trace of one fit) and the estimate at every grid point."""
    r = TROPEstimator(se="none", **options).fit(panel).result_
    chosen = (r.details["lambda_time"], r.details["lambda_unit"], r.details["lambda_nn"])
    rows = sorted(r.details["tuning_trace"], key=lambda row: row[3])
    print("rank\t(time, unit, nn)\tloss\teffect")
    for k, (lt, lu, nn, loss) in enumerate(rows):
        eff = TROPEstimator(lt, lu, nn, se="none").fit(panel).result_.effect
        mark = "  <- chosen" if (lt, lu, nn) == chosen else ""
        print(f"{k + 1}\t({lt}, {lu}, {nn})\t{loss:.3f}\t{eff:.4f}{mark}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0:8", help="A:B, the seeds A..B-1")
    ap.add_argument("--n-tune", type=int, default=None)
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()
    options: dict[str, Any] = {} if args.n_tune is None else {"n_tune": args.n_tune}
    panel = prop99()
    if args.grid:
        grid(panel, options)
        return
    a, b = (int(x) for x in args.seeds.split(":"))
    seeds(panel, [*range(a, b), None, None], options)


if __name__ == "__main__":
    main()
