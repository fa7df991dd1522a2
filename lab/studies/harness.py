"""The one harness of the validation studies: a study *declares* what to simulate, this module
says how to run, store and render it (as asv does for numpy's and scipy's benchmarks).

A study module holds a :class:`Study`: its cases (worlds x designs x estimators, one mapping
each; :func:`grid` builds their cartesian product), a function computing one run's row(s) of
one case, the number of runs and the seed, a function summarising the rows into the saved
table, and the page its template renders into. The harness runs every case's runs (in a
process pool of ``jobs`` with single-threaded BLAS, the rows in the same order whatever the
jobs), saves the table under docs/figures (CSV, TSV or JSON), and renders the page from that file
alone, so every figure in ``docs/`` points back to a file a study wrote.

    python -m lab.studies NAME [--runs N] [--jobs J] [--render-only] [--set key=value]

The statistics every study reports (bias with its Monte-Carlo SE, SE over SD, coverage with its
Monte-Carlo SE) are :func:`mean_mcse`, :func:`coverage`, :func:`error_summary` and
:func:`interval_summary`; a run's
seed is :func:`run_seed`.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from lab.errors import LabError
from lab.seeds import run_seed as run_seed  # a study's seeds come from the harness
from lab.studies.render import render_page, render_text

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"

Case: TypeAlias = Mapping[str, Any]
Row: TypeAlias = dict[str, Any]
#: what a study saves: a table (CSV or TSV) or a JSON-able mapping
Results: TypeAlias = pd.DataFrame | dict[str, Any]


def grid(**params: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """The cases of every combination of ``params`` (asv's ``params``), the last varying
    fastest: ``grid(design=("a", "b"), period=("P1D",))``."""
    names = list(params)
    return tuple(
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*params.values())
    )


@dataclass(frozen=True)
class Run:
    """What the harness hands a study's summary: the settings of this run of the study and the
    seconds each case took (the sum over its runs, whatever the jobs)."""

    runs: int
    seed: int
    options: Mapping[str, Any]
    seconds: tuple[float, ...]
    #: the worker processes, and the wall-clock seconds of every stage's runs
    jobs: int = 1
    wall_seconds: float = math.nan


@dataclass(frozen=True)
class Page:
    """Where a study's figures are shown: a section of ``doc`` between ``<!-- NAME:start -->``
    and ``<!-- NAME:end -->`` (or the whole file when ``section`` is empty), rendered from the
    Jinja2 template ``lab/studies/templates/TEMPLATE``."""

    doc: str
    template: str
    section: str = ""


@dataclass(frozen=True)
class Study:
    """A validation study, declared. ``run_one(case, run, settings)`` computes run ``run`` of
    ``case`` (a row, or several); ``summarise(rows, run)`` turns every row into what is saved
    as ``docs/figures/RESULTS`` (``.csv`` or ``.tsv`` for a table, ``.json`` for a mapping); ``context``
    turns the saved results into the template's variables (default: a saved mapping's keys, a
    saved table as ``results``).
    ``options`` are the study's own knobs, each overridable from the command line."""

    name: str
    cases: tuple[Case, ...]
    run_one: Callable[[Case, int, Mapping[str, Any]], Row | list[Row]]
    summarise: Callable[[pd.DataFrame, Run], Results]
    results: str
    runs: int = 400
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    page: Page | None = None
    context: Callable[[Results], dict[str, Any]] | None = None
    #: runs per job task; studies whose runs are short raise it to save the pool's overhead
    chunk: int = 1
    #: the figures depend on string hashing (the cluster design's Louvain classes): the runner
    #: runs the study with PYTHONHASHSEED=0 (lab.hashseed)
    hash_seed: bool = False
    #: a study with no page of its own whose saved results another module composes into its
    #: page (e.g. docs/validation.md): re-renders that page, after the results are saved in
    #: docs/figures and on ``--render-only``
    refresh: Callable[[], object] | None = None
    #: a second stage whose cases depend on the first's rows (e.g. continuing the cases found
    #: off the target): ``follow_up(rows, run)`` gives the study to run next, or None; its rows
    #: are appended to the first's and its cases' seconds to theirs
    follow_up: Callable[[pd.DataFrame, Run], Study | None] | None = None
    #: a study whose results are several files (tables, plots) writes them itself,
    #: ``save(results, figures)`` (the path of ``results``, its index), and reads them back,
    #: ``load(figures)``; the page is then rendered from what ``load`` reads
    save: Callable[[Results, Path], Path] | None = None
    load: Callable[[Path], Results] | None = None

    def runs_of(self, case: Case) -> int:
        """A case's runs: its own ``runs`` if it declares them (a number, e.g. a fixed number of
        fresh draws beside the study's runs, or the name of one of the study's options), else
        the study's."""
        own = case.get("runs", self.runs)
        return int(self.options[own] if isinstance(own, str) else own)

    def settings(self) -> dict[str, Any]:
        """What ``run_one`` receives besides its case and run: the seed, runs and options."""
        return {"seed": self.seed, "runs": self.runs, **self.options}

    def with_options(self, runs: int | None = None, **options: Any) -> Study:
        """The same study with fewer or more runs, or other values of its own options."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise LabError(
                f"study {self.name} has no option {', '.join(unknown)}; "
                f"it has {', '.join(self.options) or 'none'}"
            )
        if runs is not None and all("runs" in c for c in self.cases):
            own = sorted({str(c["runs"]) for c in self.cases if isinstance(c["runs"], str)})
            raise LabError(
                f"study {self.name} sets its runs per case"
                + (f": change {', '.join(own)} with --set" if own else "")
            )
        return replace(
            self, runs=self.runs if runs is None else runs, options={**self.options, **options}
        )


# --------------------------------------------------------------------------- statistics
def mean_mcse(x: Iterable[float]) -> tuple[float, float]:
    """The mean of ``x`` and its Monte-Carlo SE (sample SD over sqrt(n)); NaN when undefined."""
    a = np.asarray(list(x), dtype=float)
    if not len(a):
        return math.nan, math.nan
    if len(a) == 1:
        return float(a[0]), math.nan
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a)))


def coverage(covered: Iterable[bool]) -> tuple[float, float]:
    """The share of runs whose interval covered the target, and its binomial Monte-Carlo SE
    ``sqrt(p (1 - p) / n)``."""
    a = np.asarray(list(covered), dtype=bool)
    if not len(a):
        return math.nan, math.nan
    p = float(a.mean())
    return p, math.sqrt(p * (1 - p) / len(a))


def coverage_clustered(covered: Iterable[bool], cluster: Iterable[Any]) -> tuple[float, float]:
    """The share covered when the runs come in clusters (e.g. the products of one seed's
    market), and its Monte-Carlo SE with the clusters as the independent draws (a ratio
    estimator: ``sum_g (h_g - p n_g)^2 / n^2 * m / (m - 1)`` over the ``m`` clusters)."""
    frame = pd.DataFrame({"h": np.asarray(list(covered), dtype=float), "g": list(cluster)})
    g = frame.groupby("g")["h"].agg(["sum", "size"])
    p = g["sum"].sum() / g["size"].sum()
    m = len(g)
    var = np.sum(np.square(g["sum"] - p * g["size"])) / g["size"].sum() ** 2 * m / max(m - 1, 1)
    return float(p), float(np.sqrt(var))


def interval_summary(
    effect: Iterable[float], truth: Iterable[float], se: Iterable[float], covered: Iterable[bool]
) -> dict[str, float]:
    """For runs whose interval's coverage was scored where it was made (``covered``): bias,
    mean SE, the empirical SD of the error and the coverage with its Monte-Carlo SE (NaN where
    one run or none leaves it undefined)."""
    err = np.asarray(list(effect), dtype=float) - np.asarray(list(truth), dtype=float)
    s = np.asarray(list(se), dtype=float)
    n = len(err)
    cov, cov_mcse = coverage(covered)
    return {
        "bias": float(err.mean()) if n else math.nan,
        "mean_se": float(s.mean()) if n else math.nan,
        "emp_sd": float(err.std(ddof=1)) if n > 1 else math.nan,
        "coverage": cov,
        "coverage_mcse": cov_mcse if n > 1 else math.nan,
    }


def error_summary(
    effect: Iterable[float],
    se: Iterable[float],
    target: Iterable[float],
    ci_low: Iterable[float] | None = None,
    ci_high: Iterable[float] | None = None,
    z: float = 1.959963984540054,
) -> dict[str, float]:
    """Bias (mean of estimate - target) with its MC SE, mean SE, the SD of the error, their
    ratio, RMSE, and the coverage of the interval (``ci_low``..``ci_high``, or estimate +- z
    SE) with its MC SE, over the runs whose estimate is finite."""
    e, s, t = (np.asarray(list(v), dtype=float) for v in (effect, se, target))
    ok = np.isfinite(e)
    err = (e - t)[ok]
    lo = e - z * s if ci_low is None else np.asarray(list(ci_low), dtype=float)
    hi = e + z * s if ci_high is None else np.asarray(list(ci_high), dtype=float)
    bias, bias_mcse = mean_mcse(err)
    sd = float(err.std(ddof=1)) if len(err) > 1 else math.nan
    mean_se = float(s[ok].mean()) if ok.any() else math.nan
    cov, cov_mcse = coverage((lo[ok] <= t[ok]) & (t[ok] <= hi[ok]))
    return {
        "runs": int(ok.sum()),
        "bias": bias,
        "bias_mcse": bias_mcse,
        "mean_se": mean_se,
        "emp_sd": sd,
        "se_ratio": mean_se / sd if sd else math.nan,
        "rmse": float(np.sqrt(np.mean(err**2))) if len(err) else math.nan,
        "coverage": cov,
        "coverage_mcse": cov_mcse,
    }


# --------------------------------------------------------------------------- running
def _tasks(study: Study) -> list[tuple[int, list[int]]]:
    step = max(1, study.chunk)
    out = []
    for c, case in enumerate(study.cases):
        runs = list(range(study.runs_of(case)))
        out += [(c, runs[i : i + step]) for i in range(0, len(runs), step)]
    return out


def _work(
    args: tuple[Study, list[tuple[int, list[int]]]],
) -> list[tuple[int, int, list[Row], float]]:
    from threadpoolctl import threadpool_limits

    study, tasks = args  # a study pickles its functions by name: the worker imports its module
    out = []
    settings = study.settings()
    with threadpool_limits(1):
        for case_index, runs in tasks:
            case = study.cases[case_index]
            for run in runs:
                t0 = time.perf_counter()
                got = study.run_one(case, run, settings)
                rows = [got] if isinstance(got, dict) else list(got)
                out.append((case_index, run, rows, time.perf_counter() - t0))
    return out


def run_rows(study: Study, jobs: int = 1) -> tuple[pd.DataFrame, Run]:
    """Every run of every case: one frame with the case's keys and ``run`` first, in case then
    run order whatever ``jobs``; and the :class:`Run` its summary receives."""
    if study.runs < 1:
        raise LabError("runs must be at least 1")
    if jobs < 1:
        raise LabError("jobs must be at least 1")
    t0 = time.perf_counter()
    tasks = _tasks(study)
    if jobs == 1:
        done = _work((study, tasks))
    else:
        parts = [tasks[j::jobs] for j in range(jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            done = [d for part in pool.map(_work, [(study, p) for p in parts]) for d in part]
    done.sort(key=lambda d: (d[0], d[1]))
    seconds = [0.0] * len(study.cases)
    rows: list[Row] = []
    for case_index, run, got, took in done:
        seconds[case_index] += took
        case = study.cases[case_index]
        rows += [{**case, "run": run, **r} for r in got]
    frame = pd.DataFrame(rows)
    meta = Run(study.runs, study.seed, dict(study.options), tuple(seconds), jobs)
    nxt = study.follow_up(frame, meta) if study.follow_up else None
    if nxt is not None:
        more, then = run_rows(nxt, jobs)
        frame = pd.concat([frame, more], ignore_index=True)
        seconds += list(then.seconds)
    wall = time.perf_counter() - t0
    return frame, replace(meta, seconds=tuple(seconds), wall_seconds=wall)


def results_path(study: Study, figures: Path = FIGURES) -> Path:
    return figures / study.results


def save_results(study: Study, results: Results, figures: Path = FIGURES) -> Path:
    """Write the study's results where its page is rendered from."""
    if study.save is not None:
        return study.save(results, figures)
    path = results_path(study, figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(results, indent=1) + "\n")
    elif isinstance(results, pd.DataFrame):
        results.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    else:
        raise LabError(f"{study.name}: a mapping is saved as .json, not {path.name}")
    return path


