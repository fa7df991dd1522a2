"""Coverage of HPTE's per-product 95% intervals against known per-product effects (issue #16).

    .venv/bin/python -m lab.studies hpte-unit-effects [--runs 200] [--jobs 1] [--render-only]

Markets: analysis.pricing_dgp.simulate_hpte_panel (heterogeneous levels, trends and weekly
patterns, a post-period shock driven by the characteristics, 2% gross outliers, effect
``3.5 + 3 (x1 - 0.5)``; 56 pre + 28 post days, half the products treated completely at random)
generated without its daily noise, and on top of it, per product:

- a sales volume ``v_i`` (log-normal, median 1, log-sd ``volume_sd``) and daily noise of sd
  ``5 sqrt(v_i)``: high-volume products are noisier (``volume_sd 0``: the DGP's own noise, sd 5);
- optionally day-to-day correlated noise (AR(1), ``rho``), which the step-1 noise model ignores;
- an idiosyncratic part of the effect, N(0, 1.5^2), so the true effect depends on a
  characteristic and on noise the characteristics cannot see.

A run is a seed: its market is fitted by ``HPTEEstimator(seed=s, se="none")`` (the per-product
SE does not use the bootstrap), and every kept treated product's truth ``tau_i`` is compared
with its interval ``details["unit_effects"][["ci_low", "ci_high"]]``. Reported pooled, by
tercile of volume and by tercile of the true effect: coverage with its Monte-Carlo SE (clustered
by seed), mean SE against the empirical SD of ``tau_hat_i - tau_i``, bias, the share dropped as
outliers, and the coverage the two special cases of the variance function would give, computed
from the same fit's control residuals (``details["control_residuals"]``): scaled only
(``se_i = k s_i``, ``k^2 = mean (r_j / s_j)^2``) and unscaled (``se_i = sqrt(mean r_j^2)``).

Saves docs/figures/hpte-unit-effects.csv; renders the ``hpte-unit-effects`` section of
docs/pricing-methods.md (template ``hpte_unit_effects.md.j2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimators.hpte import HPTEEstimator
from analysis.panel import Panel
from analysis.pricing_dgp import simulate_hpte_panel
from lab.studies.harness import Case, Page, Results, Row, Run, Study, coverage_clustered

Z = 1.959963984540054


@dataclass(frozen=True)
class Scenario:
    name: str
    n_products: int = 200
    volume_sd: float = 1.2  # log-sd of volume; noise sd = 5 sqrt(volume) has log-sd 0.6
    rho: float = 0.0  # AR(1) coefficient of the daily noise
    effect_noise_sd: float = 1.5
    outlier_share: float = 0.02  # gross post-period jumps (the DGP's default)
    outlier_c: float | None = 0.5  # the estimator's outlier filter (None: off)


SCENARIOS = (
    Scenario("noise grows with volume, 200 products"),
    Scenario("noise grows with volume, 400 products", n_products=400),
    Scenario("same noise for all (sd 5), 200 products", volume_sd=0.0),
    Scenario("noise grows with volume, AR(1) 0.3 by day", rho=0.3),
    Scenario(
        "noise grows with volume, no gross outliers, filter off", outlier_share=0.0, outlier_c=None
    ),
)
BY_NAME = {sc.name: sc for sc in SCENARIOS}


def market(sc: Scenario, seed: int) -> tuple[Panel, np.ndarray, np.ndarray, np.ndarray]:
    """(panel, true effect per product, treated mask, noise sd per product)."""
    sim = simulate_hpte_panel(
        sc.n_products, noise_sd=0.0, outlier_share=sc.outlier_share, seed=seed
    )
    rng = np.random.default_rng([seed, 16])
    N, T = sim.panel.shape
    volume = np.exp(sc.volume_sd * rng.normal(size=N))
    sd = 5.0 * np.sqrt(volume)
    eps = rng.normal(size=(N, T))
    if sc.rho:
        for t in range(1, T):  # stationary AR(1) with unit variance
            eps[:, t] = sc.rho * eps[:, t - 1] + np.sqrt(1.0 - sc.rho**2) * eps[:, t]
    idio = rng.normal(0.0, sc.effect_noise_sd, N)
    tau = sim.tau + idio
    Y = sim.panel.Y + sd[:, None] * eps + np.where(sim.panel.W, idio[:, None], 0.0)
    return sim.panel.with_outcome(Y), tau, sim.treated, sd


def run_one(case: Case, seed: int, settings: Mapping[str, Any]) -> list[Row]:
    """One market (seed ``seed``): a row per kept or dropped treated product, with the fit's
    variance function ``a + b s^2``."""
    sc = BY_NAME[case["scenario"]]
    panel, tau, treated, sd = market(sc, seed)
    res = HPTEEstimator(seed=seed, se="none", outlier_c=sc.outlier_c).fit(panel).result
    assert panel.covariates is not None
    ue = res.details["unit_effects"]
    ctrl = res.details["control_residuals"]
    model = res.details["unit_se_model"]
    scaled = np.isfinite(ctrl["noise_scale"])
    k = np.sqrt(np.mean((ctrl["loo_residual"][scaled] / ctrl["noise_scale"][scaled]) ** 2))
    s_i = ue["noise_scale"].to_numpy()
    frame = pd.DataFrame(
        {
            "tau": tau[treated],
            "noise_sd": sd[treated],
            "x3": panel.covariates.loc[ue.index, "x3"].to_numpy(),
            "effect": ue["effect"].to_numpy(),
            "se": ue["se"].to_numpy(),
            "ci_low": ue["ci_low"].to_numpy(),
            "ci_high": ue["ci_high"].to_numpy(),
            "outlier": ue["outlier"].to_numpy(),
            "se_scaled_only": np.where(np.isfinite(s_i), k * s_i, model["unscaled"]),
            "se_unscaled": model["unscaled"],
            "fitted_a": model["intercept"],
            "fitted_b": model["slope"],
        }
    )
    return frame.to_dict("records")  # type: ignore[return-value]


def summarise_scenario(sc: Scenario, df: pd.DataFrame, seeds: int, runtime: float) -> pd.DataFrame:
    per_seed = df.groupby("run")[["fitted_a", "fitted_b"]].first()
    fit = {
        "a": float(per_seed["fitted_a"].mean()),
        "b": float(per_seed["fitted_b"].mean()),
        "b_sd": float(per_seed["fitted_b"].std(ddof=1)),
    }
    groups: list[tuple[str, pd.Series]] = [("all", pd.Series(True, index=df.index))]
    vol = pd.qcut(df["noise_sd"], 3, labels=["low", "mid", "high"]) if sc.volume_sd else None
    eff = pd.qcut(df["tau"], 3, labels=["low", "mid", "high"])
    if vol is not None:
        groups += [(f"volume {lv}", vol == lv) for lv in ("low", "mid", "high")]
    groups += [(f"true effect {lv}", eff == lv) for lv in ("low", "mid", "high")]
    # the shock sin(2 pi x3) peaks at x3 = 1/4 and 3/4: where matching smooths most
    peak = (np.abs(df["x3"] - 0.25) < 0.1) | (np.abs(df["x3"] - 0.75) < 0.1)
    groups += [("x3 near a peak of the shock", peak), ("x3 elsewhere", ~peak)]
    rows = []
    for label, mask in groups:
        part = df[mask]
        kept = part[~part["outlier"].astype(bool)]
        err = kept["effect"] - kept["tau"]
        cover, mc = coverage_clustered(
            (kept["ci_low"] <= kept["tau"]) & (kept["tau"] <= kept["ci_high"]), kept["run"]
        )
        rows.append(
            {
                "scenario": sc.name,
                "group": label,
                "seeds": seeds,
                "products": len(kept),
                "dropped": float(part["outlier"].astype(bool).mean()),
                "coverage": cover,
                "mc_se": mc,
                "mean_se": float(kept["se"].mean()),
                "sd_error": float(err.std()),
                "rms_se": float(np.sqrt(np.mean(np.square(kept["se"])))),
                "rms_error": float(np.sqrt(np.mean(np.square(err)))),
                "bias": float(err.mean()),
                "coverage_scaled_only": float((err.abs() <= Z * kept["se_scaled_only"]).mean()),
                "coverage_unscaled": float((err.abs() <= Z * kept["se_unscaled"]).mean()),
                "fitted_a": fit["a"],
                "fitted_b": fit["b"],
                "fitted_b_sd": fit["b_sd"],
                "runtime_s": runtime,
            }
        )
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    parts = [
        summarise_scenario(
            sc, rows[rows["scenario"] == sc.name].reset_index(drop=True), run.runs, s
        )
        for sc, s in zip(SCENARIOS, run.seconds, strict=True)
    ]
    return pd.concat(parts, ignore_index=True)


def context(results: Results) -> dict[str, Any]:
    """The template's rows: the table, each scenario's pooled row, the first scenario's groups
    and the few cells the reading quotes."""
    assert isinstance(results, pd.DataFrame)
    tab = results
    alls = tab[tab["group"] == "all"].set_index("scenario")
    main = tab[tab["scenario"] == SCENARIOS[0].name].set_index("group")
    cell = tab.set_index(["scenario", "group"])["coverage"]
    terciles = main[~main.index.str.startswith("x3")]
    named = {f"s{i}": alls.loc[sc.name].to_dict() for i, sc in enumerate(SCENARIOS)}
    return {
        "rows": tab.to_dict("records"),
        "scenarios": [{"name": n, **r} for n, r in alls.to_dict("index").items()],
        "seeds": int(tab["seeds"].iloc[0]),
        "runtime_s": float(alls["runtime_s"].sum()),
        "main": {g: r for g, r in main.to_dict("index").items()},
        **named,
        "big_volume_high": cell[(SCENARIOS[1].name, "volume high")],
        "big_peak": cell[(SCENARIOS[1].name, "x3 near a peak of the shock")],
        "off_volume_high": cell[(SCENARIOS[4].name, "volume high")],
        "rms_gap": float(np.max(np.abs(terciles["rms_se"] / terciles["rms_error"] - 1))),
    }


STUDY = Study(
    name="hpte-unit-effects",
    cases=tuple({"scenario": sc.name} for sc in SCENARIOS),
    run_one=run_one,
    summarise=summarise,
    results="hpte-unit-effects.csv",
    runs=200,
    page=Page("docs/pricing-methods.md", "hpte_unit_effects.md.j2", section="hpte-unit-effects"),
    context=context,
)
