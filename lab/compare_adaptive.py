"""``compare-designs --ladder R --adaptive``: each design's example ladder played fixed and
adaptive on the same markets, seeds and days (issue #57).

Each run is one demand path of the comparison's market (as :func:`lab.compare.simulate_run`'s);
on it every chosen design's example ladder (:func:`lab.compare.make_spec`, the arms of
``--ladder``) is played adaptive, with the spec's defaults (``adaptive: {}``: Thompson on the
decision metric, profit with the market's unit costs; floor 0.05; the MAD mixture; warmup 3),
as the live path plays it (:func:`lab.simulate_adaptive.run_adaptive_spec`, the look of periods
``0 .. t - 2`` steering period t), and fixed (the same spec's draw at its equal allocations: the
same keyed uniforms). Both are scored the same way, against the market's truth:

- ``regret``: the expected profit given up against every product at the true best arm
  throughout (free of the count noise), in % of that profit; the ratio adaptive / fixed over
  the same runs, with its Monte-Carlo SE by the delta method;
- ``picks_best``: the arm with the largest estimated mean at the end (the AIPW of
  :mod:`analysis.adaptive` on the recorded probabilities, what the analysis worker's look
  recommends; for the fixed ladder the same estimator at its fixed probabilities) is the true
  best;
- ``singled_out`` and ``decided_period``: the share of runs whose simultaneous anytime-valid
  sequences leave only the true best arm in the best set by the end, and the median period
  (1-based) where they first leave one arm, among the runs where they do. This is the sequences' own decision, not the analysis
  worker's verdict (which also weighs guardrails and the MDE's projection): the verdict is not
  replayed here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.adaptive_live import carryover, fit_ladder, ladder_cells
from controller.adaptive import ADAPTIVE_DESIGNS, adaptive_step, floor_for
from controller.designs import design_of
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import AdaptiveAllocation, ExperimentSpec, load_spec
from lab.compare import CompareConfig, check_config, make_spec, play_runs
from lab.errors import LabError
from lab.market import Market
from lab.price import ladder_market
from lab.seeds import run_seed
from lab.simulate import SimulatedExperiment
from lab.simulate_adaptive import run_adaptive_spec

MODES = ("fixed", "adaptive")


def check_adaptive(cfg: CompareConfig) -> None:
    """LabError unless ``cfg`` can be compared adaptive: a ladder, designs that can adapt."""
    check_config(cfg)
    if cfg.ladder is None:
        raise LabError("--adaptive needs --ladder: only a price ladder's arms can adapt")
    cannot = [d for d in cfg.designs if d not in ADAPTIVE_DESIGNS]
    if cannot:
        raise LabError(
            f"--adaptive runs only designs that draw an arm per product-period "
            f"({', '.join(sorted(ADAPTIVE_DESIGNS))}); {', '.join(cannot)} cannot adapt"
        )


def adaptive_of(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` with the spec's default adaptive block, its floor raised to the least the
    spec's check takes for these products (or classes) and this carryover when the default's
    0.05 is refused (``controller.adaptive.floor_for``; the row's ``floor`` says which ran)."""
    defaults = AdaptiveAllocation()
    block: dict[str, Any] = {}
    units, _, draws = spec.held_terms()
    step = adaptive_step(defaults, n_periods(spec) - 1)
    if step >= 1:
        need = floor_for(defaults, spec.n_arms, units, draws, step)
        if need is not None and need > defaults.floor:
            block = {"floor": need}
    data = spec.model_dump(mode="json", exclude_none=True) | {"adaptive": block}
    try:
        return load_spec(data)
    except SpecError as exc:
        raise LabError(f"the {spec.design} example cannot adapt: {exc}") from None


def _score(sim: SimulatedExperiment, probabilities: np.ndarray) -> dict[str, Any]:
    """The final look's recommended arm and the first period the sequences single one out."""
    cells = sim.panel[["product", "period", "arm", "units", "revenue", "profit", "blackout"]]
    return score_ladder(sim.spec, cells, probabilities)


