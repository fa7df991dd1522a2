"""Simulation study for the core panel estimators (did, sc, difp, sdid): bias, RMSE, coverage.

    .venv/bin/python -m lab.studies panel-core [--runs 10] [--jobs 1] [--set batch=50]
        [--set first_seed=0] [--set placebo_sims=500] [--set reps=50]
        [--set time_placebo_sims=500] [--set scenarios=random,confounded] [--set methods=did,sdid]

DGP (analysis.pricing_dgp.factor_panel): Y_it(0) = alpha_i + beta_t + L_i'F_t + eps_it, rank 2
random-walk factors, N = 30 units, T = 20 periods, 3 treated units from period 15, effect
tau = 1, eps ~ N(0, 1). Scenarios: ``random`` (treated units drawn at random: every estimator is
unbiased) and ``confounded`` (treated units are those loading most on the first factor: parallel
trends fail). Two more scenarios without factors test what each variance method conditions on:
``unit_hetero`` (treated units 3x as noisy) and ``period_hetero`` (post-period 3x as noisy for
all units); see ``hetero_panel``. Each simulation is seeded by its index, so runs are
reproducible.

Three variance methods, each on its own number of simulations (the first k seeds):

- jackknife (Arkhangelsky et al. 2021, Algorithm 3, all simulations): intervals estimate +- 1.96 SE
  (normal) and estimate +- t_{df, 0.975} SE with the Welch-Satterthwaite df of its treated and
  control parts (``inference.jackknife_split``), as the library reports them;
- placebo (Algorithm 4, the first ``placebo_sims`` simulations, ``reps`` draws each), normal
  and Student t(N0 - 1) (``inference.placebo_df``, the library's reference since 2026-11-23);
- time placebo (``inference.time_placebo_variance``: the treated units fixed, a window of
  min(T_post, T_pre // 2) periods moved over the pre-period, mean square of the placebo
  estimates; the first ``time_placebo_sims`` simulations): normal, and Student t with the
  windows' overlap df (``inference.time_placebo_df``), as the library reports it.

A case is a scenario and an estimator (``scenarios`` and ``methods`` choose which run); a run is
a batch of ``batch`` consecutive seeds from ``first_seed`` (``--runs 10``: 500 simulations),
fitted as one batch; so are the placebo refits and, per window start, the time-placebo refits
(each a fresh fit with the original fit's regularisation, as the library does). The placebo's
permutations are drawn from one generator over all simulations, whatever the batches. For each
method the summary reports the mean SE, the ratio of the root mean square SE to the sd of the
estimates, coverage, and the share of |z| = |tau_hat - tau| / SE above 1.96 and above 3 (the
tails that decide coverage).

Saves docs/figures/panel-core.json (a row per scenario and estimator) and renders the point
estimates table of docs/analysis-core.md (section ``panel-core``; ``panel-core-confounded``
renders the confounded scenario's jackknife table from the same results). The saved results
are a run with ``--set placebo_sims=0`` (9 CPU-minutes): the unit placebo's figures on the page
(about 10 more CPU-minutes a scenario) are still those of the earlier script's run.
``reference_check`` compares the first 20 simulations with the PyPI package ``synthdid-py`` (a
port of R synthdid) when it is importable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis import inference
from analysis.estimators.synth import (
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    SynthSpec,
    fit_block_batch,
    noise_level,
)
from analysis.pricing_dgp import factor_panel
from lab.studies.harness import Case, Page, Row, Run, Study, grid

TAU = 1.0
N, T, N1, T0 = 30, 20, 3, 15
N0 = N - N1
SPECS: dict[str, SynthSpec | None] = {
    "did": None,
    "sc": SyntheticControl.spec,
    "difp": SyntheticControlIntercept.spec,
    "sdid": SyntheticDID.spec,
}


def hetero_panel(seed: int, scenario: str) -> np.ndarray:
    """Control-first Y without factors, noise sd 3 (else 1) on the treated units or post-period.

    ``unit_hetero``: the treated units are 3x as noisy as the controls (what the time placebo,
    conditional on the units, should see and the unit placebo cannot); ``period_hetero``: every
    unit is 3x as noisy in the post-period (the reverse). alpha_i ~ N(0, 4), beta_t a random walk.
    """
    rng = np.random.default_rng(seed)
    sd = np.ones((N, T))
    if scenario == "unit_hetero":
        sd[N0:] = 3.0
    else:
        sd[:, T0:] = 3.0
    alpha = rng.normal(0.0, 2.0, N)
    beta = np.cumsum(rng.normal(0.0, 0.5, T))
    Y = alpha[:, None] + beta[None, :] + sd * rng.normal(size=(N, T))
    Y[N0:, T0:] += TAU
    return Y


def simulate(seeds: range, scenario: str) -> np.ndarray:
    """Stack of control-first outcome matrices, one per seed."""
    if scenario in ("unit_hetero", "period_hetero"):
        return np.stack([hetero_panel(s, scenario) for s in seeds])
    return np.stack(
        [
            factor_panel(
                s,
                n_units=N,
                n_periods=T,
                n_treated=N1,
                n_pre=T0,
                tau=TAU,
                confounded=scenario == "confounded",
            )
            .sorted_for_block()
            .Y
            for s in seeds
        ]
    )


def tuning(Ys: np.ndarray, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sigma = np.array([noise_level(Y, N0, T0) for Y in Ys])
    eta_o = (N1 * (T - T0)) ** 0.25 if spec.eta_omega is None else spec.eta_omega
    return eta_o * sigma, spec.eta_lambda * sigma, 1e-5 * sigma


def fit_all(name: str, Ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """(taus, omegas, lambdas, tuning) for every simulated panel."""
    S = len(Ys)
    spec = SPECS[name]
    if spec is None:
        omegas = np.full((S, N0), 1.0 / N0)
        lams = np.full((S, T0), 1.0 / T0)
        contrast = Ys[:, :, T0:].mean(axis=2) - Ys[:, :, :T0].mean(axis=2)
        taus = contrast[:, N0:].mean(axis=1) - contrast[:, :N0].mean(axis=1)
        return taus, omegas, lams, (None, None, None)
    zo, zl, md = tuning(Ys, spec)
    taus, omegas, lams = fit_block_batch(
        Ys, N0, T0, spec, zeta_omega=zo, zeta_lambda=zl, min_decrease=md
    )
    return taus, omegas, lams, (zo, zl, md)


def placebo_se(
    name: str,
    Ys: np.ndarray,
    omegas: np.ndarray,
    lams: np.ndarray,
    tuning: tuple,
    reps: int,
    skip: int = 0,
) -> np.ndarray:
    """Algorithm 4 for every panel, all placebo refits of all panels in one batch. The
    permutations come from one generator over the study's panels: a batch whose first panel is
    the study's ``skip``-th passes over the ``skip`` earlier panels' draws."""
    S = len(Ys)
    rng = np.random.default_rng(2024)
    for _ in range(skip * reps):
        rng.permutation(N0)
    n0 = N0 - N1
    perms = np.stack([[rng.permutation(N0) for _ in range(reps)] for _ in range(S)])  # S,R,N0
    Yp = np.take_along_axis(Ys[:, None, :N0, :], perms[..., None], axis=2)  # S,R,N0,T
    Yp = Yp.reshape(S * reps, N0, T)
    spec = SPECS[name]
    if spec is None:
        contrast = Yp[:, :, T0:].mean(axis=2) - Yp[:, :, :T0].mean(axis=2)
        taus = contrast[:, n0:].mean(axis=1) - contrast[:, :n0].mean(axis=1)
    else:
        om0 = np.take_along_axis(omegas[:, None, :], perms[:, :, :n0], axis=2)
        tot = om0.sum(axis=2, keepdims=True)
        om0 = np.where(tot > 0, om0 / np.where(tot > 0, tot, 1), 1.0 / n0).reshape(S * reps, n0)
        lam0 = np.repeat(lams, reps, axis=0)
        zo, zl, md = (np.repeat(v, reps) for v in tuning)
        taus, _, _ = fit_block_batch(
            Yp,
            n0,
            T0,
            spec,
            zeta_omega=zo,
            zeta_lambda=zl,
            min_decrease=md,
            omega0=om0,
            lambda0=lam0,
        )
    taus = taus.reshape(S, reps)
    return taus.std(axis=1)


def jackknife_se(
    Ys: np.ndarray, omegas: np.ndarray, lams: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(SE, Welch-Satterthwaite df) per panel; NaN where the jackknife is undefined."""
    se = np.full(len(Ys), np.nan)
    df = np.full(len(Ys), np.nan)
    for k, (Y, om, lam) in enumerate(zip(Ys, omegas, lams, strict=True)):
        # a single control carrying all weight leaves the jackknife undefined for that draw
        with contextlib.suppress(inference.InferenceError):
            split = inference.jackknife_split(Y, N0, T0, om, lam)
            se[k], df[k] = np.sqrt(split.variance), split.df
    return se, df


