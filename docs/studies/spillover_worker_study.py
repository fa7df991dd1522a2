"""Coverage of the spillover estimates the live analysis worker publishes.

    .venv/bin/python docs/studies/spillover_worker_study.py [--runs 400] [--jobs 2] [--out docs]

For experiments that carry a substitutes graph the worker publishes, next to its design's
estimators, direct and spillover effects (``AnalysisWorker._spillover``): exposure-probability
weighting (Aronow & Samii 2017) whose exposure probabilities and design-bootstrap variance
redraw the live design itself (``controller.designs.design_sampler``), per period for designs
that redraw every period (random days, cluster switchbacks), on detrended first differences
for block designs (time-bound). This study runs exactly that code on seeded experiments with a
known truth and reports bias and coverage per design and contrast.

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
of its past periods.

Writes docs/figures/validation-spillover-worker.csv and regenerates docs/validation.md from the
saved tables. ``--continue-to 2000 --jobs 2`` runs random days alone from the table's first
seed on to 2,000 runs (docs/figures/validation-spillover-continued.csv; about 30 minutes on 2
cores), to tell chance from a defect where a 400-run row sits at the band's edge.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

from analysis import spillover  # noqa: E402
from analysis.clustering import cluster_graph  # noqa: E402
from analysis.panel import Panel  # noqa: E402
from analysis.pricing_dgp import planted_substitute_graph, simulate_spillover_outcomes  # noqa: E402
from analysis.worker import AnalysisWorker  # noqa: E402
from controller.designs import design_matrices  # noqa: E402
from controller.panel_source import experiment_info  # noqa: E402
from controller.spec import ExperimentSpec  # noqa: E402
from lab.hashseed import pin_hash_seed  # noqa: E402

TRUTH = {"direct": 2.0, "spillover_control:any": -1.0, "spillover_treated:any": -0.5}
DESIGNS = ("random-days", "cluster", "time-bound")
PERIODS = 10


@contextlib.contextmanager
def _patched(name: str, replacement: Any) -> Iterator[None]:
    """The study's ablations only: one function of analysis.spillover replaced for a run."""
    saved = getattr(spillover, name)
    setattr(spillover, name, replacement)
    try:
        yield
    finally:
        setattr(spillover, name, saved)


_PAST_LEVELS = spillover.past_levels

