"""Adaptive price ladders against fixed ones on the same markets and days (issue #57).

    .venv/bin/python -m lab.studies adaptive-ladder [--runs 100] [--jobs 2]

Each run is one seed: a market of ``products`` products over ``days`` days (its own products,
demand path and design seed: :func:`lab.studies.harness.run_seed`), carryover of order 1
decaying by half (``strong``: order 2 decaying by 0.8), no spillover, unit costs at the world's
share of each base price. On it, the same ladder is played twice (:func:`lab.adaptive.run_ladder`):
fixed at equal allocations, and adaptive with the spec's defaults (``adaptive: {}``: Thompson,
or top-two, on profit; floor 0.05; a uniform share 0.5 t^-0.2; three warmup periods). Both
share every cell's keyed uniform, the market's demand path and its count noise; both are
estimated by the same AIPW (:class:`analysis.adaptive.AdaptiveArms`, the market's carryover
order as its lag, the sequences tightest at the last period).

Worlds: ladders of 3, 4 and 5 prices whose profit optimum (about 1.1 times the list price with
the carryover's steady lift) lies inside their range; the 4-price ladder with strong carryover,
with its optimum above the top price (``edge``: the best arm is the top one), and as an A/A
ladder (four arms at the list price). Scored at every look (after each period from the third
past the lag) and at the end:

- validity: the simultaneous sequences of the k - 1 contrasts with the control covering their
  truths at once (family-wise), at the end and at every look; a run whose sequences ever
  exclude a truth; an A/A run that ever declares a difference;
- value: the profit given up against always pricing the true best arm (expected profit, so
  no count noise), adaptive over fixed on the same runs; the chance that the recommended arm
  (the largest estimated mean) is the true best, and that the sequences single it out.

Saves docs/figures/adaptive-ladder.json and renders the ``adaptive-ladder`` section of
docs/adaptive.md (template ``adaptive_ladder.md.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lab.adaptive import LIVE_DELAY, LadderRun, ladder_market, ladder_spec, run_ladder
from lab.studies.harness import (
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage,
    grid,
    mean_mcse,
    run_seed,
)

SEED = 5700
#: the worlds: the ladder's ratios (the list price, the control, first), unit cost as a share of
#: the base price, the market's carryover order and decay
WORLDS: dict[str, dict[str, Any]] = {
    "3 prices": {"ratios": (1.0, 0.85, 1.15), "cost": 0.733, "order": 1, "decay": 0.5},
    "4 prices": {"ratios": (1.0, 0.85, 1.15, 1.3), "cost": 0.733, "order": 1, "decay": 0.5},
    "5 prices": {"ratios": (1.0, 0.7, 0.85, 1.15, 1.3), "cost": 0.733, "order": 1, "decay": 0.5},
    "4 prices, strong carryover": {
        "ratios": (1.0, 0.85, 1.15, 1.3), "cost": 0.875, "order": 2, "decay": 0.8,
    },
    "4 prices, best at the top": {
        "ratios": (1.0, 0.85, 1.15, 1.3), "cost": 0.9, "order": 1, "decay": 0.5,
    },
    "A/A, 4 arms": {"ratios": (1.0, 1.0, 1.0, 1.0), "cost": 0.733, "order": 1, "decay": 0.5},
}  # fmt: skip
CASES: tuple[Case, ...] = (
    *grid(world=tuple(WORLDS), rule=("thompson",)),
    *grid(world=("4 prices", "A/A, 4 arms"), rule=("top_two",)),
)
#: the issue's targets
TARGETS = {"family": 0.95, "ever": 0.05, "aa": 0.05, "regret_ratio": 0.6}
MODES = ("fixed", "adaptive")


def _flags(x: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in x)


def _score(run: LadderRun) -> dict[str, Any]:
    looks = run.looks
    truth = run.truths()
    miss = (looks.low > truth + 1e-9) | (looks.high < truth - 1e-9)
    family = np.asarray(~miss.any(axis=1))
    pick = np.asarray(looks.recommended() == run.best)
    single = looks.decided() & (looks.best_set.argmax(axis=1) == run.best)
    regret = np.cumsum(run.best_profit - run.earned)[looks.period]
    decided = np.flatnonzero(looks.decided())
    k = run.probabilities.shape[1]
    return {
        "regret": run.regret(),
        "best_total": float(run.best_profit.sum()),
        "covered_end": bool(family[-1]),
        "ever_missed": bool(miss.any()),
        "differs_ever": bool(looks.differs().any()),
        "pick_best": bool(pick[-1]),
        "singled_out": bool(single[-1]),
        "decision_period": int(looks.period[decided[0]]) + 1 if len(decided) else -1,
        "share_best": float(run.probabilities[:, run.best].mean()),
        "min_probability": float(run.probabilities.min()),
        "best": int(run.best),
        "arms": k,
        "looks_cover": _flags(family),
        "looks_pick": _flags(pick),
        "looks_regret": ";".join(f"{v:.1f}" for v in regret),
        "looks_period": ";".join(str(int(p) + 1) for p in looks.period),
    }


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """Run ``run`` of ``case``: the fixed and the adaptive ladder on one market."""
    world = WORLDS[case["world"]]
    products, days = int(settings["products"]) , int(settings["days"])  # fmt: skip
    design_seed = run_seed(SEED + 1, run)
    rows: list[Row] = []
    for mode in MODES:
        adaptive = {"rule": case["rule"]} if mode == "adaptive" else None
        spec = ladder_spec(world["ratios"], products, days, design_seed, adaptive)
        market = ladder_market(
            spec, world["cost"], world["order"], world["decay"],
            seed=run_seed(SEED + 2, run), demand=run_seed(SEED, run),
        )  # fmt: skip
        played = run_ladder(spec, market, lag=world["order"], delay=int(settings.get("delay", 0)))
        rows.append({"mode": mode, **_score(played)})
    return rows


def _per_look(g: pd.DataFrame, column: str) -> list[float]:
    flags = np.array([[c == "1" for c in s] for s in g[column]], dtype=float)
    return [float(v) for v in flags.mean(axis=0)]


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """One row per case and mode (validity and value), the adaptive-over-fixed regret ratio
    on the same runs, and the per-look curves."""
    table, curves = [], []
    for (world, rule), g in rows.groupby(["world", "rule"], sort=False):
        fixed = g[g["mode"] == "fixed"].set_index("run")
        adapt = g[g["mode"] == "adaptive"].set_index("run")
        ratio = (
            float(adapt["regret"].sum() / fixed["regret"].sum())
            if fixed["regret"].sum()
            else math.nan
        )
        # the ratio's Monte-Carlo SE by the delta method over runs
        d = adapt["regret"] - ratio * fixed["regret"]
        ratio_se = float(d.std(ddof=1) / math.sqrt(len(d)) / fixed["regret"].mean()) if fixed["regret"].sum() else math.nan  # fmt: skip
        for mode, m in (("fixed", fixed), ("adaptive", adapt)):
            cov, cov_se = coverage(m["covered_end"])
            ever, ever_se = coverage(m["ever_missed"])
            differs, differs_se = coverage(m["differs_ever"])
            pick, pick_se = coverage(m["pick_best"])
            single, _ = coverage(m["singled_out"])
            regret, regret_se = mean_mcse(m["regret"] / m["best_total"])
            looks_cover = _per_look(m, "looks_cover")
            decided = m["decision_period"][m["decision_period"] > 0]
            table.append(
                {
                    "world": world, "rule": rule, "mode": mode, "runs": len(m),
                    "family_end": cov, "family_end_se": cov_se,
                    "family_worst_look": min(looks_cover),
                    "ever_missed": ever, "ever_missed_se": ever_se,
                    "differs": differs, "differs_se": differs_se,
                    "pick_best": pick, "pick_best_se": pick_se, "singled_out": single,
                    "regret_pct": 100 * regret, "regret_pct_se": 100 * regret_se,
                    "regret_ratio": ratio if mode == "adaptive" else 1.0,
                    "regret_ratio_se": ratio_se if mode == "adaptive" else 0.0,
                    "share_best": float(m["share_best"].mean()),
                    "min_probability": float(m["min_probability"].min()),
                    "decision_period": float(decided.median()) if len(decided) else math.nan,
                    "decided": float((m["decision_period"] > 0).mean()),
                }
            )  # fmt: skip
            periods = [int(p) for p in m["looks_period"].iloc[0].split(";")]
            regret_looks = np.array([[float(v) for v in s.split(";")] for s in m["looks_regret"]])
            curves.append(
                {
                    "world": world, "rule": rule, "mode": mode, "period": periods,
                    "family": looks_cover, "pick_best": _per_look(m, "looks_pick"),
                    "regret": [float(v) for v in regret_looks.mean(axis=0)],
                }
            )  # fmt: skip
    return {
        "cases": table,
        "looks": curves,
        "runs": run.runs,
        "seconds": float(sum(run.seconds)),
        "products": int(run.options["products"]),
        "days": int(run.options["days"]),
        "delay": int(run.options.get("delay", 0)),
        "targets": TARGETS,
    }


def context(results: Results) -> dict[str, Any]:
    assert isinstance(results, dict)
    looks = {(c["world"], c["rule"], c["mode"]): c for c in results["looks"]}
    marks = []
    for c in results["looks"]:
        if c["mode"] != "adaptive":
            continue
        fixed = looks[(c["world"], c["rule"], "fixed")]
        n = len(c["period"])
        for j in sorted({n // 4, n // 2, (3 * n) // 4, n - 1}):
            marks.append(
                {
                    "world": c["world"], "rule": c["rule"], "period": c["period"][j],
                    "family_fixed": fixed["family"][j], "family_adaptive": c["family"][j],
                    "pick_fixed": fixed["pick_best"][j], "pick_adaptive": c["pick_best"][j],
                    "regret_ratio": c["regret"][j] / fixed["regret"][j] if fixed["regret"][j] else math.nan,
                }
            )  # fmt: skip
    by = {f"{c['world']}|{c['rule']}|{c['mode']}": c for c in results["cases"]}
    return {**results, "marks": marks, "by": by}


def held_cells(run: LadderRun, lag: int) -> np.ndarray:
    """Each arm's expected cells per period on a held path (the window's arms all that arm):
    the products times the product of the window's probabilities, at its lowest period."""
    p = run.probabilities
    t = p.shape[0]
    path = np.ones((t - lag, p.shape[1]))
    for j in range(lag + 1):
        path *= p[j : t - lag + j]
    return np.asarray(run.panel.shape[0] * path.min(axis=0))