def load_results(study: Study, figures: Path = FIGURES) -> Results:
    """The study's saved results, as :func:`save_results` wrote them."""
    path = results_path(study, figures)
    if not path.exists():
        raise LabError(f"{path} does not exist: run `python -m lab.studies {study.name}` first")
    if study.load is not None:
        return study.load(figures)
    if path.suffix == ".json":
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")


def context(study: Study, results: Results) -> dict[str, Any]:
    """The template's variables for ``results``: the study's ``context``, or a saved mapping's
    own keys, or a saved table as ``results``."""
    if study.context:
        return study.context(results)
    return dict(results) if isinstance(results, dict) else {"results": results}


def fragment(study: Study, figures: Path = FIGURES) -> str | None:
    """The study's rendered section from its saved results, for a page that another script
    composes (e.g. docs/validation.md); None while the study has saved nothing."""
    if study.page is None:
        raise LabError(f"study {study.name} renders no page")
    if not results_path(study, figures).exists():
        return None
    text = render_text(study.page.template, context(study, load_results(study, figures)))
    return text.rstrip("\n")


def render(study: Study, results: Results, root: Path = ROOT) -> Path | None:
    """Render the study's page (or section) from ``results``; None when it has no page (then
    the page another module composes from the saved results is refreshed, if the study says
    which and ``root`` is the repository's)."""
    if study.page is None:
        if study.refresh is not None and root == ROOT:
            study.refresh()
        return None
    return render_page(
        root / study.page.doc, study.page.template, study.page.section, context(study, results)
    )


def run_study(
    study: Study, *, jobs: int = 1, figures: Path = FIGURES, root: Path = ROOT, save: bool = True
) -> Results:
    """Run, summarise, save and render ``study``; the results."""
    rows, meta = run_rows(study, jobs)
    results = study.summarise(rows, meta)
    if save:
        save_results(study, results, figures)
        if study.page is not None or figures == FIGURES:  # a refresh reads docs/figures
            # a study that loads its own files renders from them, as --render-only does
            render(study, load_results(study, figures) if study.load else results, root)
    return results
