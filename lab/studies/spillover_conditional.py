"""Finding 3 of issue #27, taken apart: random days' spillover direct effect with the outcomes
held fixed and the design redrawn.

    .venv/bin/python -m lab.studies spillover-conditional [--set worlds=30] [--set draws=20]

A world is one draw of what the design does not randomise: the planted substitutes graph, the
products' levels and each period's noise (:mod:`lab.studies.spillover_worker`'s market, worlds
from 500 on: run r is world 500 + r). In each world (case ``worker``, ``worlds`` runs) the
random-days design is redrawn ``draws`` times (the spec's seed) and the worker's own spillover
path (``AnalysisWorker.spillover_estimates``) fits each; every contrast it publishes is recorded
(direct, spillover_control:any, spillover_treated:any). Within a world the spread of the
estimate is the design's alone, the variance the published SE estimates; across worlds, the
worlds' mean errors (the estimator's conditional bias) add a part the SE does not see, the same
in every period of a world, which averaging over periods cannot shrink.

The exact part (case ``hajek``, ``hajek_worlds`` runs of ``hajek_draws`` draws) measures that
part for one period of raw outcomes, with the exact exposure probabilities (and with the
worker's Monte-Carlo ones): the cause of the SE's shortfall on raw outcomes, before the worker
netted each product's level out of its outcomes (``analysis.spillover.past_levels``).

Saves docs/figures/spillover-random-days-conditional.json (``minutes``: each part's computing
time) and re-renders docs/validation.md (finding 3) from the saved tables.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analysis.pricing_dgp import planted_substitute_graph, simulate_spillover_outcomes
from analysis.results import EstimateResult
from analysis.spillover import (
    ExposureMapping,
    adjacency,
    bernoulli_exposure_probabilities,
    design_spillover,
    hajek_means,
)
from analysis.worker import AnalysisWorker
from controller.panel_source import experiment_info
from controller.spec import ExperimentSpec
from lab.studies import spillover_worker as worker_study
from lab.studies.harness import Case, Row, Run, Study, coverage

TRUTHS = worker_study.TRUTH
FIRST_WORLD = 500


def one_world(world: int, draws: int) -> list[Row]:
    """Each published contrast's fit (error, SE, interval) for each design draw in one
    world."""
    graph, _ = planted_substitute_graph(3, category_size=(25, 35), seed=world)
    nodes = sorted(graph.nodes)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    level = np.random.default_rng([world, 1]).normal(20.0, 3.0, size=len(nodes))
    rows: list[Row] = []
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
        info = experiment_info(spec, "running")
        published = {
            r.method: r
            for r in worker.spillover_estimates(info, panel)
            if isinstance(r, EstimateResult)  # random days withholds none (NotIdentified)
        }
        for contrast, truth in TRUTHS.items():
            r = published[f"spillover_ipw:{contrast}"]
            lo, hi = r.conf_int()
            rows.append(
                {
                    "contrast": contrast,
                    "draw": d,
                    "error": r.effect - truth,
                    "se": r.se,
                    "covered": bool(lo <= truth <= hi),
                }
            )
    return rows


def share_mcse(spread: float, worlds: int, total: float) -> float:
    """MC SE of a between-world share: the worlds' mean errors' sample variance ``spread``
    over ``worlds`` worlds has SE about spread * sqrt(2 / (worlds - 1)); the share divides
    it by the ``total`` variance."""
    return spread * math.sqrt(2.0 / (worlds - 1)) / total


def summarise_worlds(fits: pd.DataFrame) -> dict[str, float]:
    """One contrast's fits (a row per world ``run`` and ``draw``): the within-world (design)
    spread, the worlds' conditional bias and its share of the variance, coverage."""
    E = fits.pivot(index="run", columns="draw", values="error").to_numpy(float)
    SE = fits.pivot(index="run", columns="draw", values="se").to_numpy(float)
    n_w, n_d = E.shape
    within_var = float(E.var(axis=1, ddof=1).mean())
    bias = E.mean(axis=1)
    bias_sd = float(bias.std(ddof=1))
    # the part of the worlds' bias spread that the draws' own noise explains
    mc_part = math.sqrt(within_var / n_d)
    between_var = max(bias_sd**2 - mc_part**2, 0.0)
    cov, cov_mcse = coverage(fits["covered"].astype(bool))
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
        "coverage_mcse": cov_mcse,
    }


#: each exposure's effect in the planted outcomes (simulate_spillover_outcomes' defaults, which
#: the worker study's panels use), in ExposureMapping's order: (C, none), (C, any), (T, none),
#: (T, any)
PLANTED = inspect.signature(simulate_spillover_outcomes).parameters
EXPOSURE_EFFECTS = np.array(
    [
        0.0,
        PLANTED["spill_control"].default,
        PLANTED["direct"].default,
        PLANTED["direct"].default + PLANTED["spill_treated"].default,
    ]
)
#: each contrast's exposures (k, reference) in that order
CONTRAST_EXPOSURES = {
    "direct": (2, 0),
    "spillover_control:any": (1, 0),
    "spillover_treated:any": (3, 2),
}


