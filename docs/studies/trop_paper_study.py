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

Each replication's seed is (``--seed``, replication), so a run can be split and resumed:
``run`` appends one row per replication and estimator to ``--out`` (TSV: panel, rep,
estimator, estimate, seconds, and TROP's tuned lambdas). ``summary`` prints RMSEs, ratios to
TROP with a bootstrap interval over replications, beside the paper's row (Smoking) and the
RMSEs saved in the authors' notebooks; ``--render`` writes the table between the
``<!-- trop-paper -->`` markers of docs/analysis-advanced.md.

    E=trop,sdid,sc,did,mc,difp,trop-paper-lambdas,trop-authors,mc-authors
    T=docs/figures/trop-paper.tsv
    python docs/studies/trop_paper_study.py run --panel smoking --reps 0:200 --estimators $E --out $T
    python docs/studies/trop_paper_study.py run --panel basque --reps 0:100 --estimators $E --out $T
    python docs/studies/trop_paper_study.py run --panel germany --reps 0:100 --estimators $E --out $T
    python docs/studies/trop_paper_study.py tune-dgp --panel smoking   # and basque, germany
    python docs/studies/trop_paper_study.py run --panel smoking --reps 0:200 --estimators trop-dgp-tuned --out $T
    python docs/studies/trop_paper_study.py heterogeneous --panel smoking --reps 100
    python docs/studies/trop_paper_study.py mc-refits --panel basque --reps 100
    python docs/studies/trop_paper_study.py summary $T --render

Estimators beside the registry's six (``--estimators``, comma-separated): ``trop-authors``
and ``mc-authors`` (``authors_trop``: the replication code's TROP and MC, re-implemented, at
the authors' tuned lambdas), ``trop-paper-lambdas`` (pricelab's TROP at those lambdas
converted, ``paper_rates``) and ``trop-dgp-tuned`` (pricelab's TROP at the grid point
``tune-dgp`` kept). ``heterogeneous``: the design with an effect rising over the treated
periods, the replication's TROP against pricelab's. 2026-11-25: about 25 minutes on 2 cores
for everything above.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

from analysis.estimators.registry import make  # noqa: E402
from analysis.estimators.trop import TROPEstimator, reference_scales  # noqa: E402
from analysis.panel import Panel  # noqa: E402

DATA = ROOT / "tests" / "data"
DOC = ROOT / "docs" / "analysis-advanced.md"
MARK = "trop-paper"
TUNED = ROOT / "docs" / "figures" / "trop-paper-dgp-tuned.json"
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


def fit_one(name: str, panel: Panel, data: str) -> tuple[float, dict[str, Any]]:
    if name in ("trop-authors", "mc-authors"):
        lu, lt, nn = AUTHORS_LAMBDAS[data]
        if name == "mc-authors":
            lu, lt = 0.0, 0.0
        return authors_trop(panel.Y, panel.W, lu, lt, nn), {}
    if name == "trop":
        res = TROPEstimator(se="none", threads=1).fit(panel).result_
        keys = ("lambda_time", "lambda_unit", "lambda_nn")
        return res.effect, {k: res.details[k] for k in keys}
    if name == "trop-dgp-tuned":
        tuned = json.loads(TUNED.read_text())[data]
        keys = ("lambda_time", "lambda_unit", "lambda_nn")
        rates = {k: float(tuned[k]) for k in keys}
        res = TROPEstimator(se="none", threads=1, **rates).fit(panel).result_
        return res.effect, rates
    if name == "trop-paper-lambdas":
        rates = paper_rates(data, panel)
        res = TROPEstimator(se="none", threads=1, **rates).fit(panel).result_
        return res.effect, rates
    return make(name, se="none").fit(panel).result_.effect, {}


def one_replication(args: tuple[str, int, int, tuple[str, ...]]) -> list[dict[str, Any]]:
    data, seed, rep, names = args
    L, cov = components(data)
    panel = draw(L, cov, np.random.default_rng([seed, rep]))
    rows = []
    for name in names:
        t0 = time.perf_counter()
        est, extra = fit_one(name, panel, data)
        rows.append(
            {
                "panel": data,
                "rep": rep,
                "estimator": name,
                "estimate": est,
                "seconds": round(time.perf_counter() - t0, 2),
                **{k: extra.get(k, "") for k in ("lambda_time", "lambda_unit", "lambda_nn")},
            }
        )
    return rows


FIELDS = (
    "panel",
    "rep",
    "estimator",
    "estimate",
    "seconds",
    "lambda_time",
    "lambda_unit",
    "lambda_nn",
)


def run(args: argparse.Namespace) -> None:
    a, b = (int(x) for x in args.reps.split(":"))
    names = tuple(args.estimators.split(",")) if args.estimators else ESTIMATORS
    out = Path(args.out)
    done: set[tuple[str, int, str]] = set()
    if out.exists():
        prev = pd.read_csv(out, sep="\t")
        done = set(zip(prev.panel, prev.rep, prev.estimator, strict=True))
    # each replication fits only the estimators it has no row for yet
    todo = {r: tuple(n for n in names if (args.panel, r, n) not in done) for r in range(a, b)}
    new_file = not out.exists()
    with out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS, delimiter="\t")
        if new_file:
            w.writeheader()
        jobs = [(args.panel, args.seed, r, todo[r]) for r in todo if todo[r]]
        with ProcessPoolExecutor(args.workers) as pool:
            for rows in pool.map(one_replication, jobs):
                for row in rows:
                    if (row["panel"], row["rep"], row["estimator"]) not in done:
                        w.writerow(row)
                fh.flush()
                print(
                    " ".join(f"{r['estimator']}={r['estimate']:+.3f}" for r in rows),
                    f"rep {rows[0]['rep']}",
                    flush=True,
                )


