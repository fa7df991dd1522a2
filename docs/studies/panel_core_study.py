"""Simulation study for the core panel estimators (did, sc, difp, sdid): bias, RMSE, coverage.

DGP (analysis.pricing_dgp.factor_panel): Y_it(0) = alpha_i + beta_t + L_i'F_t + eps_it, rank 2 random-walk
factors, N = 30 units, T = 20 periods, 3 treated units from period 15, effect tau = 1,
eps ~ N(0, 1). Scenarios: ``random`` (treated units drawn at random: every estimator is unbiased)
and ``confounded`` (treated units are those loading most on the first factor: parallel trends
fail). Two more scenarios without factors test what each variance method conditions on:
``unit_hetero`` (treated units 3x as noisy) and ``period_hetero`` (post-period 3x as noisy for
all units); see ``hetero_panel``. Each simulation is seeded by its index, so runs are
reproducible.

Three variance methods, each on its own number of simulations (the first k seeds):

- jackknife (Arkhangelsky et al. 2021, Algorithm 3, all simulations): intervals estimate +- 1.96 SE
  (normal) and estimate +- t_{df, 0.975} SE with the Welch-Satterthwaite df of its treated and
  control parts (``inference.jackknife_split``), as the library reports them;
- placebo (Algorithm 4, the first ``--placebo-sims`` simulations, ``--reps`` draws each), normal
  and Student t(N0 - 1) (``inference.placebo_df``, the library's reference since 2026-11-23);
- time placebo (``inference.time_placebo_variance``: the treated units fixed, a window of
  min(T_post, T_pre // 2) periods moved over the pre-period, mean square of the placebo
  estimates; the first ``--time-placebo-sims`` simulations): normal, and Student t with the
  windows' overlap df (``inference.time_placebo_df``), as the library reports it.

All simulations of one estimator are fitted as one batch; so are the placebo refits and, per
window start, the time-placebo refits (each a fresh fit with the original fit's regularisation,
as the library does). For each method the row reports the mean SE, the ratio of the root mean
square SE to the sd of the estimates, coverage, and the share of |z| = |tau_hat - tau| / SE
above 1.96 and above 3 (the tails that decide coverage).

If the PyPI package ``synthdid-py`` (a port of R synthdid) is importable, the first 20
simulations are re-estimated with it and the largest absolute difference is printed.

    .venv/bin/python docs/studies/panel_core_study.py [--sims 500] [--first-seed 0]
        [--placebo-sims 500] [--reps 50]
        [--time-placebo-sims 500] [--scenarios random,confounded] [--methods did,sc,difp,sdid]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from analysis import inference  # noqa: E402
from analysis.estimators.synth import (  # noqa: E402
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    SynthSpec,
    fit_block_batch,
    noise_level,
)
from analysis.pricing_dgp import factor_panel  # noqa: E402

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


def coverage(taus: np.ndarray, se: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(se)
    return float(np.mean(np.abs(taus[ok] - TAU) <= 1.959964 * se[ok])), int(ok.sum())


def run(
    sims: int,
    placebo_sims: int,
    reps: int,
    scenarios: tuple[str, ...],
    methods: tuple[str, ...] = tuple(SPECS),
    time_placebo_sims: int = 0,
    log: Path | None = None,
    save: Path | None = None,
    first_seed: int = 0,
) -> list[dict]:
    """One row per scenario x estimator (seeds first_seed .. first_seed + sims - 1);
    ``save``: per-panel estimates, SEs and df (npz)."""
    rows = []
    arrays: dict[str, np.ndarray] = {}
    for scenario in scenarios:
        Ys = simulate(range(first_seed, first_seed + sims), scenario)
        for name in methods:
            t0 = time.perf_counter()
            taus, omegas, lams, tuning = fit_all(name, Ys)
            jk, jk_df = jackknife_se(Ys, omegas, lams)
            row: dict = {
                "scenario": scenario,
                "method": name,
                "sims": sims,
                "first_seed": first_seed,
                "bias": float(np.mean(taus) - TAU),
                "mc_se_bias": float(np.std(taus, ddof=1) / np.sqrt(sims)),
                "rmse": float(np.sqrt(np.mean((taus - TAU) ** 2))),
                "sd": float(np.std(taus, ddof=1)),
                "jk_mean_se": float(np.nanmean(jk)),
                "jackknife": interval_stats(taus, jk),
                "jackknife_t": interval_stats(taus, jk, jk_df),
                "fit_seconds": time.perf_counter() - t0,
            }
            row["jk_cover"], row["jk_n"] = coverage(taus, jk)
            key = f"{scenario}/{name}"
            arrays |= {f"{key}/tau": taus, f"{key}/jackknife": jk, f"{key}/jackknife_df": jk_df}
            row["jk_t_cover"] = row["jackknife_t"]["cover"]
            if placebo_sims:
                t1 = time.perf_counter()
                k = min(placebo_sims, sims)
                tune_k = tuple(None if v is None else v[:k] for v in tuning)
                pl = placebo_se(name, Ys[:k], omegas[:k], lams[:k], tune_k, reps)
                row["pl_cover"], row["pl_n"] = coverage(taus[:k], pl)
                row["pl_mean_se"] = float(np.mean(pl))
                row["placebo"] = interval_stats(taus[:k], pl)
                # the library's reference since 2026-11-23: t(N0 - 1)
                row["placebo_t"] = interval_stats(
                    taus[:k], pl, np.full(k, inference.placebo_df(N0))
                )
                arrays[f"{key}/placebo"] = pl
                row["placebo_seconds"] = time.perf_counter() - t1
            if time_placebo_sims:
                t1 = time.perf_counter()
                k = min(time_placebo_sims, sims)
                tune_k = tuple(None if v is None else v[:k] for v in tuning)
                tp = time_placebo_se(name, Ys[:k], tune_k)
                row["time_placebo"] = interval_stats(taus[:k], tp)
                tp_df = np.full(k, inference.time_placebo_df(T0, T - T0))
                row["time_placebo_t"] = interval_stats(taus[:k], tp, tp_df)
                arrays[f"{key}/time_placebo"] = tp
                row["time_placebo_seconds"] = time.perf_counter() - t1
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if log is not None:
                with log.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            if save is not None:
                np.savez(save, **arrays)
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


def _fmt(st: dict | None) -> str:
    if st is None:
        return "-"
    return (
        f"{st['mean_se']:.3f}, {st['se_ratio']:.2f}, {100 * st['cover']:.1f}% "
        f"(|z|>1.96 {100 * st['z_gt_196']:.1f}%, >3 {100 * st['z_gt_3']:.1f}%; n={st['n']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=500)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + sims - 1"
    )
    ap.add_argument("--placebo-sims", type=int, default=500)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--time-placebo-sims", type=int, default=500)
    ap.add_argument("--scenarios", default="random,confounded")
    ap.add_argument("--methods", default=",".join(SPECS))
    ap.add_argument("--log", type=Path, default=None, help="append one JSON row per estimator")
    ap.add_argument("--save", type=Path, default=None, help="per-panel estimates and SEs (.npz)")
    args = ap.parse_args()
    rows = run(
        args.sims,
        args.placebo_sims,
        args.reps,
        tuple(args.scenarios.split(",")),
        methods=tuple(args.methods.split(",")),
        time_placebo_sims=args.time_placebo_sims,
        log=args.log,
        save=args.save,
        first_seed=args.first_seed,
    )
    print(
        f"tau = {TAU}; N = {N}, T = {T}, N1 = {N1}, T0 = {T0}; "
        f"seeds {args.first_seed}..{args.first_seed + args.sims - 1}; "
        f"placebo: first {args.placebo_sims} sims x {args.reps} draws; time placebo: first "
        f"{args.time_placebo_sims} sims"
    )
    print("each SE cell: mean SE, rms SE / sd of estimates, coverage (tails of |z|; n)")
    print(
        "| scenario | method | bias (MC se) | RMSE | sd | jackknife, normal | jackknife, t(df) "
        "[median df] | placebo | time placebo | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        jt = r["jackknife_t"]
        tt = r.get("time_placebo_t")
        tp_t = f"; t({tt['median_df']:.2f}): {100 * tt['cover']:.1f}%" if tt else ""
        print(
            f"| {r['scenario']} | {r['method']} | {r['bias']:+.3f} ({r['mc_se_bias']:.3f}) | "
            f"{r['rmse']:.3f} | {r['sd']:.3f} | {_fmt(r['jackknife'])} | "
            f"{100 * jt['cover']:.1f}% (|z|>t {100 * (1 - jt['cover']):.1f}%) "
            f"[{jt['median_df']:.1f}] | {_fmt(r.get('placebo'))} | "
            f"{_fmt(r.get('time_placebo'))}{tp_t} | {r['seconds']:.1f} |"
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
