"""Coverage of the spillover estimates the live analysis worker publishes.

    .venv/bin/python -m lab.studies spillover-worker [--runs 400] [--jobs 2]
    .venv/bin/python -m lab.studies spillover-continued [--runs 2000] [--jobs 2]

For experiments that carry a substitutes graph the worker publishes, next to its design's
estimators, direct and spillover effects (``AnalysisWorker.spillover_estimates``):
exposure-probability weighting (Aronow & Samii 2017) whose exposure probabilities and
design-bootstrap variance redraw the live design itself (``controller.designs.design_sampler``),
per period for designs that redraw every period (random days, cluster switchbacks), on detrended
first differences for block designs (time-bound). This study runs exactly that code on seeded
experiments with a known truth and reports bias and coverage per design and contrast.

Data: a planted substitutes graph (small dense groups inside categories,
``analysis.pricing_dgp.planted_substitute_graph``), products with their own levels, and outcomes
whose exposure effects are those of the estimator's exposure mapping: own treatment +2.0, a
control product with any treated neighbour -1.0, a treated one -0.5
(``simulate_spillover_outcomes``), plus independent noise each period. The assignment is the
design's own (``design_matrices``): random days; time-bound with half of each category treated
from the middle period; and the cluster design with the graph's Louvain classes (at most 12
products), redrawn every period - whose spillover estimates the worker withholds: its row runs
the per-period path anyway, to show why. Designs whose periods share draws (crossover, the
optimal switchback with carryover, triggered) get no spillover estimate from the worker, so
they are not here. The last rows run random days again, on the same seeds, with one part of
the worker's path undone each (``ABLATIONS``): the design bootstrap's residuals unscaled (before
their leverage correction); raw outcomes in every period (before each product's level was
netted out); and each product's plain past mean as its level, not net of the exposure effects
of its past periods. Run r is seed 500 + r.

Saves docs/figures/validation-spillover-worker.csv (``minutes``: the runs' computing time) and
re-renders docs/validation.md from the saved tables. ``spillover-continued`` runs random days
alone from the table's first seed on to 2,000 runs and keeps every run
(docs/figures/validation-spillover-continued.csv; about 30 minutes on 2 cores), to tell chance
from a defect where a 400-run row sits at the band's edge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analysis import spillover
from analysis.clustering import cluster_graph
from analysis.panel import Panel
from analysis.pricing_dgp import planted_substitute_graph, simulate_spillover_outcomes
from analysis.results import EstimateResult
from analysis.worker import AnalysisWorker
from controller.designs import design_matrices
from controller.panel_source import experiment_info
from controller.spec import ClusterMode, ClusterSettings, ExperimentSpec, TimeBoundSettings
from lab.studies.harness import Case, Row, Run, Study, interval_summary

TRUTH = {"direct": 2.0, "spillover_control:any": -1.0, "spillover_treated:any": -0.5}
DESIGNS = ("random-days", "cluster", "time-bound")
PERIODS = 10
FIRST_SEED = 500


@contextlib.contextmanager
def patched(name: str, replacement: Any) -> Iterator[None]:
    """The study's ablations only: one function of analysis.spillover replaced for a run."""
    saved = getattr(spillover, name)
    setattr(spillover, name, replacement)
    try:
        yield
    finally:
        setattr(spillover, name, saved)


PAST_LEVELS = spillover.past_levels

#: ablations, each random days again (same seeds) with one part of the worker's path undone,
#: to show what that part does
ABLATIONS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    # the design bootstrap's residuals unscaled (before their leverage correction,
    # ``analysis.spillover.leverage_adjusted``)
    "random-days (residuals unscaled)": lambda: patched(
        "leverage_adjusted", lambda resid, *_: resid
    ),
    # raw outcomes in every period: the worker's path before each product's level was netted
    # out (``analysis.spillover.past_levels``)
    "random-days (raw outcomes)": lambda: patched("past_levels", lambda Y, *_: np.zeros(Y.shape)),
    # each product's plain past mean as its level, not net of the exposure effects it had
    "random-days (past mean, not net of effects)": lambda: patched(
        "past_levels", lambda Y, ok, exposure, n: PAST_LEVELS(Y, ok, np.zeros_like(exposure), n)
    ),
}


def spillover_panel(
    spec: ExperimentSpec, graph: Any, nodes: list[str], level: np.ndarray, *, noise_seed: int
) -> Panel:
    """The panel a spillover experiment ``spec`` yields on ``graph``: its design's assignment
    (``design_matrices``) and each period's outcomes from ``simulate_spillover_outcomes``,
    products at base level ``level``, period t's noise seeded by ``noise_seed * 1000 + t``."""
    m = design_matrices(spec, nodes)
    Y = np.empty(m.treated.shape)
    for t in range(PERIODS):
        Y[:, t] = simulate_spillover_outcomes(
            graph, m.treated[:, t], nodes=nodes, base=level, seed=noise_seed * 1000 + t
        )
    return Panel(
        Y=Y,
        W=m.treated,
        units=np.array(nodes),
        times=np.arange(PERIODS),
        blackout=m.blackout,
        probability=m.probability,
    )


