"""Why `difp` is biased in the A/A calibration of docs/validation.md (time-bound design).

    .venv/bin/python -m lab.studies difp-aa               # 100 runs, about 3 minutes
    .venv/bin/python -m lab.studies difp-aa --runs 30     # quicker, noisier

Rebuilds the A/A time-bound panels of the validation study exactly (default market with
AA_OVERRIDES, products seed 0; run r: demand seed ``run_seed(0, r)``, design seed
``run_seed(1, r)``; 28 days, treated from day 14; the estimates of runs 0-99 equal the study's),
then tests one hypothesis at a time:

1. reproduction: difp, sc, sdid, did on those panels;
2. implementation: the same penalised objective (simplex weights with intercept, ridge
   1e-6 sigma) solved exactly by an independent QP solver (SLSQP), and our Frank-Wolfe without
   the sparsify step;
3. assignment: on fixed outcomes, re-draw the stratified assignment many times and swap the
   labels (a label-symmetric, assignment-unbiased estimator averages to 0 and tau(swap) = -tau);
4. mechanism: which controls get weight (level, pre-period count noise), the estimate split into
   its expected-demand and count-noise parts, and the count noise mirrored or sign-flipped;
5. remedies: log outcome, longer pre-period (T0 = 28, 56), the ridge of SDID, Poisson counts.

The cases: ``T0=14`` (parts 1, 2, 4 and the ridges of 5, one row a run), ``T0=28``, ``T0=56``
and ``poisson`` (the rest of 5), and ``rerandomisation`` (part 3: the first
``rerandom_panels`` runs' outcomes). Parts 3 and 4 draw from one stream each over the runs
(seeds 123 and 5): run r replays the stream's draws for the runs before it, so that every run
is computed on its own and its draws are the ones a single pass over the runs makes.

Saves docs/figures/validation-difp_aa.json (``seconds``: the runs' computing time), which
docs/validation.md's A/A section renders; re-renders docs/validation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from analysis.estimators.synth import (
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    SynthSpec,
    fit_block,
    noise_level,
)
from controller.designs import design_matrices
from controller.spec import TimeBoundSettings
from lab.compare import AA_OVERRIDES, make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.studies.harness import Case, Row, Run, Study, mean_mcse, run_seed
from lab.studies.spillover_worker import refresh_validation

DIFP = SyntheticControlIntercept.spec
POST = 14
RERANDOM_PANELS = 10
RERANDOM_DRAWS = 30
RERANDOM_SEED = 123
SIGNFLIP_SEED = 5
#: the remedies that change difp's ridge (None: SDID's own)
RIDGES = {"ridge 0.1 sigma": 0.1, "ridge 1 sigma": 1.0, "ridge of sdid": None}
#: part 4's figures, in the order saved
MECHANISM = (
    "tau_expected",
    "tau_noise",
    "lvl_tr",
    "lvl_w",
    "lvl_co",
    "noise_pre_w",
    "noise_post_w",
    "noise_pre_tr",
    "var_pre_w",
    "var_pre_co",
    "mirrored",
    "signflip",
    "expected_only",
    "log1p",
)


def panel(run: int, pre: int, overrides: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Run ``run``'s A/A time-bound panel of the validation study (pre-period ``pre`` days,
    then 14 days): outcomes Y, expected control units E, assignment W, the products'
    categories and base levels."""
    cfg = MarketConfig.model_validate(
        MarketConfig().model_dump() | AA_OVERRIDES | dict(overrides or {})
    )
    m = Market(cfg, seed=0, demand_seed=run_seed(0, run))
    spec = make_spec("time-bound", m, days=pre + POST, seed=run_seed(1, run))
    spec = spec.model_copy(update={"time_bound": TimeBoundSettings(start_period=pre)})
    W = design_matrices(spec, list(m.product_ids)).treated
    df = m.simulate_panel(W)
    return {
        "Y": df["units"].to_numpy(float).reshape(W.shape),
        "E": df["y0_expected"].to_numpy(float).reshape(W.shape),
        "W": W,
        "cats": m.category_codes,
        "levels": m.base_levels,
    }


