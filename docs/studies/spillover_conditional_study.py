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
errors (the estimator's conditional bias) add a part the SE does not see, the same in every
period of a world, which averaging over periods cannot shrink.

The exact part (``hajek_world``) measures that part for one period of raw outcomes, with the
exact exposure probabilities (and with the worker's Monte-Carlo ones): the cause of the SE's
shortfall on raw outcomes, before the worker netted each product's level out of its outcomes
(``analysis.spillover.past_levels``).

Writes docs/figures/spillover-random-days-conditional.json; validation_study.py --render-only
puts it into docs/validation.md (finding 3).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "studies"))

import spillover_worker_study as worker_study  # noqa: E402

from analysis.pricing_dgp import planted_substitute_graph, simulate_spillover_outcomes  # noqa: E402
from analysis.spillover import design_spillover  # noqa: E402
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


def share_mcse(spread: float, worlds: int, total: float) -> float:
    """MC SE of a between-world share: the worlds' mean errors' sample variance ``spread``
    over ``worlds`` worlds has SE about spread * sqrt(2 / (worlds - 1)); the share divides
    it by the ``total`` variance."""
    return spread * math.sqrt(2.0 / (worlds - 1)) / total


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
        "between_share_mcse": share_mcse(bias_sd**2, n_w, between_var + within_var),
        "total_sd": float(E.std(ddof=1)),
        "se_over_total_sd": float(SE.mean() / E.std(ddof=1)),
        "coverage": cov,
        "coverage_mcse": math.sqrt(cov * (1 - cov) / E.size),
    }


#: each exposure's effect in the planted outcomes (simulate_spillover_outcomes' defaults, which
#: the worker study's panels use), in ExposureMapping's order: (C, none), (C, any), (T, none),
#: (T, any)
_PLANTED = inspect.signature(simulate_spillover_outcomes).parameters
EXPOSURE_EFFECTS = np.array(
    [
        0.0,
        _PLANTED["spill_control"].default,
        _PLANTED["direct"].default,
        _PLANTED["direct"].default + _PLANTED["spill_treated"].default,
    ]
)
#: each contrast's exposures (k, reference) in that order
CONTRAST_EXPOSURES = {
    "direct": (2, 0),
    "spillover_control:any": (1, 0),
    "spillover_treated:any": (3, 2),
}


#: what the worker-path figures were measured on (validation_study renders only these)
WORKER_PATH = "levels netted out (analysis.spillover.past_levels)"

#: the design draws the worker's Monte-Carlo exposure probabilities rest on (design_spillover)
WORKER_PROBABILITY_DRAWS = inspect.signature(design_spillover).parameters["n_draws"].default


def hajek_world(world: int, draws: int, estimates: int = 40) -> dict[str, np.ndarray]:
    """One world's Hajek error per contrast and design draw, in one period: the world's
    products, levels and graph fixed, the coins and the outcome noise drawn afresh ``draws``
    times, with the worker's trimming (min_probability 0.02). Row 0 weights by the exact
    exposure probabilities of random days' independent coins; row 1 by Monte-Carlo
    frequencies over ``WORKER_PROBABILITY_DRAWS`` design draws, as the worker estimates them
    afresh in each period (``estimates`` such estimates, each used for an equal share of the
    draws)."""
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
    exact = bernoulli_exposure_probabilities(graph, nodes=nodes, mapping=mapping).to_numpy()
    A, deg = adjacency(graph, nodes)
    rng = np.random.default_rng([world, 2])
    E = mapping.exposures(A, deg, rng.uniform(size=(draws, n)) < 0.5)
    Y = level[None, :] + EXPOSURE_EFFECTS[E] + rng.normal(0.0, 1.0, size=(draws, n))
    K = exact.shape[1]
    shares = np.array_split(np.arange(draws), estimates)
    monte_carlo = []
    for _ in shares:
        Ed = mapping.exposures(
            A, deg, rng.uniform(size=(WORKER_PROBABILITY_DRAWS, n)) < 0.5
        )  # one period's estimate
        monte_carlo.append(np.stack([(Ed == k).mean(axis=0) for k in range(K)], axis=1))
    out = {c: np.full((2, draws), np.nan) for c in CONTRAST_EXPOSURES}
    for row, pis in enumerate(([exact] * len(shares), monte_carlo)):
        for idx, pi in zip(shares, pis, strict=True):
            usable = pi >= 0.02  # the worker's min_probability
            inv = np.divide(1.0, pi, out=np.zeros_like(pi), where=pi > 0)
            for c, (k, ref) in CONTRAST_EXPOSURES.items():
                ok = usable[:, k] & usable[:, ref]
                est = _hajek(Y[idx], E[idx], k, inv[:, k], ok) - _hajek(
                    Y[idx], E[idx], ref, inv[:, ref], ok
                )
                out[c][row, idx] = est - (EXPOSURE_EFFECTS[k] - EXPOSURE_EFFECTS[ref])
    return out


def summarise_hajek(res: list[np.ndarray], periods: int) -> dict[str, float]:
    """Worlds x draws errors: the worlds' conditional bias (its SD net of the draws' own
    noise), the one-period design SD, and the share of an experiment's variance over
    ``periods`` independent periods that the conditional bias, shared by them, makes up."""
    M = np.stack(res)  # worlds x draws
    draws = np.isfinite(M).sum(axis=1)
    within = float(np.nanmean(np.nanvar(M, axis=1, ddof=1)))
    world_bias = np.nanmean(M, axis=1)
    spread = float(np.var(world_bias, ddof=1))
    between = max(spread - within / float(draws.mean()), 0.0)
    total = between + within / periods
    return {
        "bias": float(np.nanmean(M)),
        "bias_mcse": float(np.std(world_bias, ddof=1) / math.sqrt(len(res))),
        "world_bias_sd": math.sqrt(between),
        "period_sd": math.sqrt(within),
        "between_share": between / total,
        "between_share_mcse": share_mcse(spread, len(res), total),
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
            for c in out.get("contrasts", {}).values():  # saved before the MC SE was
                spread, noise = c["world_bias_sd"] ** 2, c["world_bias_sd_from_draws"] ** 2
                total = c["within_sd"] ** 2 + max(spread - noise, 0.0)
                c.setdefault("between_share_mcse", share_mcse(spread, c["worlds"], total))
        else:
            worlds = range(FIRST_WORLD, FIRST_WORLD + args.worlds)
            res = list(pool.map(one_world, worlds, [args.draws] * args.worlds))
            # the direct effect's figures at the top level, as before; all under "contrasts"
            contrasts = {c: summarise([w[c] for w in res], t) for c, t in TRUTHS.items()}
            out = contrasts["direct"] | {
                "contrasts": contrasts,
                "path": WORKER_PATH,
                "minutes": (time.perf_counter() - t0) / 60 - hajek_minutes,
            }
    out["hajek"] = {
        "worlds": args.hajek_worlds,
        "draws": args.hajek_draws,
        "periods": worker_study.PERIODS,
        "probability_draws": WORKER_PROBABILITY_DRAWS,
        "minutes": hajek_minutes,
        "contrasts": {
            c: {
                kind: summarise_hajek([w[c][row] for w in exact], worker_study.PERIODS)
                for row, kind in enumerate(("exact", "monte_carlo"))
            }
            for c in CONTRAST_EXPOSURES
        },
    }
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