def score_ladder(
    spec: ExperimentSpec,
    cells: pd.DataFrame,
    probabilities: np.ndarray,
    *,
    metric: str | None = None,
) -> dict[str, Any]:
    """The analysis worker's AIPW sequences (:func:`analysis.adaptive_live.fit_ladder`) on a
    ladder's cell table (product, period, arm, blackout, the metrics) drawn with
    ``probabilities`` (periods x arms), on the spec's adaptive metric: the end's largest
    estimated mean (``recommended``), the one arm the sequences leave at the end
    (``singled_out``, -1: more than one) and the first period (1-based) at which they leave
    one (``decided_period``, NaN: none) with that arm (``first_singled_out``, -1: none); ``metric``: the column to read (default the spec's
    adaptive metric). ``pricelab compare-designs --adaptive`` and ``pricelab plan
    --arm-effects`` both score with it."""
    names = [a.name for a in spec.arm_list()]
    metric = str(spec.adaptive_metric()) if metric is None else metric
    lag, points = carryover(design_of(spec).estimators(spec))
    recorded = {t: tuple(p) for t, p in enumerate(probabilities.tolist())}
    ladder = ladder_cells(cells, names, recorded, lag, points)
    fit = fit_ladder(ladder, metric, names, spec.control_index, lag=lag, horizon=len(probabilities))
    looks = fit.estimator.looks_
    decided = np.flatnonzero(looks.decided())
    return {
        "recommended": int(looks.recommended()[-1]),
        # the one arm the sequences leave at the end (-1: more than one)
        "singled_out": int(looks.best_set[-1].argmax()) if looks.decided()[-1] else -1,
        "decided_period": int(looks.period[decided[0]]) + 1 if len(decided) else math.nan,
        # the arm they leave there (-1: none)
        "first_singled_out": int(looks.best_set[decided[0]].argmax()) if len(decided) else -1,
    }


def adaptive_run(
    cfg: CompareConfig, run: int, classes: dict[str, tuple[str, ...]]
) -> list[dict[str, Any]]:
    """One run: every design's example ladder fixed and adaptive on one demand path."""
    assert cfg.ladder is not None
    market = Market(cfg.market, seed=cfg.seed, demand_seed=run_seed(cfg.seed, run))
    rows: list[dict[str, Any]] = []
    for design in cfg.designs:
        spec = adaptive_of(
            make_spec(
                design, market, days=cfg.days, period=cfg.period,
                seed=run_seed(cfg.seed + 1, run), classes=classes, ladder=cfg.ladder,
            )
        )  # fmt: skip
        played = run_adaptive_spec(spec, market)
        allocations = np.tile(spec.allocations(), (len(played.decisions), 1))
        names = [a.name for a in spec.arm_list()]
        floor = spec.adaptive.floor if spec.adaptive is not None else math.nan
        for mode, sim, probs, regret in (
            ("fixed", played.fixed, allocations, played.fixed_regret),
            ("adaptive", played.sim, played.probabilities, played.regret),
        ):
            score = _score(sim, probs)
            rows.append(
                {
                    "design": design, "mode": mode, "run": run, "metric": played.metric,
                    "best": names[played.best], "optimum": played.optimum, "regret": regret,
                    "picks_best": score["recommended"] == played.best,
                    "singled_out": score["singled_out"] == played.best,
                    "decided_period": score["decided_period"],
                    "best_share": float(probs[:, played.best].mean()),
                    "floor": floor if mode == "adaptive" else math.nan,
                }
            )  # fmt: skip
    return rows


def _chunk(args: tuple[CompareConfig, list[int], dict[str, tuple[str, ...]]]) -> list[Any]:
    from threadpoolctl import threadpool_limits

    cfg, runs, classes = args
    with threadpool_limits(1):
        return [row for r in runs for row in adaptive_run(cfg, r, classes)]


def run_adaptive_comparison(cfg: CompareConfig) -> pd.DataFrame:
    """Every run of every design, fixed and adaptive: one row each (:func:`adaptive_run`)."""
    check_adaptive(cfg)
    cfg = replace(cfg, market=ladder_market(cfg.market, "a price ladder"))
    rows = play_runs(cfg, _chunk)
    return pd.DataFrame(rows).sort_values(["design", "mode", "run"]).reset_index(drop=True)


def regret_ratio(adaptive: np.ndarray, fixed: np.ndarray) -> tuple[float, float]:
    """The adaptive ladder's regret over the fixed one's, summed over the same runs, and its
    Monte-Carlo SE by the delta method (NaN, NaN when the fixed ladder gave up nothing)."""
    if fixed.sum() <= 0:
        return math.nan, math.nan
    ratio = float(adaptive.sum() / fixed.sum())
    d = adaptive - ratio * fixed
    return ratio, float(d.std(ddof=1) / math.sqrt(len(d)) / fixed.mean())