def one_run(design: str, seed: int) -> list[Row]:
    """Each contrast the worker publishes for ``design`` (or an ablation) at ``seed``."""
    if design in ABLATIONS:
        with ABLATIONS[design]():
            rows = one_run("random-days", seed)
        return [r | {"design": design} for r in rows]
    graph, category = planted_substitute_graph(3, category_size=(25, 35), seed=seed)
    nodes = sorted(graph.nodes)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    base: dict[str, Any] = {
        "id": f"sp-{design}-{seed}",
        "design": design,
        "treatment_policy": "t",
        "control_policy": "c",
        "start": start,
        "end": start + timedelta(days=PERIODS),
        "seed": seed,
        "substitutes": tuple((a, b, 1.0) for a, b in graph.edges()),
    }
    if design == "random-days":
        spec = ExperimentSpec(**base, products=tuple(nodes))
    elif design == "cluster":
        parts = cluster_graph(graph, max_size=12, seed=seed).clusters
        spec = ExperimentSpec(
            **base,
            clusters={f"k{c}": tuple(m) for c, m in parts.items()},
            cluster=ClusterSettings(mode=ClusterMode.SWITCHBACK),
        )
    else:
        cats: dict[str, list[str]] = {}
        for p in nodes:
            cats.setdefault(category[p], []).append(p)
        spec = ExperimentSpec(
            **base,
            clusters={c: tuple(m) for c, m in cats.items()},
            time_bound=TimeBoundSettings(start_period=PERIODS // 2),
        )
    level = np.random.default_rng([seed, 1]).normal(20.0, 3.0, size=len(nodes))
    panel = spillover_panel(spec, graph, nodes, level, noise_seed=seed)
    worker = AnalysisWorker(source=None, sink=None, clock=None, seed=seed)  # type: ignore[arg-type]
    info = experiment_info(spec, "running")
    label = design
    if design == "cluster":
        # the design withholds its spillover estimates (Cluster.spillover); this row shows
        # what the per-period path would publish, which is why
        info = dataclasses.replace(info, spillover="per-period")
        label = "cluster (withheld)"
    published = {
        r.method: r
        for r in worker.spillover_estimates(info, panel)
        if isinstance(r, EstimateResult)  # the run's design withholds none (NotIdentified)
    }
    rows = []
    for contrast, truth in TRUTH.items():
        r = published.get(f"spillover_ipw:{contrast}")
        lo, hi = r.conf_int() if r is not None else (math.nan, math.nan)
        rows.append(
            {
                "design": label,
                "contrast": contrast,
                "seed": seed,
                "truth": truth,
                "published": r is not None,
                "effect": math.nan if r is None else r.effect,
                "se": math.nan if r is None else r.se,
                "covered": None if r is None else bool(lo <= truth <= hi),
            }
        )
    return rows


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    return one_run(case["design"], FIRST_SEED + run)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per design and contrast: bias, mean SE, empirical SD and coverage (with its MC SE) over
    the runs that published the contrast."""
    out = []
    for (design, contrast), g in rows.groupby(["design", "contrast"], sort=False):
        ok = g[g["published"]]
        out.append(
            {
                "design": design,
                "contrast": contrast,
                "runs": len(g),
                "published": len(ok),
                "truth": float(g["truth"].iloc[0]),
                **interval_summary(ok["effect"], ok["truth"], ok["se"], ok["covered"].astype(bool)),
            }
        )
    return pd.DataFrame(out)


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return table(rows).assign(minutes=sum(run.seconds) / 60)


def summarise_continued(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    """Every run kept (a row per seed and contrast), for validation.md's continued section."""
    kept = rows.drop(columns="run").sort_values(["seed", "contrast"], kind="stable")
    return kept.assign(minutes=sum(run.seconds) / 60)


def refresh_validation() -> None:
    """docs/validation.md, re-rendered from every saved table (the studies that feed it share
    this refresh; imported when called: the page's module reads these studies' files)."""
    from lab.studies.validation import render_page

    render_page()


STUDY = Study(
    name="spillover-worker",
    cases=tuple({"design": d} for d in (*DESIGNS, *ABLATIONS)),
    run_one=run_one,
    summarise=summarise,
    results="validation-spillover-worker.csv",
    runs=400,
    hash_seed=True,  # the cluster design's classes depend on string hashing
    refresh=refresh_validation,
)

CONTINUED = Study(
    name="spillover-continued",
    cases=({"design": "random-days"},),
    run_one=run_one,
    summarise=summarise_continued,
    results="validation-spillover-continued.csv",
    runs=2000,
    refresh=refresh_validation,
)
