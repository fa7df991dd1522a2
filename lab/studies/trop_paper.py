"""TROP against its own paper (issue #27): the semi-synthetic design behind Table 1 of Athey,
Imbens, Qu & Viviano, "Triply robust panel estimators" (arXiv 2508.21536), random assignment,
with pricelab's estimators at their defaults.

The design, as the authors' replication code builds it (github.com/zhaonanq/TROP-Estimator,
read at the fork xyang23/TROP-Estimator@356641e2, ``notebookes/utils.py``; written here from
its description, not copied):

- the real outcome matrix (units x years) is divided by its standard deviation and then
  de-meaned (Germany: log GDP first);
- its rank-4 truncated SVD L is the systematic part (two-way effects plus interactions); the
  residual E = Y - L gives the noise: a pooled AR(2) fitted to E by least squares without an
  intercept, its autocorrelation matrix over the T years scaled so that its Frobenius norm is
  that of E'E / N;
- each replication draws every unit's noise path from N(0, that covariance), Y = L + noise,
  assigns 10 units at random (uniformly, without replacement) to treatment in the last 10
  years, and adds no effect: every estimate is an error, and RMSE = sqrt(mean(estimate^2));
- the table normalises each estimator's RMSE by TROP's (pricelab's, and the replication's).

Four studies, run in this order (``trop-paper`` reads what ``trop-paper-tune`` saved):

    .venv/bin/python -m lab.studies trop-paper-tune            # trop-paper-dgp-tuned.json
    .venv/bin/python -m lab.studies trop-paper --jobs 2        # trop-paper.tsv, the table
    .venv/bin/python -m lab.studies trop-paper-heterogeneous   # trop-paper-heterogeneous.json
    .venv/bin/python -m lab.studies trop-paper-mc-refits       # trop-paper-mc-refits.json

``trop-paper``: replication r of a panel is drawn from the generator (``seed``, r) (200
replications of Smoking, ``smoking_reps``; 100 of Basque and Germany, ``reps``); every
estimator of ``estimators`` is fitted to it, one row each (panel, rep, estimator, estimate,
seconds, and TROP's tuned lambdas), saved as docs/figures/trop-paper.tsv; the page's section
``trop-paper`` of docs/analysis-advanced.md shows RMSEs and ratios to TROP with a bootstrap
interval over replications, beside the paper's row (Smoking) and the RMSEs saved in the
authors' notebooks. Estimators beside the registry's six: ``trop-authors`` and ``mc-authors``
(:func:`authors_trop`: the replication code's TROP and MC, re-implemented, at the authors' tuned
lambdas), ``trop-paper-lambdas`` (pricelab's TROP at those lambdas converted,
:func:`paper_rates`) and ``trop-dgp-tuned`` (pricelab's TROP at the grid point
``trop-paper-tune`` kept). ``trop-paper-tune``: every point of TROP's default grid scored by
its RMSE over 30 independent draws of the design. ``trop-paper-heterogeneous``: the design with
an effect rising over the treated periods, the replication's TROP against pricelab's.
``trop-paper-mc-refits``: how often MC-NNM's rank refit did not settle. 2026-11-25: about 25
minutes on 2 cores for everything.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimators.registry import make
from analysis.estimators.trop import TROPEstimator, reference_scales
from analysis.panel import Panel
from lab.studies.harness import FIGURES, ROOT, Case, Page, Results, Row, Run, Study, mean_mcse

DATA = ROOT / "tests" / "data"
TUNED = "trop-paper-dgp-tuned.json"
SEED = 2508
RANK = 4
N_TREATED = 10
N_POST = 10

# panel: (file, unit column, time column, outcome column, log outcome)
PANELS: dict[str, tuple[str, str, str, str, bool]] = {
    "smoking": ("california_prop99.csv", "State", "Year", "PacksPerCapita", False),
    "basque": ("basque_gdpcap.csv", "region", "year", "gdpcap", False),
    "germany": ("germany_gdp.csv", "country", "year", "gdp", True),
}
ESTIMATORS = ("trop", "sdid", "sc", "did", "mc", "difp")
# Table 1 of the paper, random assignment, RMSE / TROP's (quoted in issue #27; the other panels'
# rows are not in the sources this study could read)
PAPER: dict[str, dict[str, float]] = {
    "smoking": {"trop": 1.00, "sdid": 1.22, "sc": 1.48, "did": 2.16, "mc": 1.14, "difp": 1.45},
}
# RMSEs saved in the authors' notebooks "TROP_<panel> (Table 2).ipynb" (1,000 replications; 100
# for Basque), same order as ESTIMATORS
NOTEBOOK: dict[str, tuple[float, ...]] = {
    "smoking": (0.2301, 0.2834, 0.3701, 0.5066, 0.2787, 0.3153),
    "basque": (0.0883, 0.1390, 0.2346, 0.3289, 0.1394, 0.1394),
    "germany": (0.0538, 0.0805, 0.1025, 0.1475, 0.0729, 0.0952),
}
# the lambdas (unit, time, nn) the authors tuned for each panel's random-assignment row
AUTHORS_LAMBDAS: dict[str, tuple[float, float, float]] = {
    "smoking": (0.4, 0.3, 0.0265),
    "basque": (1.2, 0.3, 0.005),
    "germany": (0.6, 0.2, 0.015),
}
LAMBDAS = ("lambda_time", "lambda_unit", "lambda_nn")


def real_matrix(panel: str) -> np.ndarray:
    """The panel's outcome as a units x years matrix, standardised as the paper's code does."""
    file, unit, year, outcome, log = PANELS[panel]
    df = pd.read_csv(DATA / file, sep=";")
    Y = df.pivot(index=unit, columns=year, values=outcome).to_numpy(dtype=float)
    if log:
        Y = np.log(Y)
    Y = Y / Y.std()
    return Y - Y.mean()


def ar2(E: np.ndarray) -> tuple[float, float]:
    """Pooled AR(2) coefficients of the rows of E, least squares, no intercept."""
    x1, x2, y = E[:, 1:-1].ravel(), E[:, :-2].ravel(), E[:, 2:].ravel()
    A = np.array([[x1 @ x1, x1 @ x2], [x1 @ x2, x2 @ x2]])
    phi = np.linalg.solve(A, np.array([x1 @ y, x2 @ y]))
    return float(phi[0]), float(phi[1])


def noise_covariance(E: np.ndarray) -> np.ndarray:
    """The AR(2) autocorrelation matrix over the T periods, scaled so that its Frobenius norm
    equals that of E'E / N."""
    N, T = E.shape
    phi1, phi2 = ar2(E)
    rho = np.empty(T)
    rho[0] = 1.0
    if T > 1:
        rho[1] = phi1 / (1.0 - phi2)
    for t in range(2, T):
        rho[t] = phi1 * rho[t - 1] + phi2 * rho[t - 2]
    C = rho[np.abs(np.subtract.outer(np.arange(T), np.arange(T)))]
    return C * (np.linalg.norm(E.T @ E / N) / np.linalg.norm(C))