def time_placebo_se(name: str, Ys: np.ndarray, tuning: tuple) -> np.ndarray:
    """``inference.time_placebo_variance`` for every panel, one batch per window start."""
    L = min(T - T0, T0 // 2)
    sq = np.zeros(len(Ys))
    starts = range(2, T0 - L + 1)
    spec = SPECS[name]
    for s in starts:
        Yw = Ys[:, :, : s + L]
        if spec is None:
            contrast = Yw[:, :, s:].mean(axis=2) - Yw[:, :, :s].mean(axis=2)
            taus = contrast[:, N0:].mean(axis=1) - contrast[:, :N0].mean(axis=1)
        else:
            zo, zl, md = tuning
            taus, _, _ = fit_block_batch(
                Yw, N0, s, spec, zeta_omega=zo, zeta_lambda=zl, min_decrease=md
            )
        sq += taus**2
    return np.sqrt(sq / len(starts))


def interval_stats(
    taus: np.ndarray, se: np.ndarray, df: np.ndarray | None = None
) -> dict[str, float]:
    """Coverage of the 95% interval (t when df given), mean SE, rms SE / sd, tails of z."""
    ok = np.isfinite(se)
    err = np.abs(taus[ok] - TAU)
    z = err / se[ok]
    crit = 1.959964 if df is None else stats.t.ppf(0.975, df[ok])
    sd = float(np.std(taus[ok], ddof=1))
    return {
        "n": int(ok.sum()),
        "mean_se": float(np.mean(se[ok])),
        "sd": sd,
        "se_ratio": float(np.sqrt(np.mean(se[ok] ** 2)) / sd),
        "cover": float(np.mean(err <= crit * se[ok])),
        "z_gt_196": float(np.mean(z > 1.959964)),
        "z_gt_3": float(np.mean(z > 3.0)),
        "median_df": float(np.median(df[ok])) if df is not None else float("nan"),
    }


def panel_rows(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """Batch ``run`` of the case: a row per simulated panel (its seed, estimate, jackknife SE and
    df, and its placebo and time-placebo SEs where the panel is among the first
    ``placebo_sims`` / ``time_placebo_sims``)."""
    scenario, name = case["scenario"], case["method"]
    if scenario not in str(settings["scenarios"]).split(","):
        return []
    if name not in str(settings["methods"]).split(","):
        return []
    batch, first = int(settings["batch"]), int(settings["first_seed"])
    start = run * batch  # the batch's first panel, counted from first_seed
    Ys = simulate(range(first + start, first + start + batch), scenario)
    taus, omegas, lams, tune = fit_all(name, Ys)
    jk, jk_df = jackknife_se(Ys, omegas, lams)
    pl = np.full(batch, np.nan)
    k = max(0, min(batch, int(settings["placebo_sims"]) - start))
    if k:
        tune_k = tuple(None if v is None else v[:k] for v in tune)
        pl[:k] = placebo_se(
            name, Ys[:k], omegas[:k], lams[:k], tune_k, int(settings["reps"]), skip=start
        )
    tp = np.full(batch, np.nan)
    k = max(0, min(batch, int(settings["time_placebo_sims"]) - start))
    if k:
        tp[:k] = time_placebo_se(name, Ys[:k], tuple(None if v is None else v[:k] for v in tune))
    return [
        {"seed": first + start + i, "tau": float(taus[i]), "jackknife": float(jk[i]),
         "jackknife_df": float(jk_df[i]), "placebo": float(pl[i]), "time_placebo": float(tp[i])}
        for i in range(batch)
    ]  # fmt: skip


def summarise_case(g: pd.DataFrame) -> dict[str, Any]:
    """The script's row: bias, RMSE, sd and each variance method's interval statistics."""
    taus, jk, jk_df = (g[k].to_numpy(dtype=float) for k in ("tau", "jackknife", "jackknife_df"))
    sims = len(taus)
    row: dict[str, Any] = {
        "sims": sims,
        "first_seed": int(g["seed"].min()),
        "bias": float(np.mean(taus) - TAU),
        "mc_se_bias": float(np.std(taus, ddof=1) / np.sqrt(sims)),
        "rmse": float(np.sqrt(np.mean((taus - TAU) ** 2))),
        "sd": float(np.std(taus, ddof=1)),
        "jk_mean_se": float(np.nanmean(jk)),
        "jackknife": interval_stats(taus, jk),
        "jackknife_t": interval_stats(taus, jk, jk_df),
    }
    pl = g["placebo"].to_numpy(dtype=float)
    k = int(np.isfinite(pl).sum())
    if k:  # the first k panels
        row["placebo"] = interval_stats(taus[:k], pl[:k])
        row["placebo_t"] = interval_stats(taus[:k], pl[:k], np.full(k, inference.placebo_df(N0)))
    tp = g["time_placebo"].to_numpy(dtype=float)
    k = int(np.isfinite(tp).sum())
    if k:
        row["time_placebo"] = interval_stats(taus[:k], tp[:k])
        tp_df = np.full(k, inference.time_placebo_df(T0, T - T0))
        row["time_placebo_t"] = interval_stats(taus[:k], tp[:k], tp_df)
    return row


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    out = []
    for case, seconds in zip(CASES, run.seconds, strict=True):
        g = rows[(rows["scenario"] == case["scenario"]) & (rows["method"] == case["method"])]
        if len(g):
            out.append({**case, **summarise_case(g), "seconds": seconds})
    options = {k: run.options[k] for k in ("placebo_sims", "reps", "time_placebo_sims")}
    return {"tau": TAU, "N": N, "T": T, "N1": N1, "T0": T0, **options, "rows": out}


def reference_check(n: int = 20) -> dict[str, float] | None:
    """Largest |ours - synthdid-py| over the first n random-scenario panels, per method."""
    try:
        import synthdid as ref  # synthdid-py on PyPI: a port of R synthdid
    except ImportError:
        return None
    Ys = simulate(range(n), "random")
    out = {}
    funcs = {"did": ref.did_estimate, "sc": ref.sc_estimate, "sdid": ref.synthdid_estimate}
    for name, f in funcs.items():
        ours = fit_all(name, Ys)[0]
        theirs = np.array([float(f(Y, N0, T0)) for Y in Ys])
        out[name] = float(np.max(np.abs(ours - theirs)))
    return out


CASES = grid(scenario=("random", "confounded", "unit_hetero", "period_hetero"), method=tuple(SPECS))

STUDY = Study(
    name="panel-core",
    page=Page("docs/analysis-core.md", "panel_core.md.j2", section="panel-core"),
    cases=CASES,
    run_one=panel_rows,
    summarise=summarise,
    results="panel-core.json",
    runs=10,
    options={
        "batch": 50,
        "first_seed": 0,
        "placebo_sims": 500,
        "reps": 50,
        "time_placebo_sims": 500,
        "scenarios": "random,confounded,unit_hetero,period_hetero",
        "methods": ",".join(SPECS),
    },
)
#: the confounded scenario's jackknife table, a second section from the same results
#: (``python -m lab.studies panel-core-confounded --render-only``)
CONFOUNDED = replace(
    STUDY,
    name="panel-core-confounded",
    page=Page("docs/analysis-core.md", "panel_core_confounded.md.j2", "panel-core-confounded"),
)
