"""TROP's interval coverage, seed by seed, and where its error comes from
(docs/analysis-advanced.md, "TROP at its defaults, 500 seeds" and "TROP on the core estimators'
DGP").

    .venv/bin/python -m lab.studies trop-grid-relax [--runs 500] [--jobs 2]   # and the others

Coverage studies: ``TROPEstimator(seed=s, n_boot=..., tuning=..., se=..., search=...,
relax=...)`` for each seed s of the DGP ``dgp`` (a run is a seed; every option is passed, so the
earlier variants still reproduce: without ``search="grid", relax=True`` it is the estimator
before 2026-11-23, coordinate search and convex fit). A row per seed: seed, effect, se, df,
ci_low, ci_high, the tuned lambda_time, lambda_unit, lambda_nn, the TWFE imputation's effect
(TROP at (0, 0, inf)) and the seconds, saved as docs/figures/RESULTS (one study per file, see
``VARIANTS``). Refit studies (``tuned``): the same fits at the seeds' tuned lambdas of another
study's saved rows, with another variance (``se="time_placebo"``: Almeida et al.'s Time-Placebo,
7 windows of 6 periods in the 14-period pre-period; ``placebo``: unit placebo, t(N0 - 1)).
:func:`summary` gives the statistics the page quotes (bias, sd, RMSE, mean SE, coverage t(df)
and normal, the z tails, the tuned points). The DGPs: ``factor_block`` (30 x 20, 8 treated
from period 14, rank-2 factors with selection on the first loading, tau = 1;
``analysis.pricing_dgp.factor_block``) and the core estimators' scenarios ``core_random`` /
``core_confounded`` (``analysis.pricing_dgp.factor_panel``: 30 x 20, 3 treated from period 15,
random-walk factors, N(0, 1) noise; lab.studies.panel_core).

The saved rows were fitted before 2026-11-25, when the tuning's placebo units were still drawn
(now a fixed set) and before the solver's effect sweeps: a rerun gives rows of the same law,
not the same rows (docs/analysis-advanced.md says so where it quotes them).

``trop-decompose``: for each seed, hold the unit effects, loadings and factors fixed and redraw
only the idiosyncratic noise ``draws`` times; fit TROP at the seed's tuned lambdas (no SE) to
each draw. The mean error over the draws is the conditional bias given the factors (the part a
unit bootstrap, which holds the periods fixed, cannot see), their sd the conditional noise; the
seed's bootstrap SE beside them (docs/figures/trop-decompose.csv).

``trop-refit``: why TROP has no post-selection rank refit. For each seed, TROP's weights of
every treated cell at tuned-like rates (time 0.3, unit 2 per median distance), then the weighted
rank-2 least-squares fit without penalty (``mcnnm.fit_fe_rank``, hard-impute) stopped after
200, 1,000 and 5,000 iterations: the objective falls and the imputed treated cells get worse
(docs/figures/trop-refit.csv).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimators.mcnnm import fit_fe_rank
from analysis.estimators.trop import TROPEstimator, pair_stats
from analysis.panel import Panel
from analysis.pricing_dgp import factor_block, factor_panel
from lab.studies.harness import FIGURES, Case, Page, Row, Run, Study

TAU = 1.0

#: the panel of each seed: this study's DGP and the core estimators' two scenarios
DGPS: dict[str, Callable[[int], Panel]] = {
    "factor_block": factor_block,
    "core_random": lambda s: factor_panel(s, n_pre=15),
    "core_confounded": lambda s: factor_panel(s, n_pre=15, confounded=True),
}

#: ``wide``: the default grids extended past the boundary values the tuning chose in most seeds
#: (lambda_unit 2 and lambda_nn 0.01 are the defaults' ends)
WIDE = {
    "lambda_unit_grid": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    "lambda_nn_grid": (float("inf"), 0.1, 0.03, 0.01, 0.003, 0.001),
}
FIELDS = (
    "seed", "effect", "se", "df", "ci_low", "ci_high",
    "lambda_time", "lambda_unit", "lambda_nn", "twfe", "seconds",
)  # fmt: skip
LAMBDAS = ("lambda_time", "lambda_unit", "lambda_nn")
#: a coverage study's own options (``tuned``: the saved rows whose lambdas a refit reuses)
DEFAULTS: dict[str, Any] = {
    "dgp": "factor_block", "n_boot": 100, "tuning": "placebo", "se": None,
    "search": "coordinate", "relax": False, "wide": False, "tuned": None,
}  # fmt: skip


def coverage_row(case: Case, seed: int, settings: Mapping[str, Any]) -> Row:
    """Seed ``seed``: TROP with the study's options, or (``tuned``) its refit at the saved
    lambdas of that seed."""
    make = DGPS[settings["dgp"]]
    panel = make(seed)
    t0 = time.perf_counter()
    if settings["tuned"]:
        saved = pd.read_csv(FIGURES / settings["tuned"], sep="\t").set_index("seed")
        lams = tuple(float(saved.loc[seed, k]) for k in LAMBDAS)
        r = TROPEstimator(*lams, se=settings["se"], seed=seed, relax=settings["relax"])
        res = r.fit(panel).result_
        twfe = math.nan
    else:
        kw = {"tuning": settings["tuning"], "se": settings["se"], "search": settings["search"],
              "relax": settings["relax"], **(WIDE if settings["wide"] else {})}  # fmt: skip
        res = TROPEstimator(seed=seed, n_boot=settings["n_boot"], **kw).fit(panel).result_
        twfe = TROPEstimator(0.0, 0.0, float("inf"), se="none").fit(panel).result_.effect
    secs = time.perf_counter() - t0
    lo, hi = res.conf_int()
    d = res.details
    return {"effect": res.effect, "se": res.se, "df": res.df, "ci_low": lo, "ci_high": hi,
            **{k: d[k] for k in LAMBDAS}, "twfe": twfe, "seconds": secs}  # fmt: skip


def seed_rows(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return rows.rename(columns={"run": "seed"})[list(FIELDS)]


def summary(rows: pd.DataFrame) -> dict[str, Any]:
    """What the page quotes of a coverage study's rows: bias (MC se), sd, RMSE, mean SE and its
    root mean square, median df, coverage of the t(df) and of the normal interval (with its MC
    se), sd of z and the 95th percentile of |z|, the TWFE imputation's bias and RMSE, the tuned
    points by frequency, and the same for the seeds with and without a low-rank term."""
    eff, se, df = (rows[k].to_numpy(float) for k in ("effect", "se", "df"))
    n = len(rows)
    err = eff - TAU
    cover_t = (rows["ci_low"].to_numpy() <= TAU) & (rows["ci_high"].to_numpy() >= TAU)
    z = err / se
    cover_n = np.abs(z) <= stats.norm.ppf(0.975)
    twfe = rows["twfe"].to_numpy(float) - TAU
    points = rows.groupby(list(LAMBDAS)).size().sort_values(ascending=False, kind="stable")
    low_rank = np.isfinite(rows["lambda_nn"].to_numpy(float))
    out: dict[str, Any] = {
        "seeds": n, "first": int(rows["seed"].min()), "last": int(rows["seed"].max()),
        "bias": float(err.mean()), "bias_mcse": float(err.std(ddof=1) / math.sqrt(n)),
        "sd": float(err.std(ddof=1)), "rmse": float(np.sqrt(np.mean(err**2))),
        "mean_se": float(se.mean()), "rms_se": float(np.sqrt(np.mean(se**2))),
        "median_df": float(np.median(df)),
        "coverage": float(cover_t.mean()),
        "coverage_mcse": float(np.sqrt(cover_t.mean() * (1 - cover_t.mean()) / n)),
        "coverage_normal": float(cover_n.mean()), "sd_z": float(z.std(ddof=1)),
        "q95_abs_z": float(np.quantile(np.abs(z), 0.95)),
        "twfe_bias": float(twfe.mean()), "twfe_rmse": float(np.sqrt(np.mean(twfe**2))),
        "median_seconds": float(np.median(rows["seconds"])),
        "minutes": float(rows["seconds"].sum() / 60),
        "points": [[*k, int(c)] for k, c in points.items()],
    }  # fmt: skip
    for name, mask in (("low_rank", low_rank), ("no_low_rank", ~low_rank)):
        if mask.any():
            out[name] = {"seeds": int(mask.sum()), "coverage": float(cover_t[mask].mean()),
                         "sd": float(err[mask].std(ddof=1)) if mask.sum() > 1 else math.nan,
                         "mean_se": float(se[mask].mean())}  # fmt: skip
    return out


def coverage_study(name: str, results: str, runs: int = 500, **options: Any) -> Study:
    """The study of ``results``: every seed 0 .. runs - 1 with ``options`` (see DEFAULTS)."""
    return Study(
        name=name,
        cases=({},),
        run_one=coverage_row,
        summarise=seed_rows,
        results=results,
        runs=runs,
        options={**DEFAULTS, **options},
    )


#: the saved runs, each a study (the page's rows, docs/analysis-advanced.md)
VARIANTS = (
    # the default since 2026-11-23: whole-grid search and the relaxed refit
    coverage_study("trop-grid-relax", "trop-grid-relax-seeds.tsv", search="grid", relax=True),
    # before: placebo tuning, coordinate search, convex fit
    coverage_study("trop-placebo-tuning", "trop-placebo-tuning-seeds.tsv"),
    # the same fits with the two-way variance
    coverage_study("trop-two-way", "trop-two-way-seeds.tsv", se="two_way"),
    # the earlier default: single-cell leave-one-out tuning
    coverage_study("trop-loo", "trop-seeds.tsv", tuning="loo"),
    # the loo run's fits at their tuned lambdas, time placebo
    coverage_study(
        "trop-time-placebo",
        "trop-time-placebo-seeds.tsv",
        se="time_placebo",
        tuned="trop-seeds.tsv",
    ),  # fmt: skip
    # the loo run with wider grids (332 seeds were run: 0-99, 100-299 and 300-385)
    coverage_study("trop-wide-grid", "trop-wide-grid-seeds.tsv", tuning="loo", wide=True),
    # the core estimators' DGP at the defaults of the time (coordinate search, convex fit)
    coverage_study("trop-core-random", "trop-core-random-seeds.tsv", dgp="core_random"),
    coverage_study("trop-core-confounded", "trop-core-confounded-seeds.tsv", dgp="core_confounded"),
    coverage_study(
        "trop-core-random-placebo",
        "trop-core-random-placebo-seeds.tsv",
        dgp="core_random",
        se="placebo",
        tuned="trop-core-random-seeds.tsv",
    ),  # fmt: skip
    coverage_study(
        "trop-grid-relax-core-random",
        "trop-grid-relax-core-random-seeds.tsv",
        runs=250,
        dgp="core_random",
        search="grid",
        relax=True,
    ),  # fmt: skip
)


# --------------------------------------------------------------------- the error's parts
def redraw(seed: int, draw: int) -> Panel:
    """factor_block(seed) with its noise (the last draw of the generator) redrawn."""
    p = factor_block(seed)
    rng = np.random.default_rng(seed)
    N, T = p.Y.shape
    rng.normal(size=(N, 2))
    rng.normal(size=(T, 2))
    rng.normal(size=(N, 1))
    old = 0.5 * rng.normal(size=(N, T))
    new = 0.5 * np.random.default_rng([seed, draw]).normal(size=(N, T))
    return Panel(Y=p.Y - old + new, W=p.W, units=p.units, times=p.times, blackout=p.blackout)


def decompose_row(case: Case, seed: int, settings: Mapping[str, Any]) -> Row:
    r = TROPEstimator(seed=seed, n_boot=50).fit(factor_block(seed)).result_
    lams = tuple(r.details[k] for k in LAMBDAS)
    est = np.array(
        [
            TROPEstimator(*lams, se="none").fit(redraw(seed, k)).result_.effect
            for k in range(int(settings["draws"]))
        ]
    )
    bias, sd = est.mean() - TAU, est.std(ddof=1)
    return {**dict(zip(LAMBDAS, lams, strict=True)), "bootstrap_se": r.se,
            "conditional_bias": bias, "conditional_sd": sd}  # fmt: skip


def refit_rows(case: Case, seed: int, settings: Mapping[str, Any]) -> list[Row]:
    p = factor_block(seed)
    Y, W = p.Y, p.W
    obs = ~W
    N, T = Y.shape
    S, n = pair_stats(Y, obs, np.arange(N))
    dist = np.sqrt(S / n)
    med = np.median(dist[~np.eye(N, dtype=bool)])
    ti, tt = np.nonzero(W)
    weights = []
    for i, t in zip(ti, tt, strict=True):
        uw = np.exp(-2.0 / med * dist[i])
        uw[i] = 1.0
        weights.append(obs * uw[:, None] * np.exp(-0.3 * np.abs(np.arange(T) - t))[None])
    Wt = np.array(weights)
    truth = Y[ti, tt] - TAU
    k = np.arange(len(ti))
    rows = []
    for iters in (200, 1000, 5000):
        a, b, L, _ = fit_fe_rank(Y, Wt, 2, max_iter=iters, tol=0.0)
        fit = a[:, :, None] + b[:, None, :] + L
        err = a[k, ti] + b[k, tt] + L[k, ti, tt] - truth
        rows.append({"iterations": iters, "objective": float((Wt * (Y[None] - fit) ** 2).sum()),
                     "mean_error": float(err.mean()), "max_abs_error": float(np.abs(err).max())})  # fmt: skip
    return rows


def as_table(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return rows.rename(columns={"run": "seed"})


DECOMPOSE = Study(
    name="trop-decompose",
    cases=({},),
    run_one=decompose_row,
    summarise=as_table,
    results="trop-decompose.csv",
    runs=20,
    options={"draws": 30},
)
REFIT = Study(
    name="trop-refit",
    cases=({},),
    run_one=refit_rows,
    summarise=as_table,
    results="trop-refit.csv",
    runs=4,
)


# ------------------------------------------------------------------ the page's summaries
#: what the page's tables summarise: each saved study's rows, and two subsets (the old default
#: on the grid-relax core run's seeds 0-249; the loo run on the wide-grid run's seeds)
SUMMARISED: tuple[dict[str, Any], ...] = (
    *({"variant": s.name} for s in VARIANTS),
    {"variant": "trop-core-random", "below": 250},
    {"variant": "trop-loo", "like": "trop-wide-grid"},
)


def _saved(name: str) -> pd.DataFrame:
    (study,) = [s for s in VARIANTS if s.name == name]
    return pd.read_csv(FIGURES / study.results, sep="\t")


def summary_row(case: Case, run: int, settings: Mapping[str, Any]) -> Row:
    rows = _saved(case["variant"])
    if "below" in case:
        rows = rows[rows["seed"] < case["below"]]
    if "like" in case:
        rows = rows[rows["seed"].isin(_saved(case["like"])["seed"])]
    return summary(rows)


def _key(case: Mapping[str, Any]) -> str:
    return case["variant"] + "".join(f" {k} {case[k]}" for k in ("below", "like") if k in case)


def summaries(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """The summary of each saved study (:func:`summary`), by study name (a subset: the name
    and ``below N`` or ``like NAME``)."""
    keys = [k for k in rows.columns if k not in ("variant", "below", "like", "run")]
    out = {}
    for case, (_, row) in zip(SUMMARISED, rows.iterrows(), strict=True):
        out[_key(case)] = {k: _plain(row[k]) for k in keys if not _missing(row[k])}
    return {"summaries": out}


def _missing(x: Any) -> bool:
    """A statistic the study does not have (no TWFE fit in a refit, no seed without a
    low-rank term), which the rows' frame holds as NaN."""
    return isinstance(x, float) and math.isnan(x)


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return x


def _view(results: Any) -> dict[str, Any]:
    assert isinstance(results, dict)
    return {"v": results["summaries"]}


COVERAGE = Study(
    name="trop-coverage",
    cases=SUMMARISED,
    run_one=summary_row,
    summarise=summaries,
    results="trop-coverage.json",
    runs=1,
    page=Page("docs/analysis-advanced.md", "trop_coverage.md.j2", section="trop-coverage"),
    context=_view,
)
"""The statistics the page's TROP tables show, from the saved rows of every coverage study
(instant: nothing is fitted): ``python -m lab.studies trop-coverage`` (and
``trop-coverage-core``, ``trop-coverage-core-relax``, the page's other two tables from the same
summaries)."""
COVERAGE_CORE = replace(
    COVERAGE,
    name="trop-coverage-core",
    page=Page("docs/analysis-advanced.md", "trop_coverage_core.md.j2", "trop-coverage-core"),
)
COVERAGE_CORE_RELAX = replace(
    COVERAGE,
    name="trop-coverage-core-relax",
    page=Page(
        "docs/analysis-advanced.md", "trop_coverage_core_relax.md.j2", "trop-coverage-core-relax"
    ),
)
