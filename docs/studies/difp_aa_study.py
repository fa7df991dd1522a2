"""Why `difp` is biased in the A/A calibration of docs/validation.md (time-bound design).

    .venv/bin/python docs/studies/difp_aa_study.py             # 100 runs, about 3 minutes
    .venv/bin/python docs/studies/difp_aa_study.py --runs 30   # quicker, noisier

Rebuilds the A/A time-bound panels of lab/studies/validation.py exactly (default market
with AA_OVERRIDES, products seed 0; run r: demand seed ``run_seed(0, r)``, design seed
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

Prints every figure and writes them to docs/figures/validation-difp_aa.json, which
lab/studies/validation.py renders into the A/A section of docs/validation.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

from scipy.optimize import minimize  # noqa: E402

from analysis.estimators.synth import (  # noqa: E402
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    SynthSpec,
    fit_block,
    noise_level,
)
from controller.designs import design_matrices  # noqa: E402
from controller.spec import TimeBoundSettings  # noqa: E402
from lab.compare import AA_OVERRIDES, make_spec  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.market import Market  # noqa: E402
from lab.seeds import run_seed  # noqa: E402

DIFP = SyntheticControlIntercept.spec
POST = 14
RERANDOM_PANELS = 10
RERANDOM_DRAWS = 30
RERANDOM_SEED = 123
SIGNFLIP_SEED = 5


def panels(runs: int, pre: int, overrides: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The validation study's A/A time-bound panels (pre-period ``pre`` days, then 14 days)."""
    cfg = MarketConfig.model_validate(
        MarketConfig().model_dump() | AA_OVERRIDES | (overrides or {})
    )
    Ys, Ws, Es = [], [], []
    m = Market(cfg, seed=0)
    for run in range(runs):
        m = Market(cfg, seed=0, demand_seed=run_seed(0, run))
        spec = make_spec("time-bound", m, days=pre + POST, seed=run_seed(1, run))
        spec = spec.model_copy(update={"time_bound": TimeBoundSettings(start_period=pre)})
        W = design_matrices(spec, list(m.product_ids)).treated
        df = m.simulate_panel(W)
        Ys.append(df["units"].to_numpy(float).reshape(W.shape))
        Es.append(df["y0_expected"].to_numpy(float).reshape(W.shape))
        Ws.append(W)
    return {
        "Y": np.array(Ys),
        "E": np.array(Es),
        "W": np.array(Ws),
        "cats": m._category_codes,
        "levels": np.exp(m._log_level),
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


def stat(x: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(x, dtype=float)
    mcse = float(a.std(ddof=1) / math.sqrt(len(a)))
    return {"mean": float(a.mean()), "mcse": mcse, "z": float(a.mean() / mcse), "n": len(a)}


def show(name: str, s: dict[str, float]) -> None:
    print(f"  {name:<58s} {s['mean']:+.3f} +- {s['mcse']:.3f} (z {s['z']:+.1f}, n {s['n']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = ap.parse_args()
    t0 = time.perf_counter()
    R = args.runs
    out: dict[str, Any] = {"runs": R, "post_days": POST}
    d = panels(R, 14)

    print(f"1. reproduction, T0 = 14, {R} runs")
    rep: dict[str, list[float]] = {k: [] for k in ("difp", "sc", "sdid", "did")}
    for Y, W in zip(d["Y"], d["W"], strict=True):
        rep["difp"].append(tau(Y, W))
        rep["sc"].append(tau(Y, W, SyntheticControl.spec))
        rep["sdid"].append(tau(Y, W, SyntheticDID.spec))
        rep["did"].append(did(Y, W))
    out["reproduction"] = {k: stat(v) for k, v in rep.items()}
    for k, v in out["reproduction"].items():
        show(k, v)

    print("2. implementation: same objective, other solvers")
    exact, nosp, obj_ours, obj_exact, nnz_ours, nnz_exact = [], [], [], [], [], []
    for Y, W in zip(d["Y"], d["W"], strict=True):
        order, N0, T0 = block(W)
        Yb = Y[order]
        fit = fit_block(Yb, N0, T0, DIFP)
        w = exact_difp_weights(Yb, N0, T0)
        c = contrast(Yb, T0)
        exact.append(float(c[N0:].mean() - w @ c[:N0]))
        nosp.append(fit_block(Yb, N0, T0, replace(DIFP, sparsify=False)).tau)
        A = Yb[:N0, :T0].T - Yb[:N0, :T0].T.mean(axis=0)
        b = Yb[N0:, :T0].mean(axis=0)
        b = b - b.mean()
        s2 = noise_level(Yb, N0, T0) ** 2
        obj_ours.append(float(np.mean((A @ fit.omega - b) ** 2) / s2))
        obj_exact.append(float(np.mean((A @ w - b) ** 2) / s2))
        nnz_ours.append(int((fit.omega > 0).sum()))
        nnz_exact.append(int((w > 1e-6).sum()))
    out["implementation"] = {
        "exact_qp": stat(exact),
        "no_sparsify": stat(nosp),
        "fit_mse_over_sigma2_ours_median": float(np.median(obj_ours)),
        "fit_mse_over_sigma2_exact_median": float(np.median(obj_exact)),
        "nonzero_weights_ours": float(np.mean(nnz_ours)),
        "nonzero_weights_exact": float(np.mean(nnz_exact)),
    }
    show("difp weights by exact QP (SLSQP), no sparsify", out["implementation"]["exact_qp"])
    show("difp, our Frank-Wolfe without the sparsify step", out["implementation"]["no_sparsify"])
    print(
        "  pre-period fit MSE / sigma^2 (median): ours "
        f"{out['implementation']['fit_mse_over_sigma2_ours_median']:.1e}, exact "
        f"{out['implementation']['fit_mse_over_sigma2_exact_median']:.1e}; nonzero weights "
        f"{out['implementation']['nonzero_weights_ours']:.1f} vs "
        f"{out['implementation']['nonzero_weights_exact']:.1f}"
    )

    print(
        f"3. re-randomisation on fixed outcomes: runs 0-{RERANDOM_PANELS - 1}, "
        f"{RERANDOM_DRAWS} draws each (seed {RERANDOM_SEED})"
    )
    rng = np.random.default_rng(RERANDOM_SEED)
    cats = d["cats"]
    per_panel, swap_sum, did_mean = [], [], []
    for r in range(min(RERANDOM_PANELS, R)):
        Y = d["Y"][r]
        N, T = Y.shape
        v, s, dd = [], [], []
        for _ in range(RERANDOM_DRAWS):
            tr = np.zeros(N, dtype=bool)
            for c in np.unique(cats):  # half of each category, like the design
                idx = rng.permutation(np.flatnonzero(cats == c))
                tr[idx[: len(idx) // 2 + int(rng.integers(0, 2)) * (len(idx) % 2)]] = True
            W = np.zeros((N, T), dtype=bool)
            W[tr, 14:] = True
            W2 = np.zeros((N, T), dtype=bool)
            W2[~tr, 14:] = True
            v.append(tau(Y, W))
            s.append(tau(Y, W2))
            dd.append(did(Y, W))
        per_panel.append(float(np.mean(v)))
        swap_sum.append(float(np.mean(np.add(v, s))))
        did_mean.append(float(np.mean(dd)))
        print(
            f"  run {r}: mean over assignments {per_panel[-1]:+.3f}, "
            f"tau + tau(labels swapped) {swap_sum[-1]:+.3f}, did {did_mean[-1]:+.3f}"
        )
    out["rerandomisation"] = {
        "panels": len(per_panel),
        "draws": RERANDOM_DRAWS,
        "seed": RERANDOM_SEED,
        "mean_over_assignments": stat(per_panel),
        "positive_panels": int(np.sum(np.array(per_panel) > 0)),
        "tau_plus_swapped": stat(swap_sum),
        "swapped_positive_panels": int(np.sum(np.array(swap_sum) > 0)),
        "did_mean_over_assignments": stat(did_mean),
    }

    print("4. mechanism: who gets weight, expected demand vs count noise")
    parts: dict[str, list[float]] = {
        k: []
        for k in (
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
    }
    frng = np.random.default_rng(SIGNFLIP_SEED)
    for Y, W, E in zip(d["Y"], d["W"], d["E"], strict=True):
        order, N0, T0 = block(W)
        Yb, Eb, Lb = Y[order], E[order], d["levels"][order]
        Zb = Yb - Eb  # count noise (mean 0 given the latent demand)
        fit = fit_block(Yb, N0, T0, DIFP)
        cE = contrast(Eb, T0)
        cZ = contrast(Zb, T0)
        parts["tau_expected"].append(float(cE[N0:].mean() - fit.omega @ cE[:N0]))
        parts["tau_noise"].append(float(cZ[N0:].mean() - fit.omega @ cZ[:N0]))
        parts["lvl_tr"].append(float(Lb[N0:].mean()))
        parts["lvl_w"].append(float(fit.omega @ Lb[:N0]))
        parts["lvl_co"].append(float(Lb[:N0].mean()))
        parts["noise_pre_w"].append(float(fit.omega @ Zb[:N0, :T0].mean(axis=1)))
        parts["noise_post_w"].append(float(fit.omega @ Zb[:N0, T0:].mean(axis=1)))
        parts["noise_pre_tr"].append(float(Zb[N0:, :T0].mean()))
        sd_pre = np.diff(Yb[:N0, :T0], axis=1).std(axis=1, ddof=1)  # variability of each control
        parts["var_pre_w"].append(float(fit.omega @ sd_pre))
        parts["var_pre_co"].append(float(sd_pre.mean()))
        Z = Y - E
        parts["mirrored"].append(tau(E - Z, W))
        parts["signflip"].append(tau(E + Z * frng.choice([-1.0, 1.0], size=Z.shape), W))
        parts["expected_only"].append(tau(E, W))
        parts["log1p"].append(tau(np.log1p(Y), W))
    out["mechanism"] = {k: stat(v) for k, v in parts.items()}
    labels = {
        "tau_expected": "difp part from expected demand E[Y] (its weights)",
        "tau_noise": "difp part from count noise Y - E[Y] (its weights)",
        "lvl_tr": "mean product level, treated",
        "lvl_co": "mean product level, controls",
        "lvl_w": "weighted product level, difp's controls",
        "noise_pre_w": "pre-period count noise, difp's weighted controls",
        "noise_post_w": "post-period count noise, difp's weighted controls",
        "noise_pre_tr": "pre-period count noise, treated mean",
        "var_pre_w": "pre-period SD of daily changes, difp's weighted controls",
        "var_pre_co": "pre-period SD of daily changes, all controls",
        "mirrored": "difp on E[Y] - (Y - E[Y]) (count noise mirrored)",
        "signflip": f"difp on E[Y] +- (Y - E[Y]) (random signs, seed {SIGNFLIP_SEED})",
        "expected_only": "difp on E[Y] (no count noise)",
        "log1p": "difp on log(1 + Y) (log points)",
    }
    for k, v in out["mechanism"].items():
        show(labels[k], v)

    print("5. remedies")
    rem: dict[str, Any] = {}
    for name, eta in (("ridge 0.1 sigma", 0.1), ("ridge 1 sigma", 1.0), ("ridge of sdid", None)):
        spec = replace(DIFP, eta_omega=eta)
        rem[name] = stat([tau(Y, W, spec) for Y, W in zip(d["Y"], d["W"], strict=True)])
        show(f"difp, {name}", rem[name])
    for pre in (28, 56):
        dp = panels(R, pre)
        rem[f"T0={pre}"] = stat([tau(Y, W) for Y, W in zip(dp["Y"], dp["W"], strict=True)])
        rem[f"T0={pre} did"] = stat([did(Y, W) for Y, W in zip(dp["Y"], dp["W"], strict=True)])
        show(f"difp, T0 = {pre}", rem[f"T0={pre}"])
        show(f"did, T0 = {pre}", rem[f"T0={pre} did"])
    dp = panels(R, 14, {"nb_dispersion": None, "outlier_probability": 0.0})
    pois, pe, pn = [], [], []
    for Y, W, E in zip(dp["Y"], dp["W"], dp["E"], strict=True):
        order, N0, T0 = block(W)
        fit = fit_block(Y[order], N0, T0, DIFP)
        cE, cZ = contrast(E[order], T0), contrast(Y[order] - E[order], T0)
        pois.append(fit.tau)
        pe.append(float(cE[N0:].mean() - fit.omega @ cE[:N0]))
        pn.append(float(cZ[N0:].mean() - fit.omega @ cZ[:N0]))
    rem["poisson"] = stat(pois)
    rem["poisson_expected"] = stat(pe)
    rem["poisson_noise"] = stat(pn)
    show("difp, Poisson counts without spikes", rem["poisson"])
    show("  of which expected-demand part", rem["poisson_expected"])
    show("  of which count-noise part", rem["poisson_noise"])
    out["remedies"] = rem
    out["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "validation-difp_aa.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} in {out['seconds']:.0f}s")


if __name__ == "__main__":
    main()