#: what the worker-path figures were measured on (validation.md renders only these)
WORKER_PATH = "levels netted out (analysis.spillover.past_levels)"

#: the design draws the worker's Monte-Carlo exposure probabilities rest on (design_spillover)
WORKER_PROBABILITY_DRAWS = inspect.signature(design_spillover).parameters["n_draws"].default

#: the exact part's two weightings, in hajek_world's rows
KINDS = ("exact", "monte_carlo")


def hajek_world(world: int, draws: int, estimates: int = 40) -> dict[str, np.ndarray]:
    """One world's Hajek error per contrast and design draw, in one period: the world's
    products, levels and graph fixed, the coins and the outcome noise drawn afresh ``draws``
    times, with the worker's trimming (min_probability 0.02). Row 0 weights by the exact
    exposure probabilities of random days' independent coins; row 1 by Monte-Carlo
    frequencies over ``WORKER_PROBABILITY_DRAWS`` design draws, as the worker estimates them
    afresh in each period (``estimates`` such estimates, each used for an equal share of the
    draws)."""
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
                est = hajek_means(Y[idx], E[idx], k, inv[:, k], ok) - hajek_means(
                    Y[idx], E[idx], ref, inv[:, ref], ok
                )
                out[c][row, idx] = est - (EXPOSURE_EFFECTS[k] - EXPOSURE_EFFECTS[ref])
    return out


def world_stats(errors: np.ndarray) -> Row:
    """One world's draws of one error: what :func:`summarise_hajek` needs of them (missing
    draws, NaN, left out)."""
    finite = np.isfinite(errors)
    return {
        "draws": int(finite.sum()),
        "missing": int((~finite).sum()),
        "total": float(np.nansum(errors)),
        "mean": float(np.nanmean(errors)) if finite.any() else math.nan,
        "var": float(np.nanvar(errors, ddof=1)) if finite.sum() > 1 else math.nan,
    }


def summarise_hajek(worlds: pd.DataFrame, periods: int) -> dict[str, float]:
    """Worlds' errors (a row of :func:`world_stats` per world): the worlds' conditional bias
    (its SD net of the draws' own noise), the one-period design SD, and the share of an
    experiment's variance over ``periods`` independent periods that the conditional bias,
    shared by them, makes up."""
    within = float(np.nanmean(worlds["var"].to_numpy(float)))
    world_bias = worlds["mean"].to_numpy(float)
    spread = float(np.var(world_bias, ddof=1))
    between = max(spread - within / float(worlds["draws"].mean()), 0.0)
    total = between + within / periods
    return {
        "bias": float(worlds["total"].sum() / worlds["draws"].sum()),
        "bias_mcse": float(np.std(world_bias, ddof=1) / math.sqrt(len(worlds))),
        "world_bias_sd": math.sqrt(between),
        "period_sd": math.sqrt(within),
        "between_share": between / total,
        "between_share_mcse": share_mcse(spread, len(worlds), total),
        "missing": int(worlds["missing"].sum()),
    }


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    world = FIRST_WORLD + run
    if case["part"] == "worker":
        return one_world(world, int(settings["draws"]))
    errors = hajek_world(world, int(settings["hajek_draws"]))
    return [
        {"contrast": c, "kind": kind, **world_stats(errors[c][row])}
        for c in CONTRAST_EXPOSURES
        for row, kind in enumerate(KINDS)
    ]


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    fits, worlds = (rows[rows["part"] == p] for p in ("worker", "hajek"))
    # the direct effect's figures at the top level, as before; all under "contrasts"
    contrasts = {c: summarise_worlds(fits[fits["contrast"] == c]) for c in TRUTHS}
    out: dict[str, Any] = contrasts["direct"] | {
        "contrasts": contrasts,
        "path": WORKER_PATH,
        "minutes": run.seconds[0] / 60,
    }
    out["hajek"] = {
        "worlds": int(run.options["hajek_worlds"]),
        "draws": int(run.options["hajek_draws"]),
        "periods": worker_study.PERIODS,
        "probability_draws": WORKER_PROBABILITY_DRAWS,
        "minutes": run.seconds[1] / 60,
        "contrasts": {
            c: {
                kind: summarise_hajek(
                    worlds[(worlds["contrast"] == c) & (worlds["kind"] == kind)],
                    worker_study.PERIODS,
                )
                for kind in KINDS
            }
            for c in CONTRAST_EXPOSURES
        },
    }
    return out


STUDY = Study(
    name="spillover-conditional",
    cases=({"part": "worker", "runs": "worlds"}, {"part": "hajek", "runs": "hajek_worlds"}),
    run_one=run_one,
    summarise=summarise,
    results="spillover-random-days-conditional.json",
    options={"worlds": 30, "draws": 20, "hajek_worlds": 200, "hajek_draws": 4000},
    refresh=worker_study.refresh_validation,
)