def summarise_adaptive(runs: pd.DataFrame) -> pd.DataFrame:
    """Per design and mode: regret in % of the optimum (and its Monte-Carlo SE), the regret
    ratio adaptive / fixed over the same runs (delta-method SE), the share picking the true
    best arm, singling it out, the median period of singling out, the best arm's mean share."""
    out = []
    for design, g in runs.groupby("design", sort=False):
        fixed = g[g["mode"] == "fixed"].set_index("run")
        adapt = g[g["mode"] == "adaptive"].set_index("run").loc[fixed.index]
        ratio, ratio_se = regret_ratio(
            adapt["regret"].to_numpy(float), fixed["regret"].to_numpy(float)
        )
        for mode, m in (("fixed", fixed), ("adaptive", adapt)):
            share = 100 * m["regret"].to_numpy(float) / m["optimum"].to_numpy(float)
            n = len(m)
            picks = float(m["picks_best"].mean())
            out.append(
                {
                    "design": design, "mode": mode, "runs": n, "metric": m["metric"].iloc[0],
                    "regret_pct": float(share.mean()),
                    "regret_pct_se": float(share.std(ddof=1) / math.sqrt(n)),
                    "regret_ratio": 1.0 if mode == "fixed" else ratio,
                    "regret_ratio_se": 0.0 if mode == "fixed" else ratio_se,
                    "picks_best": picks,
                    "picks_best_se": math.sqrt(picks * (1 - picks) / n),
                    "singled_out": float(m["singled_out"].mean()),
                    "decided_period": float(m["decided_period"].median()),
                    "best_share": float(m["best_share"].mean()),
                }
            )  # fmt: skip
    return pd.DataFrame(out)


def format_adaptive(table: pd.DataFrame) -> str:
    """The summary as a fixed-width text table, with its legend."""
    cols = [
        ("design", "{}", 18), ("mode", "{}", 8), ("runs", "{:d}", 5), ("metric", "{}", 7),
        ("regret_pct", "{:.2f}", 10), ("regret_pct_se", "{:.2f}", 6),
        ("regret_ratio", "{:.2f}", 12), ("regret_ratio_se", "{:.2f}", 6),
        ("picks_best", "{:.1%}", 10), ("picks_best_se", "{:.1%}", 6),
        ("singled_out", "{:.1%}", 11), ("decided_period", "{:.0f}", 14),
        ("best_share", "{:.1%}", 10),
    ]  # fmt: skip
    heads = {"regret_pct_se": "(se)", "regret_ratio_se": "(se)", "picks_best_se": "(se)"}
    lines = [" ".join(f"{heads.get(c, c):>{w}}" for c, _, w in cols)]
    for _, r in table.iterrows():
        cells = []
        for c, f, w in cols:
            v = r[c]
            text = "-" if isinstance(v, float) and not math.isfinite(v) else f.format(
                int(v) if f == "{:d}" else v
            )  # fmt: skip
            cells.append(f"{text:>{w}}")
        lines.append(" ".join(cells))
    lines.append(ADAPTIVE_LEGEND)
    return "\n".join(lines)


ADAPTIVE_LEGEND = (
    "each design's example ladder played fixed (equal shares) and adaptive (the spec's "
    "defaults: Thompson on the metric, warmup 3, the look of periods 0..t-2 steering period "
    "t, as live) on the same markets, seeds and days; regret_pct: expected metric given up "
    "against every product at the true best arm throughout, in % of it; regret_ratio: "
    "adaptive over fixed on the same runs; picks_best: the largest AIPW estimated mean at the "
    "end is the true best arm; singled_out: the simultaneous anytime-valid sequences leave "
    "only that arm by the end, decided_period the median period they first leave one arm (the sequences' "
    "decision, not the worker's verdict, which is not replayed); best_share: the true best "
    "arm's mean probability"
)


__all__ = [
    "ADAPTIVE_LEGEND",
    "MODES",
    "adaptive_of",
    "adaptive_run",
    "check_adaptive",
    "format_adaptive",
    "run_adaptive_comparison",
    "regret_ratio",
    "score_ladder",
    "summarise_adaptive",
]
