"""Coverage of the spillover estimates the live analysis worker publishes.

    .venv/bin/python docs/studies/spillover_worker_study.py [--runs 400] [--out docs]

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
they are not here. A last row runs random days again with the design bootstrap's residuals
unscaled, as the worker did before their leverage correction, to show what the correction does.

Writes docs/figures/validation-spillover-worker.csv and regenerates docs/validation.md from the
saved tables. ``--continue-to 2000 --jobs 2`` runs random days alone, the published design whose
coverage sat at the band's edge, from the table's first seed on to 2,000 runs (docs/figures/
validation-spillover-continued.csv; about 30 minutes on 2 cores), to tell chance from a defect.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

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
#: the ablation: random days again with the design bootstrap's residuals unscaled (as before the
#: leverage correction, ``analysis.spillover._leverage_adjusted``), to show what the correction does
ABLATION = "random-days (residuals unscaled)"
PERIODS = 10


@contextlib.contextmanager
def _unscaled_residuals() -> Iterator[None]:
    """The study's ablation only: the design bootstrap imputes raw residuals."""
    saved = spillover._leverage_adjusted
    spillover._leverage_adjusted = lambda resid, *_: resid  # type: ignore[assignment]
    try:
        yield
    finally:
        spillover._leverage_adjusted = saved  # type: ignore[assignment]


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
    if design == ABLATION:
        with _unscaled_residuals():
            rows = one_run("random-days", seed)
        return [r | {"design": ABLATION} for r in rows]
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


def continued(design: str, runs: int, jobs: int, figdir: Path) -> pd.DataFrame:
    """``design``'s runs 0..runs-1 (the table's first ones and more, same seeds), every row
    kept in ``figdir / CONTINUED``; its summary."""
    t0 = time.monotonic()
    seeds = [500 + r for r in range(runs)]
    parts = [(design, seeds[j::jobs]) for j in range(jobs)]
    if jobs == 1:
        rows = _runs_of(parts[0])
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            rows = [r for part in pool.map(_runs_of, parts) for r in part]
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
    ap.add_argument("--jobs", type=int, default=1, help="processes for --continue-to")
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
    for design in (*DESIGNS, ABLATION):
        t = time.monotonic()
        for seed in range(args.runs):
            rows += one_run(design, 500 + seed)
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
