"""Simulation study for the core panel estimators (did, sc, difp, sdid): bias, RMSE, coverage.

DGP (tests/unit/_panel_dgp.py): Y_it(0) = alpha_i + beta_t + L_i'F_t + eps_it, rank 2 random-walk
factors, N = 30 units, T = 20 periods, 3 treated units from period 15, effect tau = 1,
eps ~ N(0, 1). Scenarios: ``random`` (treated units drawn at random: every estimator is unbiased)
and ``confounded`` (treated units are those loading most on the first factor: parallel trends
fail). Each simulation is seeded by its index, so runs are reproducible.

Intervals are estimate +- 1.96 SE with the jackknife SE (Arkhangelsky et al. 2021, Algorithm 3,
all simulations) and the placebo SE (Algorithm 4, the first ``--placebo-sims`` simulations with
``--reps`` placebo draws each). All simulations of one estimator are fitted as one batch.

If the PyPI package ``synthdid-py`` (a port of R synthdid) is importable, the first 20
simulations are re-estimated with it and the largest absolute difference is printed.

    .venv/bin/python docs/studies/panel_core_study.py [--sims 500] [--placebo-sims 200] [--reps 50]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analysis import inference  # noqa: E402
from analysis.estimators.synth import (  # noqa: E402
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    SynthSpec,
    fit_block_batch,
    noise_level,
)
from tests.unit._panel_dgp import factor_panel  # noqa: E402

TAU = 1.0
N, T, N1, T0 = 30, 20, 3, 15
N0 = N - N1
SPECS: dict[str, SynthSpec | None] = {
    "did": None,
    "sc": SyntheticControl.spec,
    "difp": SyntheticControlIntercept.spec,
    "sdid": SyntheticDID.spec,
}


def simulate(seeds: range, scenario: str) -> np.ndarray:
    """Stack of control-first outcome matrices, one per seed."""
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


def _tuning(Ys: np.ndarray, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    zo, zl, md = _tuning(Ys, spec)
    taus, omegas, lams = fit_block_batch(
        Ys, N0, T0, spec, zeta_omega=zo, zeta_lambda=zl, min_decrease=md
    )
    return taus, omegas, lams, (zo, zl, md)


def placebo_se(
    name: str, Ys: np.ndarray, omegas: np.ndarray, lams: np.ndarray, tuning: tuple, reps: int
) -> np.ndarray:
    """Algorithm 4 for every panel, all placebo refits of all panels in one batch."""
    S = len(Ys)
    rng = np.random.default_rng(2024)
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


def jackknife_se(Ys: np.ndarray, omegas: np.ndarray, lams: np.ndarray) -> np.ndarray:
    out = np.full(len(Ys), np.nan)
    for k, (Y, om, lam) in enumerate(zip(Ys, omegas, lams, strict=True)):
        # a single control carrying all weight leaves the jackknife undefined for that draw
        with contextlib.suppress(inference.InferenceError):
            out[k] = np.sqrt(inference.jackknife_variance(Y, N0, T0, om, lam))
    return out


def coverage(taus: np.ndarray, se: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(se)
    return float(np.mean(np.abs(taus[ok] - TAU) <= 1.959964 * se[ok])), int(ok.sum())


def run(
    sims: int,
    placebo_sims: int,
    reps: int,
    scenarios: tuple[str, ...],
    methods: tuple[str, ...] = tuple(SPECS),
) -> list[dict]:
    rows = []
    for scenario in scenarios:
        Ys = simulate(range(sims), scenario)
        for name in methods:
            t0 = time.perf_counter()
            taus, omegas, lams, tuning = fit_all(name, Ys)
            jk = jackknife_se(Ys, omegas, lams)
            row = {
                "scenario": scenario,
                "method": name,
                "sims": sims,
                "bias": float(np.mean(taus) - TAU),
                "mc_se_bias": float(np.std(taus, ddof=1) / np.sqrt(sims)),
                "rmse": float(np.sqrt(np.mean((taus - TAU) ** 2))),
                "sd": float(np.std(taus, ddof=1)),
                "jk_mean_se": float(np.nanmean(jk)),
            }
            row["jk_cover"], row["jk_n"] = coverage(taus, jk)
            if placebo_sims:
                k = min(placebo_sims, sims)
                tune_k = tuple(None if v is None else v[:k] for v in tuning)
                pl = placebo_se(name, Ys[:k], omegas[:k], lams[:k], tune_k, reps)
                row["pl_cover"], row["pl_n"] = coverage(taus[:k], pl)
                row["pl_mean_se"] = float(np.mean(pl))
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
    return rows


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=500)
    ap.add_argument("--placebo-sims", type=int, default=200)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--scenarios", default="random,confounded")
    args = ap.parse_args()
    rows = run(args.sims, args.placebo_sims, args.reps, tuple(args.scenarios.split(",")))
    print(
        f"tau = {TAU}; N = {N}, T = {T}, N1 = {N1}, T0 = {T0}; seeds 0..{args.sims - 1}; "
        f"placebo: first {args.placebo_sims} sims x {args.reps} draws"
    )
    print(
        "| scenario | method | bias (MC se) | RMSE | sd | jackknife: mean SE, cover | "
        "placebo: mean SE, cover | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pl = (
            f"{r['pl_mean_se']:.3f}, {100 * r['pl_cover']:.1f}% (n={r['pl_n']})"
            if "pl_cover" in r
            else "-"
        )
        print(
            f"| {r['scenario']} | {r['method']} | {r['bias']:+.3f} ({r['mc_se_bias']:.3f}) | "
            f"{r['rmse']:.3f} | {r['sd']:.3f} | {r['jk_mean_se']:.3f}, "
            f"{100 * r['jk_cover']:.1f}% (n={r['jk_n']}) | {pl} | {r['seconds']:.1f} |"
        )
    check = reference_check()
    if check is None:
        print("reference synthdid-py not installed: no cross-check")
    else:
        print(
            "max |ours - synthdid-py| over 20 panels: "
            + ", ".join(f"{k} {v:.2e}" for k, v in check.items())
        )


if __name__ == "__main__":
    main()