def _design_error(args: tuple[str, int, int, tuple[float, float, float]]) -> float:
    """One tuning trial: an independent draw of the evaluated design itself (10 random units
    treated in the last 10 periods, no effect; seeds apart from the replications'), TROP at
    the given (time, unit, nn) without tuning; the estimate is the error."""
    data, seed, trial, (lt, lu, nn) = args
    L, cov = components(data)
    panel = draw(L, cov, np.random.default_rng([seed, 1_000_000 + trial]))
    est = TROPEstimator(lambda_time=lt, lambda_unit=lu, lambda_nn=nn, se="none", threads=1)
    return est.fit(panel).result_.effect


def tune_dgp(args: argparse.Namespace) -> None:
    """Tuning on the data-generating process, as the authors' code does (their trials put
    one placebo unit on the panel's controls; here each trial is a draw of the evaluated
    design itself): every point of pricelab's default grid is scored by the RMSE over
    ``--trials`` independent draws, and the best point is kept for every replication
    (estimator ``trop-dgp-tuned``). An analyst with one panel has no such draws: this
    measures what tuning on the panel alone costs, it is not a method to use."""
    base = TROPEstimator()
    grid = [
        (float(lt), float(lu), float(nn))
        for lt in base.lambda_time_grid
        for lu in base.lambda_unit_grid
        for nn in base.lambda_nn_grid
    ]
    jobs = [(args.panel, args.seed, t, g) for g in grid for t in range(args.trials)]
    with ProcessPoolExecutor(args.workers) as pool:
        errs = np.array(list(pool.map(one_trial_chunk, _chunks(jobs, 64)))).reshape(-1)
    rmse = np.sqrt((errs.reshape(len(grid), args.trials) ** 2).mean(axis=1))
    best = int(np.argmin(rmse))
    lt, lu, nn = grid[best]
    out = json.loads(TUNED.read_text()) if TUNED.exists() else {}
    out[args.panel] = {
        "lambda_time": lt,
        "lambda_unit": lu,
        "lambda_nn": nn,
        "rmse": float(rmse[best]),
        "trials": args.trials,
        "grid": [[*g, float(r)] for g, r in zip(grid, rmse, strict=True)],
    }
    TUNED.write_text(json.dumps(out, indent=1) + "\n")
    order = np.argsort(rmse)[:5]
    for i in order:
        print(grid[i], f"{rmse[i]:.4f}")
    print(f"kept {grid[best]} for {args.panel} in {TUNED}")