def block(W: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Row order (controls first), N0, T0 of a block assignment."""
    tr = W.any(axis=1)
    return np.r_[np.flatnonzero(~tr), np.flatnonzero(tr)], int((~tr).sum()), int(W.any(0).argmax())


def contrast(Yb: np.ndarray, T0: int) -> np.ndarray:
    return Yb[:, T0:].mean(axis=1) - Yb[:, :T0].mean(axis=1)


def tau(Y: np.ndarray, W: np.ndarray, spec: SynthSpec = DIFP) -> float:
    order, N0, T0 = block(W)
    return fit_block(Y[order], N0, T0, spec).tau


def did(Y: np.ndarray, W: np.ndarray) -> float:
    order, N0, T0 = block(W)
    c = contrast(Y[order], T0)
    return float(c[N0:].mean() - c[:N0].mean())


def exact_difp_weights(Yb: np.ndarray, N0: int, T0: int) -> np.ndarray:
    """DIFP's objective solved by SLSQP (independent of our Frank-Wolfe): minimise
    zeta^2 |w|^2 + |A w - b|^2 / T0 over the simplex, A and b the de-meaned pre-period paths of
    the controls and of the treated mean, zeta = 1e-6 sigma (Arkhangelsky et al. 2021, DIFP)."""
    zeta = 1e-6 * noise_level(Yb, N0, T0)
    A = Yb[:N0, :T0].T
    b = Yb[N0:, :T0].mean(axis=0)
    A = A - A.mean(axis=0)
    b = b - b.mean()

    def f(w: np.ndarray) -> float:
        return float(zeta**2 * w @ w + np.sum((A @ w - b) ** 2) / T0)

    def g(w: np.ndarray) -> np.ndarray:
        return 2 * zeta**2 * w + 2 * A.T @ (A @ w - b) / T0

    res = minimize(
        f,
        np.full(N0, 1.0 / N0),
        jac=g,
        method="SLSQP",
        bounds=[(0.0, None)] * N0,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": np.ones_like}],
        options={"ftol": 1e-14, "maxiter": 2000},
    )
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def split(Y: np.ndarray, E: np.ndarray, W: np.ndarray) -> tuple[float, float, float]:
    """difp's estimate and its parts from expected demand E[Y] and from count noise Y - E[Y]
    (both with difp's own weights)."""
    order, N0, T0 = block(W)
    fit = fit_block(Y[order], N0, T0, DIFP)
    cE, cZ = contrast(E[order], T0), contrast(Y[order] - E[order], T0)
    return (
        fit.tau,
        float(cE[N0:].mean() - fit.omega @ cE[:N0]),
        float(cZ[N0:].mean() - fit.omega @ cZ[:N0]),
    )


def signs(run: int, shape: tuple[int, ...]) -> np.ndarray:
    """Run ``run``'s random signs: the (run + 1)-th draw of the seed-``SIGNFLIP_SEED`` stream,
    as one pass over the runs draws them."""
    rng = np.random.default_rng(SIGNFLIP_SEED)
    for _ in range(run):
        rng.choice([-1.0, 1.0], size=shape)
    return rng.choice([-1.0, 1.0], size=shape)


def main_row(run: int) -> Row:
    """Parts 1, 2 and 4 and the ridges of part 5 on run ``run``'s panel (T0 = 14)."""
    d = panel(run, 14)
    Y, W, E = d["Y"], d["W"], d["E"]
    order, N0, T0 = block(W)
    Yb, Eb, Lb = Y[order], E[order], d["levels"][order]
    fit = fit_block(Yb, N0, T0, DIFP)
    row: Row = {
        "difp": fit.tau,
        "sc": tau(Y, W, SyntheticControl.spec),
        "sdid": tau(Y, W, SyntheticDID.spec),
        "did": did(Y, W),
    }
    # 2. implementation
    w = exact_difp_weights(Yb, N0, T0)
    c = contrast(Yb, T0)
    A = Yb[:N0, :T0].T - Yb[:N0, :T0].T.mean(axis=0)
    b = Yb[N0:, :T0].mean(axis=0)
    b = b - b.mean()
    s2 = noise_level(Yb, N0, T0) ** 2
    row |= {
        "exact_qp": float(c[N0:].mean() - w @ c[:N0]),
        "no_sparsify": fit_block(Yb, N0, T0, replace(DIFP, sparsify=False)).tau,
        "obj_ours": float(np.mean((A @ fit.omega - b) ** 2) / s2),
        "obj_exact": float(np.mean((A @ w - b) ** 2) / s2),
        "nnz_ours": int((fit.omega > 0).sum()),
        "nnz_exact": int((w > 1e-6).sum()),
    }
    # 4. mechanism
    Zb = Yb - Eb  # count noise (mean 0 given the latent demand)
    _, row["tau_expected"], row["tau_noise"] = split(Y, E, W)
    sd_pre = np.diff(Yb[:N0, :T0], axis=1).std(axis=1, ddof=1)  # variability of each control
    Z = Y - E
    row |= {
        "lvl_tr": float(Lb[N0:].mean()),
        "lvl_w": float(fit.omega @ Lb[:N0]),
        "lvl_co": float(Lb[:N0].mean()),
        "noise_pre_w": float(fit.omega @ Zb[:N0, :T0].mean(axis=1)),
        "noise_post_w": float(fit.omega @ Zb[:N0, T0:].mean(axis=1)),
        "noise_pre_tr": float(Zb[N0:, :T0].mean()),
        "var_pre_w": float(fit.omega @ sd_pre),
        "var_pre_co": float(sd_pre.mean()),
        "mirrored": tau(E - Z, W),
        "signflip": tau(E + Z * signs(run, Z.shape), W),
        "expected_only": tau(E, W),
        "log1p": tau(np.log1p(Y), W),
    }
    # 5. remedies: difp's ridge
    for name, eta in RIDGES.items():
        row[name] = tau(Y, W, replace(DIFP, eta_omega=eta))
    return row


def assignments(rng: np.random.Generator, cats: np.ndarray, N: int) -> list[np.ndarray]:
    """``RERANDOM_DRAWS`` treated sets, half of each category as the design draws them."""
    out = []
    for _ in range(RERANDOM_DRAWS):
        tr = np.zeros(N, dtype=bool)
        for c in np.unique(cats):  # half of each category, like the design
            idx = rng.permutation(np.flatnonzero(cats == c))
            tr[idx[: len(idx) // 2 + int(rng.integers(0, 2)) * (len(idx) % 2)]] = True
        out.append(tr)
    return out


def rerandomised_row(run: int) -> Row:
    """Part 3 on run ``run``'s outcomes: difp averaged over re-drawn assignments, with the
    labels swapped, and did; the draws follow the seed-``RERANDOM_SEED`` stream's for the runs
    before."""
    d = panel(run, 14)
    Y, cats = d["Y"], d["cats"]
    N, T = Y.shape
    rng = np.random.default_rng(RERANDOM_SEED)
    for _ in range(run):
        assignments(rng, cats, N)
    v, s, dd = [], [], []
    for tr in assignments(rng, cats, N):
        W = np.zeros((N, T), dtype=bool)
        W[tr, 14:] = True
        W2 = np.zeros((N, T), dtype=bool)
        W2[~tr, 14:] = True
        v.append(tau(Y, W))
        s.append(tau(Y, W2))
        dd.append(did(Y, W))
    return {
        "per_panel": float(np.mean(v)),
        "swap_sum": float(np.mean(np.add(v, s))),
        "did_mean": float(np.mean(dd)),
    }


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row:
    part = case["part"]
    if part == "T0=14":
        return main_row(run)
    if part == "rerandomisation":
        return rerandomised_row(run)
    if part == "poisson":
        d = panel(run, 14, {"nb_dispersion": None, "outlier_probability": 0.0})
        t, pe, pn = split(d["Y"], d["E"], d["W"])
        return {"poisson": t, "poisson_expected": pe, "poisson_noise": pn}
    d = panel(run, case["pre"])
    return {part: tau(d["Y"], d["W"]), f"{part} did": did(d["Y"], d["W"])}


def stat(x: pd.Series | np.ndarray) -> dict[str, float]:
    """Mean, Monte-Carlo SE, their ratio and the count."""
    a = np.asarray(x, dtype=float)
    mean, mcse = mean_mcse(a)
    return {"mean": mean, "mcse": mcse, "z": mean / mcse, "n": len(a)}


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    part = {p: g for p, g in rows.groupby("part", sort=False)}
    main, rr = part["T0=14"], part["rerandomisation"]
    out: dict[str, Any] = {"runs": len(main), "post_days": POST}
    out["reproduction"] = {k: stat(main[k]) for k in ("difp", "sc", "sdid", "did")}
    out["implementation"] = {
        "exact_qp": stat(main["exact_qp"]),
        "no_sparsify": stat(main["no_sparsify"]),
        "fit_mse_over_sigma2_ours_median": float(np.median(main["obj_ours"])),
        "fit_mse_over_sigma2_exact_median": float(np.median(main["obj_exact"])),
        "nonzero_weights_ours": float(np.mean(main["nnz_ours"])),
        "nonzero_weights_exact": float(np.mean(main["nnz_exact"])),
    }
    out["rerandomisation"] = {
        "panels": len(rr),
        "draws": RERANDOM_DRAWS,
        "seed": RERANDOM_SEED,
        "mean_over_assignments": stat(rr["per_panel"]),
        "positive_panels": int(np.sum(rr["per_panel"].to_numpy() > 0)),
        "tau_plus_swapped": stat(rr["swap_sum"]),
        "swapped_positive_panels": int(np.sum(rr["swap_sum"].to_numpy() > 0)),
        "did_mean_over_assignments": stat(rr["did_mean"]),
    }
    out["mechanism"] = {k: stat(main[k]) for k in MECHANISM}
    rem = {k: stat(main[k]) for k in RIDGES}
    for pre in (28, 56):
        g = part[f"T0={pre}"]
        rem[f"T0={pre}"] = stat(g[f"T0={pre}"])
        rem[f"T0={pre} did"] = stat(g[f"T0={pre} did"])
    for k in ("poisson", "poisson_expected", "poisson_noise"):
        rem[k] = stat(part["poisson"][k])
    out["remedies"] = rem
    out["seconds"] = sum(run.seconds)
    return out


STUDY = Study(
    name="difp-aa",
    cases=(
        {"part": "T0=14"},
        {"part": "rerandomisation", "runs": "rerandom_panels"},
        {"part": "T0=28", "pre": 28},
        {"part": "T0=56", "pre": 56},
        {"part": "poisson"},
    ),
    run_one=run_one,
    summarise=summarise,
    results="validation-difp_aa.json",
    runs=100,
    options={"rerandom_panels": RERANDOM_PANELS},
    refresh=refresh_validation,
)
