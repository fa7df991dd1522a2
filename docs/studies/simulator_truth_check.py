"""Checks that the simulator's reported ground truth is what randomised experiments recover.

Prints, over many seeds (a fresh market and assignment per seed):
1. Horvitz-Thompson z-scores (estimate - true effect) / SE for the lag-0 effect in the default
   market and for the lag-1 effect with carryover m = 1 (Bojinov, Simchi-Levi & Zhao 2023): the
   mean should be near 0 and the SD near (or below: the SE is conservative) 1.
2. With fixed potential outcomes (a market's counts are inverse-CDF draws from per-cell
   uniforms): the realised all-treated minus all-control mean against the reported truth, and
   the HT error over 20 assignments per market, so the mean error is measured precisely.
3. The spread of the switchback difference in means on the default 200-product, 28-day market
   next to a time-bound design (half of each category from day 14; both the controller's own
   designs), to show the default market has a clear answer.

Run: .venv/bin/python docs/studies/simulator_truth_check.py [n_seeds [first_seed]]
(about 30 s for 40 seeds on an idle 2-core machine)
"""

from __future__ import annotations

import sys

import numpy as np

from lab.compare import make_spec
from lab.market import Market, MarketConfig
from lab.simulate import run_spec


def ht(panel, lags: int, p: float = 0.5) -> tuple[float, float, float]:
    W = panel.pivot(index="product", columns="day", values="treated").to_numpy()
    R = (panel["units"] - panel["y0_expected"]).to_numpy().reshape(W.shape)
    truth = panel.pivot(index="product", columns="day", values="true_effect").to_numpy()
    all_t = np.ones_like(W[:, lags:], dtype=bool)
    all_c = all_t.copy()
    for lag in range(lags + 1):
        window = W[:, lags - lag : W.shape[1] - lag]
        all_t &= window
        all_c &= ~window
    k = lags + 1
    terms = all_t * R[:, lags:] / p**k - all_c * R[:, lags:] / (1 - p) ** k
    per_product = terms.mean(axis=1)
    return terms.mean(), per_product.std(ddof=1) / np.sqrt(len(per_product)), truth[:, lags:].mean()


def main(n_seeds: int, first_seed: int = 0) -> None:
    cases = [
        ("lag-0, default market", 0, MarketConfig(n_products=400)),
        (
            "lag-1, m=1 decay 0.6",
            1,
            MarketConfig(n_products=400, carryover_order=1, carryover_decay=0.6),
        ),
    ]
    for name, lags, cfg in cases:
        z, err = [], []
        for s in range(first_seed, first_seed + n_seeds):
            m = Market(cfg, seed=1000 + s)
            W = np.random.default_rng(5000 + s).random((400, 40)) < 0.5
            est, se, truth = ht(m.simulate_panel(W), lags)
            z.append((est - truth) / se)
            err.append(est - truth)
        z, e = np.asarray(z), np.asarray(err)
        print(
            f"HT {name}: 400 products x 40 days, {n_seeds} seeds: mean error {e.mean():+.4f} "
            f"(MC SE {e.std(ddof=1) / np.sqrt(n_seeds):.4f}), mean z {z.mean():+.3f}, "
            f"sd z {z.std(ddof=1):.3f}, share |z| > 1.96 {np.mean(np.abs(z) > 1.96):.3f}"
        )

    cfg = MarketConfig(n_products=400)
    gap, err, z = [], [], []
    n_markets = max(n_seeds // 2, 2)
    for s in range(first_seed, first_seed + n_markets):
        m = Market(cfg, seed=50_000 + s)
        ones, zeros = np.ones((400, 40), bool), np.zeros((400, 40), bool)
        p1, p0 = m.simulate_panel(ones), m.simulate_panel(zeros)
        Y1 = p1["units"].to_numpy().reshape(400, 40)
        Y0 = p0["units"].to_numpy().reshape(400, 40)
        R1 = Y1 - p0["y0_expected"].to_numpy().reshape(400, 40)
        R0 = Y0 - p0["y0_expected"].to_numpy().reshape(400, 40)
        truth = p0["true_effect"].mean()
        gap.append((Y1 - Y0).mean() - truth)
        rng = np.random.default_rng([7, s])
        for _ in range(20):
            terms = np.where(rng.random((400, 40)) < 0.5, 2 * R1, -2 * R0)
            se = terms.mean(axis=1).std(ddof=1) / np.sqrt(400)
            err.append(terms.mean() - truth)
            z.append(err[-1] / se)
    g, e, zz = np.asarray(gap), np.asarray(err).reshape(n_markets, 20), np.asarray(z)
    print(
        f"fixed potential outcomes, {n_markets} markets (400 x 40): realised minus reported "
        f"effect {g.mean():+.4f} (SE {g.std(ddof=1) / np.sqrt(n_markets):.4f}); HT over 20 "
        f"assignments each: mean error {e.mean():+.4f} (SE "
        f"{e.mean(axis=1).std(ddof=1) / np.sqrt(n_markets):.4f}), mean z {zz.mean():+.3f}, "
        f"sd z {zz.std(ddof=1):.3f}"
    )

    cfg = MarketConfig()
    for design in ("random-days", "time-bound"):
        errors, truths = [], []
        for s in range(first_seed, first_seed + n_seeds):
            m = Market(cfg, seed=s)
            panel = run_spec(make_spec(design, m, days=28, seed=10_000 + s), m).panel
            if design == "time-bound":
                panel = panel[panel["period"] >= 14]
            y, w = panel["units"].to_numpy(), panel["treated"].to_numpy().astype(bool)
            dim = y[w].mean() - y[~w].mean()
            truth = panel["true_effect"].mean()
            errors.append(dim - truth)
            truths.append(truth)
        e = np.asarray(errors)
        print(
            f"DiM {design:11s} default market (200 x 28), {n_seeds} seeds: mean truth "
            f"{np.mean(truths):.3f}, bias {e.mean():+.3f}, SD {e.std(ddof=1):.3f}"
        )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 40,
        int(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