#: ablations, each random days again (same seeds) with one part of the worker's path undone,
#: to show what that part does
ABLATIONS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    # the design bootstrap's residuals unscaled (before their leverage correction,
    # ``analysis.spillover._leverage_adjusted``)
    "random-days (residuals unscaled)": lambda: _patched(
        "_leverage_adjusted", lambda resid, *_: resid
    ),
    # raw outcomes in every period: the worker's path before each product's level was netted
    # out (``analysis.spillover.past_levels``)
    "random-days (raw outcomes)": lambda: _patched("past_levels", lambda Y, *_: np.zeros(Y.shape)),
    # each product's plain past mean as its level, not net of the exposure effects it had
    "random-days (past mean, not net of effects)": lambda: _patched(
        "past_levels", lambda Y, ok, exposure, n: _PAST_LEVELS(Y, ok, np.zeros_like(exposure), n)
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


def one_run(design: str, seed: int) -> list[dict[str, Any]]:
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
            cluster={"mode": "switchback"},
        )
    else:
        cats: dict[str, list[str]] = {}
        for p in nodes:
            cats.setdefault(category[p], []).append(p)
        spec = ExperimentSpec(
            **base,
            clusters={c: tuple(m) for c, m in cats.items()},
            time_bound={"start_period": PERIODS // 2},
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
    published = {r.method: r for r in worker._spillover(info, panel)}
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


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (design, contrast), g in rows.groupby(["design", "contrast"], sort=False):
        ok = g[g["published"]]
        err = ok["effect"] - ok["truth"]
        n = len(ok)
        cov = ok["covered"].astype(bool)
        out.append(
            {
                "design": design,
                "contrast": contrast,
                "runs": len(g),
                "published": n,
                "truth": float(g["truth"].iloc[0]),
                "bias": float(err.mean()) if n else math.nan,
                "mean_se": float(ok["se"].mean()) if n else math.nan,
                "emp_sd": float(err.std(ddof=1)) if n > 1 else math.nan,
                "coverage": float(cov.mean()) if n else math.nan,
                "coverage_mcse": math.sqrt(cov.mean() * (1 - cov.mean()) / n)
                if n > 1
                else math.nan,
            }
        )
    return pd.DataFrame(out)


#: where ``--continue-to`` keeps its runs (every run, one row per contrast)
CONTINUED = "validation-spillover-continued.csv"


def _runs_of(job: tuple[str, list[int]]) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    design, seeds = job
    with threadpool_limits(1):  # one BLAS thread per process: the processes share the cores
        return [row for seed in seeds for row in one_run(design, seed)]


def _runs(design: str, seeds: list[int], jobs: int) -> list[dict[str, Any]]:
    """``design``'s runs at ``seeds`` over ``jobs`` processes, in seed order (each run is
    seeded by its own seed: any number of processes gives the figures one gives)."""
    parts = [(design, seeds[j::jobs]) for j in range(jobs)]
    if jobs == 1:
        return _runs_of(parts[0])
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:
        rows = [r for part in pool.map(_runs_of, parts) for r in part]
    order = {seed: i for i, seed in enumerate(seeds)}
    return sorted(rows, key=lambda r: order[r["seed"]])


def continued(design: str, runs: int, jobs: int, figdir: Path) -> pd.DataFrame:
    """``design``'s runs 0..runs-1 (the table's first ones and more, same seeds), every row
    kept in ``figdir / CONTINUED``; its summary."""
    t0 = time.monotonic()
    rows = _runs(design, [500 + r for r in range(runs)], jobs)
    df = pd.DataFrame(rows).sort_values(["seed", "contrast"], kind="stable")
    minutes = (time.monotonic() - t0) / 60
    figdir.mkdir(parents=True, exist_ok=True)
    df.assign(minutes=minutes).to_csv(figdir / CONTINUED, index=False)
    print(f"[{design}] {runs} runs in {minutes:.1f} min", flush=True)
    return summarise(df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument(
        "--continue-to",
        type=int,
        default=None,
        help="run only random days, runs 0 to this minus 1 (the table's seeds and more), "
        f"into figures/{CONTINUED}",
    )
    ap.add_argument("--jobs", type=int, default=1, help="processes to run the seeds on")
    args = ap.parse_args()
    args.out = args.out.resolve()
    if args.continue_to is not None and args.continue_to < args.runs:
        ap.error(f"--continue-to must be at least --runs ({args.runs}): it continues those runs")
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    pin_hash_seed()  # the cluster design's classes depend on string hashing
    if args.continue_to is not None:
        print(continued("random-days", args.continue_to, args.jobs, args.out / "figures"))
        if args.out == ROOT / "docs":
            subprocess.run(
                [sys.executable, str(ROOT / "docs/studies/validation_study.py"), "--render-only"],
                check=True,
            )
        return
    t0 = time.monotonic()
    rows = []
    for design in (*DESIGNS, *ABLATIONS):
        t = time.monotonic()
        rows += _runs(design, [500 + seed for seed in range(args.runs)], args.jobs)
        print(f"[{design}] {args.runs} runs in {time.monotonic() - t:.0f}s", flush=True)
    table = summarise(pd.DataFrame(rows))
    table.attrs["minutes"] = (time.monotonic() - t0) / 60
    figdir = args.out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    table.assign(minutes=(time.monotonic() - t0) / 60).to_csv(
        figdir / "validation-spillover-worker.csv", index=False
    )
    print(table.to_string(index=False))
    if args.out == ROOT / "docs":
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "docs" / "studies" / "validation_study.py"),
                "--render-only",
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