@functools.cache
def components(panel: str) -> tuple[np.ndarray, np.ndarray]:
    """(L, noise covariance): the rank-4 systematic part and the AR(2) noise of the panel;
    computed once per process (read-only: ``draw`` does not change them)."""
    Y = real_matrix(panel)
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    L = (U[:, :RANK] * s[:RANK]) @ Vt[:RANK]
    return L, noise_covariance(Y - L)


def draw(L: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> Panel:
    """One replication: L + AR(2) noise, 10 random units treated in the last 10 periods, no
    effect."""
    N, T = L.shape
    noise = rng.multivariate_normal(np.zeros(T), cov, size=N, method="eigh")
    W = np.zeros((N, T), bool)
    W[rng.choice(N, size=N_TREATED, replace=False), T - N_POST :] = True
    return Panel(
        Y=L + noise, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros((N, T), bool)
    )


def paper_rates(panel: str, p: Panel) -> dict[str, float]:
    """The authors' tuned (unit, time, nn) for the panel in pricelab's TROP parametrisation.

    Their weights multiply the residuals inside the square, so a cell's weight is
    exp(-2 lambda d): pricelab's rates are twice theirs. Their unit distance is on the
    standardised outcome (as here) and pricelab's lambda_unit is per median pairwise distance,
    so it is multiplied by that median; their nuclear-norm penalty multiplies an unnormalised
    sum of squares as pricelab's does, and pricelab's lambda_nn is a fraction of its
    reference penalty. Both scales are the estimator's own (``trop.reference_scales`` on the
    untreated cells). Their time distance is from the middle of the treated block and their
    fit has one common effect for the block (``authors_trop``); pricelab fits each treated
    cell with time weights from its own period, so the conversion matches the rates, not the
    estimator.
    """
    lu, lt, nn = AUTHORS_LAMBDAS[panel]
    med, ref = reference_scales(p.Y, ~p.W)
    return {"lambda_unit": 2 * lu * med, "lambda_time": 2 * lt, "lambda_nn": nn / ref}


def authors_trop(
    Y: np.ndarray,
    W: np.ndarray,
    lambda_unit: float,
    lambda_time: float,
    lambda_nn: float,
    *,
    max_iter: int = 20000,
    tol: float = 1e-10,
) -> float:
    """The replication code's TROP (``TROP_TWFE_average``), re-implemented from its definition
    to check this study's design against the authors' saved RMSEs: one weighted fit over all
    cells, treated included, of Y = mu + a_i + b_t + L + tau W with a single tau for the block,

        min sum_it delta_it^2 (Y - mu - a - b - L - tau W)_it^2 + lambda_nn ||L||_*,
        delta_it = exp(-lambda_unit d_i) exp(-lambda_time |t - (T - P/2)|),

    d_i the RMS gap between unit i and the treated units' average path over the T - P
    pre-periods, P the treated periods; ``lambda_nn = inf``: no L. Solved by proximal
    gradient (FISTA) on L with the effects and tau updated in sweeps at each step, until both
    L's step and tau's change are below ``tol`` relative to their size; the authors use
    cvxpy's default solver.
    """
    N, T = Y.shape
    post = W.any(axis=0)
    P = int(post.sum())
    avg = Y[W.any(axis=1)].mean(axis=0)
    d = np.sqrt(((Y - avg)[:, ~post] ** 2).mean(axis=1))
    dt = np.abs(np.arange(T) - (T - P / 2))
    om = (np.exp(-lambda_unit * d)[:, None] * np.exp(-lambda_time * dt)[None, :]) ** 2
    scale = om.max()
    om = om / scale  # weights at most 1: the step 1/2 is valid; the penalty scales with them
    thr = (lambda_nn / scale) / 2.0 if math.isfinite(lambda_nn) else None
    Wf = W.astype(float)
    a, b, tau = np.zeros(N), np.zeros(T), 0.0
    L = np.zeros((N, T))
    M, mom = L.copy(), 1.0
    row, col, wtr = om.sum(axis=1), om.sum(axis=0), (om * Wf).sum()
    prev = math.nan
    for it in range(max_iter):
        R = Y - M
        for _ in range(4):
            a = (om * (R - b[None] - tau * Wf)).sum(axis=1) / row
            b = (om * (R - a[:, None] - tau * Wf)).sum(axis=0) / col
            tau = float((om * Wf * (R - a[:, None] - b[None])).sum() / wtr)
        tau_settled = abs(tau - prev) < tol * (abs(tau) + 1e-8)
        prev = tau
        if thr is None:  # weighted least squares only: the sweeps until tau settles
            if tau_settled and it >= 10:
                break
            continue
        Z = M + om * (Y - a[:, None] - b[None] - tau * Wf - M)
        U, sv, Vt = np.linalg.svd(Z, full_matrices=False)
        L_new = (U * np.maximum(sv - thr, 0.0)) @ Vt
        if ((M - L_new) * (L_new - L)).sum() > 0:  # adaptive restart
            mom = 1.0
        mom_new = (1.0 + math.sqrt(1.0 + 4.0 * mom**2)) / 2.0
        step = L_new - L
        M = L_new + ((mom - 1.0) / mom_new) * step
        L_settled = np.sqrt((step**2).sum()) <= tol * (np.sqrt((L_new**2).sum()) + 1e-8)
        L, mom = L_new, mom_new
        # both: L can sit at 0 (a large penalty) while the effects and tau still move
        if L_settled and tau_settled and it >= 10:
            break
    return tau


# ------------------------------------------------------------------------- the replications
def tuned_rates(data: str) -> dict[str, float]:
    """The grid point ``trop-paper-tune`` kept for ``data`` (docs/figures/TUNED)."""
    tuned = json.loads((FIGURES / TUNED).read_text())[data]
    return {k: float(tuned[k]) for k in LAMBDAS}


def at_rates(rates: Mapping[str, float]) -> TROPEstimator:
    """pricelab's TROP at fixed (lambda_time, lambda_unit, lambda_nn), no SE, one thread."""
    lt, lu, nn = (float(rates[k]) for k in LAMBDAS)
    return TROPEstimator(lambda_time=lt, lambda_unit=lu, lambda_nn=nn, se="none", threads=1)


def fit_one(name: str, panel: Panel, data: str) -> tuple[float, dict[str, Any]]:
    """Estimator ``name``'s estimate on ``panel`` (a draw of ``data``), and TROP's lambdas."""
    if name in ("trop-authors", "mc-authors"):
        lu, lt, nn = AUTHORS_LAMBDAS[data]
        if name == "mc-authors":
            lu, lt = 0.0, 0.0
        return authors_trop(panel.Y, panel.W, lu, lt, nn), {}
    if name == "trop":
        res = TROPEstimator(se="none", threads=1).fit(panel).result_
        return res.effect, {k: res.details[k] for k in LAMBDAS}
    if name in ("trop-dgp-tuned", "trop-paper-lambdas"):
        rates = tuned_rates(data) if name == "trop-dgp-tuned" else paper_rates(data, panel)
        res = at_rates(rates).fit(panel).result_
        return res.effect, rates
    return make(name, se="none").fit(panel).result_.effect, {}


FIELDS = ("panel", "rep", "estimator", "estimate", "seconds", *LAMBDAS)


def replication(case: Case, rep: int, settings: Mapping[str, Any]) -> list[Row]:
    """Replication ``rep`` of the case's panel: a row per estimator."""
    data = case["panel"]
    L, cov = components(data)
    panel = draw(L, cov, np.random.default_rng([settings["seed"], rep]))
    rows = []
    for name in str(settings["estimators"]).split(","):
        t0 = time.perf_counter()
        est, extra = fit_one(name, panel, data)
        rows.append(
            {"estimator": name, "estimate": est, "seconds": round(time.perf_counter() - t0, 2),
             **{k: extra.get(k, math.nan) for k in LAMBDAS}}
        )  # fmt: skip
    return rows


def replications(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return rows.rename(columns={"run": "rep"})[list(FIELDS)]


def ratios(df: pd.DataFrame, boot: int = 2000) -> pd.DataFrame:
    """Per panel and estimator: replications, RMSE, bias, and the RMSE over pricelab's TROP's
    (``ratio``) and over the replication's TROP's (``ratio_authors``), each with a 95%
    bootstrap interval over replications (paired: the same replications for both)."""
    rows = []
    rng = np.random.default_rng(0)
    for data, g in df.groupby("panel", sort=False):
        wide = g.pivot(index="rep", columns="estimator", values="estimate").dropna()
        n = len(wide)
        idx = rng.integers(0, n, size=(boot, n))
        for name in wide.columns:
            e = wide[name].to_numpy()
            row: dict[str, Any] = {
                "panel": data,
                "estimator": name,
                "reps": n,
                "rmse": math.sqrt(float(np.mean(e**2))),
                "bias": float(e.mean()),
            }
            for ref, key in (("trop", "ratio"), ("trop-authors", "ratio_authors")):
                if ref not in wide:
                    continue
                r = wide[ref].to_numpy()
                draws = np.sqrt((e[idx] ** 2).mean(axis=1) / (r[idx] ** 2).mean(axis=1))
                row[key] = row["rmse"] / math.sqrt(float(np.mean(r**2)))
                row[f"{key}_lo"], row[f"{key}_hi"] = np.quantile(draws, [0.025, 0.975])
            rows.append(row)
    return pd.DataFrame(rows)


#: the rows of the rendered table: (estimator, what it is); the paper's and the notebook's
#: columns go on the rows of the replication's own estimators
ROWS = (
    ("trop-authors", "the replication code's TROP, re-implemented, at the authors' tuned lambdas"),
    ("trop", "**pricelab TROP, defaults** (tuned on the replication's panel alone)"),
    ("trop-dgp-tuned", "pricelab TROP at the grid point best over 30 draws of the design"),
    ("trop-paper-lambdas", "pricelab TROP at the authors' lambdas, converted"),
    ("sdid", "pricelab SDID"),
    ("sc", "pricelab SC"),
    ("did", "pricelab DID"),
    ("mc-authors", "the replication code's MC (its TROP at lambda_unit = lambda_time = 0)"),
    ("mc", "pricelab MC-NNM, defaults"),
    ("difp", "pricelab DIFP"),
)
#: which of the paper's / notebook's columns (named as in ESTIMATORS) each row matches
PAPER_COLUMN = {"trop-authors": "trop", "sdid": "sdid", "sc": "sc", "did": "did"}
PAPER_COLUMN |= {"mc-authors": "mc", "difp": "difp"}


def _finite(x: Any) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def table_context(results: Results) -> dict[str, Any]:
    """Each panel's table rows (RMSE, the two ratios with their intervals, the notebook's and
    the paper's ratios where they exist) and pricelab's six by RMSE."""
    assert isinstance(results, pd.DataFrame)
    s = ratios(results)
    panels = []
    for data, g in s.groupby("panel", sort=False):
        g = g.set_index("estimator")
        nb = dict(zip(ESTIMATORS, NOTEBOOK.get(str(data), ()), strict=False))
        paper = PAPER.get(str(data), {})
        rows = []
        for name, what in ROWS:
            if name not in g.index:
                continue
            col = PAPER_COLUMN.get(name)
            rows.append(
                {"what": what, "rmse": float(g.loc[name, "rmse"]),
                 **{k: _finite(g.loc[name].get(k)) for k in
                    ("ratio", "ratio_lo", "ratio_hi", "ratio_authors", "ratio_authors_lo",
                     "ratio_authors_hi")},
                 "notebook": nb[col] / nb["trop"] if col and col in nb else None,
                 "paper": paper.get(col) if col else None}
            )  # fmt: skip
        ranked = g.loc[[n for n in ESTIMATORS if n in g.index], "rmse"].sort_values()
        panels.append(
            {"title": str(data).capitalize(), "reps": int(g["reps"].min()), "rows": rows,
             "ranked": list(ranked.index)}
        )  # fmt: skip
    return {"panels": panels}


PANEL_CASES: tuple[dict[str, Any], ...] = (
    {"panel": "smoking", "runs": "smoking_reps"},
    {"panel": "basque", "runs": "reps"},
    {"panel": "germany", "runs": "reps"},
)
OPTIONS = {"smoking_reps": 200, "reps": 100}

STUDY = Study(
    name="trop-paper",
    cases=PANEL_CASES,
    run_one=replication,
    summarise=replications,
    results="trop-paper.tsv",
    seed=SEED,
    options={
        **OPTIONS,
        "estimators": ",".join(
            (*ESTIMATORS, "trop-paper-lambdas", "trop-authors", "mc-authors", "trop-dgp-tuned")
        ),
    },
    page=Page("docs/analysis-advanced.md", "trop_paper.md.j2", section="trop-paper"),
    context=table_context,
)


# ------------------------------------------------------------------ tuning on the design
def default_grid() -> list[tuple[float, float, float]]:
    """TROP's default tuning grid, (time, unit, nn) points."""
    base = TROPEstimator()
    return [
        (float(lt), float(lu), float(nn))
        for lt in base.lambda_time_grid
        for lu in base.lambda_unit_grid
        for nn in base.lambda_nn_grid
    ]


def design_error(case: Case, trial: int, settings: Mapping[str, Any]) -> Row:
    """One tuning trial: an independent draw of the evaluated design itself (10 random units
    treated in the last 10 periods, no effect; seeds apart from the replications'), TROP at the
    case's grid point without tuning; the estimate is the error."""
    lt, lu, nn = default_grid()[case["point"]]
    L, cov = components(case["panel"])
    panel = draw(L, cov, np.random.default_rng([settings["seed"], 1_000_000 + trial]))
    est = TROPEstimator(lambda_time=lt, lambda_unit=lu, lambda_nn=nn, se="none", threads=1)
    return {"error": est.fit(panel).result_.effect}


def tuned(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """Per panel: the grid point with the lowest RMSE over the trials, and every point's RMSE."""
    grid = default_grid()
    out: dict[str, Any] = {}
    for data, g in rows.groupby("panel", sort=False):
        rmse = np.sqrt(g.groupby("point")["error"].apply(lambda e: float(np.mean(e**2))))
        rmse = rmse.reindex(range(len(grid))).to_numpy()
        best = int(np.argmin(rmse))
        out[str(data)] = {
            **dict(zip(LAMBDAS, grid[best], strict=True)),
            "rmse": float(rmse[best]),
            "trials": int(run.options["trials"]),
            "grid": [[*p, float(r)] for p, r in zip(grid, rmse, strict=True)],
        }
    return out


TUNE = Study(
    name="trop-paper-tune",
    cases=tuple({"panel": p, "point": k, "runs": "trials"} for p in PANELS for k in range(64)),
    run_one=design_error,
    summarise=tuned,
    results=TUNED,
    seed=SEED,
    options={"trials": 30},
    chunk=10,
)
"""Tuning on the data-generating process, as the authors' code does (their trials put one
placebo unit on the panel's controls; here each trial is a draw of the evaluated design
itself): every point of pricelab's default grid is scored by the RMSE over ``trials``
independent draws, and the best point is kept for every replication (estimator
``trop-dgp-tuned``). An analyst with one panel has no such draws: this measures what tuning on
the panel alone costs, it is not a method to use."""


# ------------------------------------------------------------ an effect varying over time
#: the fits of ``trop-paper-heterogeneous``, in the table's order
HETEROGENEOUS = (
    "trop-authors",
    "trop-authors, no low rank",
    "trop-authors, no weights, no low rank",
    "trop-dgp-tuned",
)


def heterogeneous(case: Case, rep: int, settings: Mapping[str, Any]) -> list[Row]:
    """The same design with an effect that varies over the treated periods: 0.1, 0.2, ..., 1.0
    in the 10 treated periods (in units of the panel's SD; the average effect on the treated
    cells, the estimand, is 0.55). The errors against 0.55 of the replication's TROP (one tau
    for the block) as tuned, without its low-rank term, and without weights or low-rank term
    (two-way fixed effects), and of pricelab's TROP at the grid point ``trop-paper-tune`` kept
    (each treated cell imputed on its own)."""
    data = case["panel"]
    L, cov = components(data)
    lu, lt, nn = AUTHORS_LAMBDAS[data]
    ramp = np.linspace(0.1, 1.0, N_POST)
    truth = float(ramp.mean())
    p = draw(L, cov, np.random.default_rng([settings["seed"], 2_000_000 + rep]))
    Y = p.Y.copy()
    Y[:, -N_POST:] += p.W[:, -N_POST:] * ramp[None, :]
    q = Panel(Y=Y, W=p.W, units=p.units, times=p.times, blackout=p.blackout)
    est = at_rates(tuned_rates(data)).fit(q).result_.effect
    fits = (
        authors_trop(Y, p.W, lu, lt, nn),
        authors_trop(Y, p.W, lu, lt, math.inf),
        authors_trop(Y, p.W, 0.0, 0.0, math.inf),
        est,
    )
    return [{"fit": name, "error": e - truth} for name, e in zip(HETEROGENEOUS, fits, strict=True)]


def heterogeneous_summary(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    panels = []
    for data, g in rows.groupby("panel", sort=False):
        fits = []
        for name in HETEROGENEOUS:
            e = g.loc[g["fit"] == name, "error"].to_numpy(dtype=float)
            bias, mcse = mean_mcse(e)
            fits.append({"fit": name, "bias": bias, "mcse": mcse,
                         "rmse": math.sqrt(float(np.mean(e**2))), "reps": len(e)})  # fmt: skip
        panels.append({"panel": str(data), "fits": fits})
    return {"panels": panels}


def _titled(results: Results) -> dict[str, Any]:
    assert isinstance(results, dict)
    return {"panels": [{**p, "title": p["panel"].capitalize()} for p in results["panels"]]}


HETEROGENEOUS_STUDY = Study(
    name="trop-paper-heterogeneous",
    cases=tuple({"panel": p, "runs": "reps"} for p in PANELS),
    run_one=heterogeneous,
    summarise=heterogeneous_summary,
    results="trop-paper-heterogeneous.json",
    seed=SEED,
    options={"reps": 100},
    page=Page(
        "docs/analysis-advanced.md",
        "trop_paper_heterogeneous.md.j2",
        section="trop-paper-heterogeneous",
    ),  # fmt: skip
    context=_titled,
)


# ---------------------------------------------------------------- MC-NNM's rank refit
def mc_refit(case: Case, rep: int, settings: Mapping[str, Any]) -> Row:
    """pricelab's MC-NNM on replication ``rep``: the reported estimate, the refit's where it
    stopped, and whether the refit settled (``details['refit_settled']``)."""
    L, cov = components(case["panel"])
    p = draw(L, cov, np.random.default_rng([settings["seed"], rep]))
    d = make("mc", se="none").fit(p).result_
    return {"reported": d.effect, "refit": float(d.details["effect_refit"]),
            "settled": bool(d.details["refit_settled"])}  # fmt: skip


def mc_refit_summary(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """Per panel: how often the refit did not settle, and the RMSE of the reported estimate
    against that of the refit where it stopped (what was reported before the refit could be
    dropped)."""
    panels = []
    for data, g in rows.groupby("panel", sort=False):
        panels.append(
            {"panel": str(data), "reps": len(g), "not_settled": int((~g["settled"]).sum()),
             "rmse_reported": math.sqrt(float(np.mean(g["reported"] ** 2))),
             "rmse_refit": math.sqrt(float(np.mean(g["refit"] ** 2)))}
        )  # fmt: skip
    return {"panels": panels}


MC_REFITS = Study(
    name="trop-paper-mc-refits",
    cases=(
        {"panel": "basque", "runs": "reps"},
        {"panel": "germany", "runs": "reps"},
        {"panel": "smoking", "runs": "smoking_reps"},
    ),
    run_one=mc_refit,
    summarise=mc_refit_summary,
    results="trop-paper-mc-refits.json",
    seed=SEED,
    options=dict(OPTIONS),
    page=Page(
        "docs/analysis-advanced.md", "trop_paper_mc_refits.md.j2", section="trop-paper-mc-refits"
    ),
    context=_titled,
)
