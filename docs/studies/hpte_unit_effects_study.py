"""Coverage of HPTE's per-product 95% intervals against known per-product effects (issue #16).

    .venv/bin/python docs/studies/hpte_unit_effects_study.py [--seeds 200] [--quick]
    .venv/bin/python docs/studies/hpte_unit_effects_study.py --markdown-only

Markets: analysis.pricing_dgp.simulate_hpte_panel (heterogeneous levels, trends and weekly
patterns, a post-period shock driven by the characteristics, 2% gross outliers, effect
``3.5 + 3 (x1 - 0.5)``; 56 pre + 28 post days, half the products treated completely at random)
generated without its daily noise, and on top of it, per product:

- a sales volume ``v_i`` (log-normal, median 1, log-sd ``--volume-sd``) and daily noise of sd
  ``5 sqrt(v_i)``: high-volume products are noisier (``volume-sd 0``: the DGP's own noise, sd 5);
- optionally day-to-day correlated noise (AR(1), ``rho``), which the step-1 noise model ignores;
- an idiosyncratic part of the effect, N(0, 1.5^2), so the true effect depends on a
  characteristic and on noise the characteristics cannot see.

Each market is fitted by ``HPTEEstimator(seed=s, se="none")`` (the per-product SE does not use
the bootstrap). For every kept treated product the truth ``tau_i`` is compared with its interval
``details["unit_effects"][["ci_low", "ci_high"]]``. Reported pooled, by tercile of volume and
by tercile of the true effect: coverage with its Monte-Carlo SE (clustered by seed), mean SE
against the empirical SD of ``tau_hat_i - tau_i``, bias, the share dropped as outliers, and the
coverage the two special cases of the variance function would give, computed from the same
fit's control residuals (``details["control_residuals"]``): scaled only (``se_i = k s_i``,
``k^2 = mean (r_j / s_j)^2``) and unscaled (``se_i = sqrt(mean r_j^2)``).

Writes docs/figures/hpte-unit-effects.csv and rewrites the section between the
``hpte-unit-effects`` markers in docs/pricing-methods.md (``--quick`` only prints).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.estimators.hpte import HPTEEstimator
from analysis.panel import Panel
from analysis.pricing_dgp import simulate_hpte_panel

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "docs" / "figures" / "hpte-unit-effects.csv"
DOC = ROOT / "docs" / "pricing-methods.md"
START, END = "<!-- hpte-unit-effects:start -->", "<!-- hpte-unit-effects:end -->"
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


def run_scenario(sc: Scenario, seeds: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per treated product and seed, and the scenario's mean fitted (a, b)."""
    frames, a, b = [], [], []
    for s in range(seeds):
        panel, tau, treated, sd = market(sc, s)
        est = HPTEEstimator(seed=s, se="none", outlier_c=sc.outlier_c)
        res = est.fit(panel).result
        assert panel.covariates is not None
        ue = res.details["unit_effects"]
        ctrl = res.details["control_residuals"]
        model = res.details["unit_se_model"]
        a.append(model["intercept"])
        b.append(model["slope"])
        scaled = np.isfinite(ctrl["noise_scale"])
        k = np.sqrt(np.mean((ctrl["loo_residual"][scaled] / ctrl["noise_scale"][scaled]) ** 2))
        s_i = ue["noise_scale"].to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "seed": s,
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
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    return df, {"a": float(np.mean(a)), "b": float(np.mean(b)), "b_sd": float(np.std(b, ddof=1))}


def _clustered_rate(hit: pd.Series, seed: pd.Series) -> tuple[float, float]:
    """Share of hits and its Monte-Carlo SE with products clustered by seed (ratio estimator)."""
    g = pd.DataFrame({"h": hit.astype(float), "s": seed}).groupby("s")["h"].agg(["sum", "size"])
    p = g["sum"].sum() / g["size"].sum()
    m = len(g)
    var = np.sum(np.square(g["sum"] - p * g["size"])) / g["size"].sum() ** 2 * m / max(m - 1, 1)
    return float(p), float(np.sqrt(var))


