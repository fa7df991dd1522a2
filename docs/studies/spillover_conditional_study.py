"""Finding 3 of issue #27, taken apart: random days' spillover direct effect with the outcomes
held fixed and the design redrawn.

    .venv/bin/python docs/studies/spillover_conditional_study.py [--worlds 30] [--draws 20]

A world is one draw of what the design does not randomise: the planted substitutes graph, the
products' levels and each period's noise (``spillover_worker_study``'s market, seeds from 500
on, which that study does not use). In each world the random-days design is redrawn
``--draws`` times (the spec's seed) and the worker's own spillover path
(``AnalysisWorker._spillover``) fits each; every contrast it publishes is recorded (direct,
spillover_control:any, spillover_treated:any). Within a world the spread of the estimate is the
design's alone, the variance the published SE estimates; across worlds, the worlds' mean
errors (the estimator's conditional bias) would add a part the SE does not see, the same in
every period of a world, which averaging over periods cannot shrink: the suspected cause of
the SE's shortfall (mean SE / SD 0.89 in the 400-run study).

Writes docs/figures/spillover-random-days-conditional.json; validation_study.py --render-only
puts it into docs/validation.md (finding 3).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "studies"))

import spillover_worker_study as worker_study  # noqa: E402

from analysis.pricing_dgp import planted_substitute_graph  # noqa: E402
from analysis.worker import AnalysisWorker  # noqa: E402
from controller.panel_source import experiment_info  # noqa: E402
from controller.spec import ExperimentSpec  # noqa: E402

TRUTHS = worker_study.TRUTH
FIRST_WORLD = 500

#: (error, se, interval low, interval high) of one published contrast in one design draw
Fit = tuple[float, float, float, float]


def one_world(world: int, draws: int) -> dict[str, list[Fit]]:
    """Each published contrast's fit for each design draw in one world."""
    graph, _ = planted_substitute_graph(3, category_size=(25, 35), seed=world)
    nodes = sorted(graph.nodes)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    level = np.random.default_rng([world, 1]).normal(20.0, 3.0, size=len(nodes))
    out: dict[str, list[Fit]] = {c: [] for c in TRUTHS}
    for d in range(draws):
        spec = ExperimentSpec(
            id=f"w{world}-{d}",
            design="random-days",
            treatment_policy="t",
            control_policy="c",
            start=start,
            end=start + timedelta(days=worker_study.PERIODS),
            seed=10_000 * world + d,
            substitutes=tuple((a, b, 1.0) for a, b in graph.edges()),
            products=tuple(nodes),
        )
        # the noise is the world's: seeded by world and period, not by the design draw
        panel = worker_study.spillover_panel(spec, graph, nodes, level, noise_seed=world)
        worker = AnalysisWorker(source=None, sink=None, clock=None, seed=world)  # type: ignore[arg-type]
        published = {
            r.method: r for r in worker._spillover(experiment_info(spec, "running"), panel)
        }
        for contrast, truth in TRUTHS.items():
            r = published[f"spillover_ipw:{contrast}"]
            lo, hi = r.conf_int()
            out[contrast].append((r.effect - truth, r.se, lo, hi))
    return out


def summarise(res: list[list[Fit]], truth: float) -> dict[str, float]:
    E = np.array([[x[0] for x in w] for w in res])
    SE = np.array([[x[1] for x in w] for w in res])
    covered = np.array([[x[2] <= truth <= x[3] for x in w] for w in res])
    n_w, n_d = E.shape
    within_var = float(E.var(axis=1, ddof=1).mean())
    bias = E.mean(axis=1)
    bias_sd = float(bias.std(ddof=1))
    # the part of the worlds' bias spread that the draws' own noise explains
    mc_part = math.sqrt(within_var / n_d)
    between_var = max(bias_sd**2 - mc_part**2, 0.0)
    cov = float(covered.mean())
    return {
        "worlds": n_w,
        "draws": n_d,
        "mean_se": float(SE.mean()),
        "within_sd": math.sqrt(within_var),
        "se_over_within_sd": float(SE.mean()) / math.sqrt(within_var),
        "bias": float(E.mean()),
        "bias_mcse": float(bias_sd / math.sqrt(n_w)),
        "world_bias_sd": bias_sd,
        "world_bias_sd_from_draws": mc_part,
        "between_share": between_var / (between_var + within_var),
        "total_sd": float(E.std(ddof=1)),
        "se_over_total_sd": float(SE.mean() / E.std(ddof=1)),
        "coverage": cov,
        "coverage_mcse": math.sqrt(cov * (1 - cov) / E.size),
    }


