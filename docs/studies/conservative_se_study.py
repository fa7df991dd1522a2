"""Why two within-product estimators' SEs run large: `crossover` and `dm` on the crossover design
(0.978 coverage, mean SE / SD 1.06-1.07 over 400 runs in docs/validation.md) and `fe` on the
cluster design at PT4H with its SE clustered by class (0.973, 1.11; issue #27). The cluster
design's `fe` has since been published with class x period clusters
(docs/studies/cluster_fe_variance_study.py); this study keeps the class clusters it explained,
with the design's `dm`, as the worker published them before.

Each hypothesis is a term that a unit- or class-clustered SE keeps in its residuals but that
cancels from the estimate:

1. **The category shock.** The crossover example randomises half of *each category* to each
   sequence, so a category's daily shock (the market's ``category_shock_sd``) falls equally on
   both arms.
2. **The spread of the products' own effects.** In these designs every product (or class) is
   in both arms, and with about half its periods treated its contribution to the estimate is
   about its own effect whichever periods are treated: the design holds the products, and so
   the spread of their effects, fixed. A product- or class-clustered SE treats each product's
   contribution as one random draw and counts that spread (elasticities, their modifiers, and
   the products' levels, since the effect on units is level x lift) as sampling noise.

Test: the same runs (validation_study's market, seed, days and periods) with the category shock
off, with every product's lift equal, and with lifts and levels equal. A term that explains the
excess brings the mean SE down to the empirical SD (coverage to about 95%).

    python docs/studies/conservative_se_study.py --runs 400

Writes docs/figures/conservative-se.csv, which validation_study.py renders into validation.md.

Result (2026-11-25, docs/figures/conservative-se.csv; 9 minutes, 1 job beside another study): the
spread of the products' lifts is the cause on the cluster design (`fe` at PT4H: SE / SD 1.11
at the defaults, 0.99 with equal lifts, 0.98 with equal lifts and levels; coverage 0.973 ->
0.943 -> 0.932); on the crossover each term explains a little and none most (`crossover`: 1.06
at the defaults, 1.05 with the shock off, 1.04 with equal lifts, 1.06 with equal lifts and
levels, whose count noise differs).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.ports import EstimatorPlan  # noqa: E402
from lab.compare import CompareConfig, EstimatorChoice, run_comparison, summarise  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.hashseed import pin_hash_seed  # noqa: E402

SEED = 0  # validation_study's
OUT = ROOT / "docs" / "figures" / "conservative-se.csv"
#: (design, period, days) as validation_study runs them
CASES = (
    ("crossover", timedelta(days=1), 28),
    ("cluster", timedelta(hours=4), 14),
)
#: the estimators each case runs: the design's own (None), or the cluster design's as published
#: before class x period clusters (both clustered by class)
ESTIMATORS: dict[str, tuple[str | EstimatorChoice, ...] | None] = {
    "crossover": None,
    "cluster": tuple(EstimatorChoice(EstimatorPlan(n, {"cluster": "class"})) for n in ("fe", "dm")),
}
#: every product's log-lift the same (no idiosyncratic elasticity, no modifiers) ...
EQUAL_LIFT: dict[str, object] = {
    "elasticity_sd": 0.0,
    "elasticity_modifiers": {},
    "effect_modifiers": {},
}
#: ... and every product's mean level the same (the effect still moves with each product's
#: trend, noise and undercuts, which the design does not hold equal)
EQUAL_LEVELS: dict[str, object] = {"mean_units_min": 35.0, "mean_units_max": 35.0}
ARMS: dict[str, dict[str, object]] = {
    "defaults": {},
    "category shock off": {"category_shock_sd": 0.0},
    "equal lifts": EQUAL_LIFT,
    "equal lifts and levels": EQUAL_LIFT | EQUAL_LEVELS,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (an SD needs two runs)")
    pin_hash_seed()  # the cluster design's classes depend on string hashing
    parts = []
    for design, period, days in CASES:
        for arm, overrides in ARMS.items():
            cfg = CompareConfig(
                market=MarketConfig.model_validate(overrides),
                designs=(design,),
                estimators=None if ESTIMATORS[design] is None else {design: ESTIMATORS[design]},
                runs=args.runs,
                seed=SEED,
                jobs=args.jobs,
                days=days,
                period=period,
            )
            tab = summarise(run_comparison(cfg))
            tab = tab.assign(
                period="P1D" if period == timedelta(days=1) else f"PT{period.seconds // 3600}H",
                arm=arm,
                se_ratio=tab["mean_se"] / tab["emp_sd"],
            )
            cols = ["design", "period", "arm", "estimator", "runs", "bias", "bias_mcse"]
            parts.append(tab[[*cols, "mean_se", "emp_sd", "se_ratio", "coverage"]])
            print(parts[-1].to_string(index=False, header=len(parts) == 1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