def summarise(
    sc: Scenario, df: pd.DataFrame, fit: dict[str, float], seeds: int, runtime: float
) -> pd.DataFrame:
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
        kept = part[~part["outlier"]]
        err = kept["effect"] - kept["tau"]
        cover, mc = _clustered_rate(
            (kept["ci_low"] <= kept["tau"]) & (kept["tau"] <= kept["ci_high"]), kept["seed"]
        )
        rows.append(
            {
                "scenario": sc.name,
                "group": label,
                "seeds": seeds,
                "products": len(kept),
                "dropped": float(part["outlier"].mean()),
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


def markdown_table(tab: pd.DataFrame) -> list[str]:
    head = (
        "| scenario | products | coverage (MC s.e.) | mean SE / SD of error | RMS SE / RMS error "
        "| bias | dropped | scaled only | unscaled |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for _, r in tab.iterrows():
        name = r["scenario"] if r["group"] == "all" else f"&nbsp;&nbsp;{r['group']}"
        lines.append(
            f"| {name} | {r['products']:,} | {100 * r['coverage']:.1f}% ({100 * r['mc_se']:.1f}) | "
            f"{r['mean_se']:.2f} / {r['sd_error']:.2f} | {r['rms_se']:.2f} / {r['rms_error']:.2f} | "
            f"{r['bias']:+.2f} | "
            f"{100 * r['dropped']:.1f}% | {100 * r['coverage_scaled_only']:.1f}% | "
            f"{100 * r['coverage_unscaled']:.1f}% |"
        )
    return lines


def markdown(tab: pd.DataFrame) -> str:
    alls = tab[tab["group"] == "all"].set_index("scenario")
    main = tab[tab["scenario"] == SCENARIOS[0].name].set_index("group")
    seeds = int(tab["seeds"].iloc[0])
    took = f" The run took {alls['runtime_s'].sum():.0f} s on 2 shared cores."
    fits = "; ".join(
        f"{n}: a = {r['fitted_a']:.2f}, b = {r['fitted_b']:.2f} (sd {r['fitted_b_sd']:.2f} across seeds)"
        for n, r in alls.iterrows()
    )
    lo_v, hi_v = main.loc["volume low"], main.loc["volume high"]
    peak, flat = main.loc["x3 near a peak of the shock"], main.loc["x3 elsewhere"]
    main_fit, big, ar, off = (alls.loc[SCENARIOS[i].name] for i in (0, 1, 3, 4))
    in_scenario = tab.set_index(["scenario", "group"])["coverage"]
    big_hi = in_scenario[(SCENARIOS[1].name, "volume high")]
    big_peak = in_scenario[(SCENARIOS[1].name, "x3 near a peak of the shock")]
    off_hi = in_scenario[(SCENARIOS[4].name, "volume high")]
    same = alls.loc[SCENARIOS[2].name]
    terciles = main[~main.index.str.startswith("x3")]
    rms_gap = float(np.max(np.abs(terciles["rms_se"] / terciles["rms_error"] - 1)))

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    out = [
        START,
        "<!-- generated by docs/studies/hpte_unit_effects_study.py from "
        "docs/figures/hpte-unit-effects.csv; do not edit by hand -->",
        "",
        f"Measured ({seeds} seeds per scenario; each market is `simulate_hpte_panel` without its "
        "own noise, plus daily noise of sd `5 sqrt(volume)` with log-normal volume (log-sd 1.2), "
        "plus an idiosyncratic N(0, 1.5²) part of each product's effect; coverage of the kept "
        "treated products' 95% intervals, Monte-Carlo s.e. clustered by seed; *scaled only* and "
        "*unscaled* are the two special cases of the variance function, computed from the same "
        f"fits).{took}",
        "",
        *markdown_table(tab),
        "",
        f"Mean fitted variance function `a + b s²`: {fits}.",
        "",
        "Reading the table:",
        "",
        f"- *Scaled only* (`se_i = k s_i`, the studentised SE) covers "
        f"{pct(lo_v['coverage_scaled_only'])} of the quietest third and "
        f"{pct(hi_v['coverage_scaled_only'])} of the noisiest: much of a quiet product's error is "
        "matching error (leaf means of other products' noise, and smoothing of the "
        "characteristic-driven shock), which does not shrink with its own noise. *Unscaled* does "
        f"the opposite ({pct(lo_v['coverage_unscaled'])} / {pct(hi_v['coverage_unscaled'])}). "
        f"The variance function gives {pct(lo_v['coverage'])} / {pct(hi_v['coverage'])}, and its "
        f"RMS SE is within {pct(rms_gap)} of the RMS error in every tercile of the first scenario.",
        "- Why the noisiest third is still under-covered although its RMS SE is right: the slope "
        "`b` is fitted per market from about 100 controls, few of them noisy, and varies across "
        f"markets (sd {main_fit['fitted_b_sd']:.2f} around {main_fit['fitted_b']:.2f}). A noisy "
        "product's SE is mostly `sqrt(b) s_i`, so its interval is too narrow in some markets and "
        "too wide in others; right on average in variance, but an interval that is too narrow "
        "loses more coverage than one too wide gains. With 400 products (sd of `b` "
        f"{big['fitted_b_sd']:.2f}) the noisiest third is covered at {pct(big_hi)}.",
        f"- `b` is below 1 ({main_fit['fitted_b']:.2f}) although `s_i^2` is the exact noise "
        "variance of a first difference here: the outlier filter truncates the noisiest "
        "controls' first differences, which shrinks their squared residuals. Without gross "
        f"outliers and with the filter off, `b` is {off['fitted_b']:.2f}. Kept treated products "
        "are truncated too, so the SE stays right on average (RMS SE "
        f"{hi_v['rms_se']:.2f} against RMS error {hi_v['rms_error']:.2f} in the noisiest third); "
        f"the filter is not what costs coverage there (filter off: {pct(off_hi)}).",
        "- Coverage varies with the characteristics: the SE is an average over them, the "
        "matching's smoothing bias is not. Where the untreated deviation changes fast with a "
        "characteristic (around the peaks of `sin(2 pi x3)`), the leaves flatten it: RMS error "
        f"{peak['rms_error']:.2f} against the same SE ({peak['rms_se']:.2f}), coverage "
        f"{pct(peak['coverage'])}, against {pct(flat['coverage'])} elsewhere. This is the "
        "smoothing bias documented for the ATT under confounding. It does not go away with "
        f"400 products ({pct(big_peak)} near the peaks): the SE shrinks with the bias. "
        "So the per-product intervals are calibrated over the products of an experiment, not "
        "in every region of the characteristics.",
        "- Day-to-day correlated noise (AR(1) 0.3) makes the step-1 noise model understate each "
        "product's noise (by about (1 + rho) / (1 - rho) = 1.86 in variance); `b` grows to "
        f"{ar['fitted_b']:.2f} and coverage is {pct(ar['coverage'])}.",
        "- With the same noise for every product, `a` and `b` are not separately identified (sd "
        f"of `b` {same['fitted_b_sd']:.2f} across seeds); only `a + b s^2` at the common `s` "
        f"matters, and coverage is {pct(same['coverage'])}.",
        "- Products dropped as outliers (*dropped*, mostly the noisiest) have no effect and no "
        "interval; coverage is over the kept ones. The size of the true effect does not matter "
        "(the error does not depend on it).",
        "",
        "Regenerate: `.venv/bin/python docs/studies/hpte_unit_effects_study.py` "
        "(`--quick` for a 20-seed check that writes nothing).",
        END,
    ]
    return "\n".join(out)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {START} ... {END} section to rewrite.")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + text + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20 seeds, print only.")
    ap.add_argument("--markdown-only", action="store_true", help="Rewrite the doc from the CSV.")
    args = ap.parse_args()
    if args.markdown_only:
        write_doc(markdown(pd.read_csv(CSV)))
        print(f"rewrote the hpte-unit-effects section of {DOC}")
        return
    seeds = 20 if args.quick else args.seeds
    t0 = time.perf_counter()
    tables = []
    for sc in SCENARIOS:
        t1 = time.perf_counter()
        df, fit = run_scenario(sc, seeds)
        tables.append(summarise(sc, df, fit, seeds, time.perf_counter() - t1))
        print(f"{sc.name}: {time.perf_counter() - t1:.0f} s", flush=True)
    tab = pd.concat(tables, ignore_index=True)
    print(f"total {time.perf_counter() - t0:.0f} s")
    text = markdown(tab)
    print(text)
    if not args.quick:
        CSV.parent.mkdir(parents=True, exist_ok=True)
        tab.to_csv(CSV, index=False)
        write_doc(text)
        print(f"wrote {CSV} and the hpte-unit-effects section of {DOC}")


if __name__ == "__main__":
    main()