#: each exposure's effect in the planted outcomes (simulate_spillover_outcomes' defaults), in
#: ExposureMapping's order: (C, none), (C, any), (T, none), (T, any)
EXPOSURE_EFFECTS = np.array([0.0, -1.0, 2.0, 1.5])
#: each contrast's exposures (k, reference) in that order
CONTRAST_EXPOSURES = {
    "direct": (2, 0),
    "spillover_control:any": (1, 0),
    "spillover_treated:any": (3, 2),
}


def hajek_world(world: int, draws: int) -> dict[str, np.ndarray]:
    """One world's Hajek error per contrast and design draw, in one period, with the exact
    exposure probabilities of random days' independent coins (no Monte Carlo in the weights)
    and the worker's trimming: the world's products, levels and graph fixed, the coins and
    the outcome noise drawn afresh ``draws`` times."""
    from analysis.spillover import (
        ExposureMapping,
        _hajek,
        adjacency,
        bernoulli_exposure_probabilities,
    )

    graph, _ = planted_substitute_graph(3, category_size=(25, 35), seed=world)
    nodes = sorted(graph.nodes)
    n = len(nodes)
    level = np.random.default_rng([world, 1]).normal(20.0, 3.0, size=n)
    mapping = ExposureMapping()
    pi = bernoulli_exposure_probabilities(graph, nodes=nodes, mapping=mapping).to_numpy()
    usable = pi >= 0.02  # the worker's min_probability
    inv = np.divide(1.0, pi, out=np.zeros_like(pi), where=pi > 0)
    A, deg = adjacency(graph, nodes)
    rng = np.random.default_rng([world, 2])
    E = mapping.exposures(A, deg, rng.uniform(size=(draws, n)) < 0.5)
    Y = level[None, :] + EXPOSURE_EFFECTS[E] + rng.normal(0.0, 1.0, size=(draws, n))
    out = {}
    for c, (k, ref) in CONTRAST_EXPOSURES.items():
        ok = usable[:, k] & usable[:, ref]
        est = _hajek(Y, E, k, inv[:, k], ok) - _hajek(Y, E, ref, inv[:, ref], ok)
        out[c] = est - (EXPOSURE_EFFECTS[k] - EXPOSURE_EFFECTS[ref])
    return out


def summarise_hajek(res: list[np.ndarray], periods: int) -> dict[str, float]:
    """Worlds x draws errors: the worlds' conditional bias (its SD net of the draws' own
    noise), the one-period design SD, and the share of an experiment's variance over
    ``periods`` independent periods that the conditional bias, shared by them, makes up."""
    M = np.stack(res)  # worlds x draws
    draws = np.isfinite(M).sum(axis=1)
    within = float(np.nanmean(np.nanvar(M, axis=1, ddof=1)))
    world_bias = np.nanmean(M, axis=1)
    between = max(float(np.var(world_bias, ddof=1)) - within / float(draws.mean()), 0.0)
    return {
        "bias": float(np.nanmean(M)),
        "bias_mcse": float(np.std(world_bias, ddof=1) / math.sqrt(len(res))),
        "world_bias_sd": math.sqrt(between),
        "period_sd": math.sqrt(within),
        "between_share": between / (between + within / periods),
        "missing": int(np.isnan(M).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", type=int, default=30)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--hajek-worlds", type=int, default=200)
    ap.add_argument("--hajek-draws", type=int, default=4000)
    ap.add_argument(
        "--hajek-only",
        action="store_true",
        help="recompute the exact Hajek part only, keeping the saved worker-path figures",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    path = args.out / "figures" / "spillover-random-days-conditional.json"
    t0 = time.perf_counter()
    hajek_worlds = range(FIRST_WORLD, FIRST_WORLD + args.hajek_worlds)
    with ProcessPoolExecutor(args.jobs) as pool:
        exact = list(pool.map(hajek_world, hajek_worlds, [args.hajek_draws] * args.hajek_worlds))
        hajek_minutes = (time.perf_counter() - t0) / 60
        if args.hajek_only:
            out = json.loads(path.read_text())
        else:
            worlds = range(FIRST_WORLD, FIRST_WORLD + args.worlds)
            res = list(pool.map(one_world, worlds, [args.draws] * args.worlds))
            # the direct effect's figures at the top level, as before; all under "contrasts"
            contrasts = {c: summarise([w[c] for w in res], t) for c, t in TRUTHS.items()}
            out = contrasts["direct"] | {
                "contrasts": contrasts,
                "minutes": (time.perf_counter() - t0) / 60 - hajek_minutes,
            }
    out["hajek"] = {
        "worlds": args.hajek_worlds,
        "draws": args.hajek_draws,
        "periods": worker_study.PERIODS,
        "minutes": hajek_minutes,
        "contrasts": {
            c: summarise_hajek([w[c] for w in exact], worker_study.PERIODS)
            for c in CONTRAST_EXPOSURES
        },
    }
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