def _chunks(jobs: list[Any], size: int) -> list[list[Any]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def one_trial_chunk(jobs: list[tuple[str, int, int, tuple[float, float, float]]]) -> list[float]:
    return [_design_error(j) for j in jobs]


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


def summarise(df: pd.DataFrame, boot: int = 2000) -> pd.DataFrame:
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


def _ratio(g: pd.DataFrame, name: str, key: str) -> str:
    if key not in g.columns or pd.isna(g.loc[name, key]):
        return ""
    return f"{g.loc[name, key]:.2f} ({g.loc[name, key + '_lo']:.2f}-{g.loc[name, key + '_hi']:.2f})"


def render(s: pd.DataFrame) -> str:
    lines = []
    for data, g in s.groupby("panel", sort=False):
        g = g.set_index("estimator")
        reps = int(g["reps"].min())
        nb = dict(zip(ESTIMATORS, NOTEBOOK.get(data, ()), strict=False))
        paper = PAPER.get(data, {})
        lines.append(
            f"**{data.capitalize()}** ({reps} replications; ratios of RMSEs with 95% bootstrap "
            "intervals over replications)\n"
        )
        lines.append(
            "| estimator | RMSE | / pricelab TROP | / replication's TROP "
            "| authors' notebook | paper, Table 1 |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name, what in ROWS:
            if name not in g.index:
                continue
            col = PAPER_COLUMN.get(name)
            nb_txt = f"{nb[col] / nb['trop']:.2f}" if col and col in nb else ""
            pa_txt = f"{paper[col]:.2f}" if col and col in paper else ""
            lines.append(
                f"| {what} | {g.loc[name, 'rmse']:.4f} | {_ratio(g, name, 'ratio')} "
                f"| {_ratio(g, name, 'ratio_authors')} | {nb_txt} | {pa_txt} |"
            )
        ranked = g.loc[[n for n in ESTIMATORS if n in g.index], "rmse"].sort_values()
        lines.append(f"\npricelab's six at their defaults, by RMSE: {' < '.join(ranked.index)}\n")
    return "\n".join(lines)


def summary(args: argparse.Namespace) -> None:
    df = pd.read_csv(args.tsv, sep="\t")
    s = summarise(df)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(s.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    text = render(s)
    print(text)
    tuned = df[df.estimator == "trop"]
    if len(tuned):
        print("TROP's tuned (time, unit, nn), most frequent:")
        print(
            tuned.groupby(["panel", "lambda_time", "lambda_unit", "lambda_nn"])
            .size()
            .sort_values(ascending=False)
            .head(12)
            .to_string()
        )
    if args.render:
        doc = DOC.read_text()
        pat = re.compile(rf"(<!-- {MARK} -->\n).*?(<!-- /{MARK} -->)", re.S)
        if not pat.search(doc):
            raise SystemExit(f"no <!-- {MARK} --> markers in {DOC}")
        DOC.write_text(pat.sub(lambda m: m.group(1) + text + "\n" + m.group(2), doc))
        print(f"wrote the table into {DOC}")


def heterogeneous(args: argparse.Namespace) -> None:
    """The same design with an effect that varies over the treated periods: 0.1, 0.2, ..., 1.0
    in the 10 treated periods (in units of the panel's SD; the average effect on the treated
    cells, the estimand, is 0.55). Bias and RMSE against 0.55, same replications, of the
    replication's TROP (one tau for the block) as tuned, without its low-rank term, and
    without weights or low-rank term (two-way fixed effects), and of pricelab's TROP at the
    grid point ``tune-dgp`` kept (each treated cell imputed on its own)."""
    L, cov = components(args.panel)
    tuned = json.loads(TUNED.read_text())[args.panel]
    rates = {k: float(tuned[k]) for k in ("lambda_time", "lambda_unit", "lambda_nn")}
    lu, lt, nn = AUTHORS_LAMBDAS[args.panel]
    ramp = np.linspace(0.1, 1.0, N_POST)
    truth = float(ramp.mean())
    fits = {
        "trop-authors": lambda Y, W: authors_trop(Y, W, lu, lt, nn),
        "trop-authors, no low rank": lambda Y, W: authors_trop(Y, W, lu, lt, math.inf),
        "trop-authors, no weights, no low rank": lambda Y, W: authors_trop(
            Y, W, 0.0, 0.0, math.inf
        ),
    }
    errs: dict[str, list[float]] = {k: [] for k in [*fits, "trop-dgp-tuned"]}
    for r in range(args.reps):
        p = draw(L, cov, np.random.default_rng([args.seed, 2_000_000 + r]))
        Y = p.Y.copy()
        Y[:, -N_POST:] += p.W[:, -N_POST:] * ramp[None, :]
        for name, fit in fits.items():
            errs[name].append(fit(Y, p.W) - truth)
        q = Panel(Y=Y, W=p.W, units=p.units, times=p.times, blackout=p.blackout)
        est = TROPEstimator(se="none", threads=1, **rates).fit(q).result_.effect
        errs["trop-dgp-tuned"].append(est - truth)
    for name, e in errs.items():
        a = np.asarray(e)
        mcse = a.std(ddof=1) / math.sqrt(len(a))
        rmse = math.sqrt(float(np.mean(a**2)))
        print(
            f"{args.panel} {name}: bias {a.mean():+.4f} (MC se {mcse:.4f})  RMSE {rmse:.4f}"
            f"  over {len(a)} replications"
        )


def mc_refits(args: argparse.Namespace) -> None:
    """pricelab's MC-NNM on each replication of ``--panel``: how often its rank refit did not
    settle (``details['refit_settled']``), and the RMSE of the reported estimate against that
    of the refit where it stopped (what was reported before the refit could be dropped)."""
    L, cov = components(args.panel)
    reported, refit, dropped = [], [], 0
    for r in range(args.reps):
        p = draw(L, cov, np.random.default_rng([args.seed, r]))
        d = make("mc", se="none").fit(p).result_
        reported.append(d.effect)
        refit.append(d.details["effect_refit"])
        dropped += not d.details["refit_settled"]
    rm = math.sqrt(float(np.mean(np.square(reported))))
    rf = math.sqrt(float(np.mean(np.square(refit))))
    print(
        f"{args.panel}: refit not settled in {dropped} of {args.reps} replications; "
        f"RMSE reported {rm:.4f}, of the refit where it stopped {rf:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--panel", choices=sorted(PANELS), required=True)
    r.add_argument("--reps", default="0:200", help="replications A:B")
    r.add_argument("--seed", type=int, default=2508)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--estimators", default="", help="comma-separated; default: the six")
    r.add_argument("--out", required=True)
    t = sub.add_parser("tune-dgp")
    t.add_argument("--panel", choices=sorted(PANELS), required=True)
    t.add_argument("--trials", type=int, default=30)
    t.add_argument("--seed", type=int, default=2508)
    t.add_argument("--workers", type=int, default=2)
    h = sub.add_parser("heterogeneous")
    h.add_argument("--panel", choices=sorted(PANELS), required=True)
    h.add_argument("--reps", type=int, default=100)
    h.add_argument("--seed", type=int, default=2508)
    m = sub.add_parser("mc-refits")
    m.add_argument("--panel", choices=sorted(PANELS), required=True)
    m.add_argument("--reps", type=int, default=100)
    m.add_argument("--seed", type=int, default=2508)
    s = sub.add_parser("summary")
    s.add_argument("tsv")
    s.add_argument("--render", action="store_true")
    args = ap.parse_args()
    commands = {"run": run, "tune-dgp": tune_dgp, "heterogeneous": heterogeneous}
    commands["mc-refits"] = mc_refits
    (commands | {"summary": summary})[args.cmd](args)


if __name__ == "__main__":
    main()