#: the diagnosis of the misses: the adaptive ladder alone, on the worlds where its sequences
#: missed most, at the study's products and at four times as many
CELL_CASES: tuple[Case, ...] = grid(world=("5 prices", "4 prices, strong carryover"), scale=(1, 4))


def run_cells(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """Run ``run`` of the adaptive ladder of ``case`` at ``scale`` times the products: whether
    each arm's sequence ever missed, from which side, and its expected held-path cells."""
    world = WORLDS[case["world"]]
    products = int(settings["products"]) * int(case["scale"])
    spec = ladder_spec(
        world["ratios"], products, int(settings["days"]), run_seed(SEED + 1, run), {}
    )
    market = ladder_market(
        spec, world["cost"], world["order"], world["decay"],
        seed=run_seed(SEED + 2, run), demand=run_seed(SEED, run),
    )  # fmt: skip
    ladder = run_ladder(spec, market, lag=world["order"], delay=int(settings.get("delay", 0)))
    looks, truth = ladder.looks, ladder.truths()
    miss = (looks.low > truth + 1e-9) | (looks.high < truth - 1e-9)
    cells = held_cells(ladder, world["order"])
    high = ((looks.effect - truth) > 0) & miss
    return [
        {"arm": a, "ratio": world["ratios"][a], "missed": bool(miss[:, a].any()),
         "missed_high": bool(high[:, a].any()), "held_cells": float(cells[a]),
         "products": products}
        for a in range(1, len(world["ratios"]))
    ]  # fmt: skip


def summarise_cells(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """Per world and scale: runs whose sequences ever missed, and per arm its misses, the
    share of them from above, and its held-path cells (median over runs)."""
    out = []
    for (world, _scale), g in rows.groupby(["world", "scale"], sort=False):
        ever, ever_se = coverage(g.groupby("run")["missed"].any())
        arms = [
            {"ratio": float(a["ratio"].iloc[0]), "missed": float(a["missed"].mean()),
             "from_above": float(a["missed_high"].sum() / max(int(a["missed"].sum()), 1)),
             "held_cells": float(a["held_cells"].median())}
            for _, a in g.groupby("arm")
        ]  # fmt: skip
        out.append(
            {"world": world, "products": int(g["products"].iloc[0]), "ever_missed": ever,
             "ever_missed_se": ever_se, "arms": arms}
        )  # fmt: skip
    return {"cases": out, "runs": run.runs, "seconds": float(sum(run.seconds)),
            "delay": int(run.options.get("delay", 0))}  # fmt: skip


STUDY = Study(
    name="adaptive-ladder",
    cases=CASES,
    run_one=run_one,
    summarise=summarise,
    results="adaptive-ladder.json",
    runs=100,
    seed=SEED,
    # the live path's delay (lab.adaptive.LIVE_DELAY: a period steered by the look of the
    # periods before the last); ``--set delay=0`` plays the loop one period faster
    options={"products": 80, "days": 28, "delay": LIVE_DELAY},
    page=Page("docs/adaptive.md", "adaptive_ladder.md.j2", section="adaptive-ladder"),
    context=context,
)

CELLS = Study(
    name="adaptive-ladder-cells",
    cases=CELL_CASES,
    run_one=run_cells,
    summarise=summarise_cells,
    results="adaptive-ladder-cells.json",
    runs=100,
    seed=SEED,
    options={"products": 80, "days": 28, "delay": LIVE_DELAY},
    page=Page("docs/adaptive.md", "adaptive_ladder_cells.md.j2", section="adaptive-ladder-cells"),
)
