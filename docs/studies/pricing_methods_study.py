"""Validation study of the Pricing Labs methods (HPTE, spillover IPW, cluster design, graph).

    .venv/bin/python docs/studies/pricing_methods_study.py [--part a|b|c|all] [--seeds 300]

(a) HPTE vs plain DID: RMSE on simulations with heterogeneous effects, trends, a
    characteristic-driven post-period shock and gross outliers (analysis.pricing_dgp.
    simulate_hpte_panel, 400 products, 56 pre + 28 post days); 95% interval coverage of the
    bootstrap (200 replicates) over ``--seeds`` seeds; ablations (no outlier filter, empirical
    quantile trimming, no matching, unsupervised trees) on the first ``--variant-seeds`` seeds;
    and a confounded design (assignment depends on a characteristic that drives the shock).
(b) Spillover: coverage of the Hajek IPW intervals for direct and spillover effects under
    Bernoulli(1/2) on a planted substitute graph; bias of the naive difference in means against
    the global effect (everyone treated vs nobody) under Bernoulli vs cluster randomisation,
    with clusters found on the *estimated* graph, for graphs of decreasing modularity.
(c) Graph recovery: precision and recall of the BH-selected edges against the planted edges.

Figures are printed; docs/pricing-methods.md quotes them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis.clustering import cluster_graph
from analysis.estimators.hpte import HPTEEstimator
from analysis.graph import build_graph
from analysis.pricing_dgp import (
    plain_did,
    planted_substitute_graph,
    simulate_history,
    simulate_hpte_panel,
    simulate_spillover_outcomes,
)
from analysis.spillover import bernoulli_design, cluster_design, estimate_spillover


def _rmse(err: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(err))))


# ---------------------------------------------------------------------------------- (a)
def part_a(seeds: int, variant_seeds: int) -> None:
    print(f"\n(a) HPTE: 400 products, 56 + 28 days, {seeds} seeds, 200 bootstrap replicates")
    t0 = time.time()
    rows = []
    for s in range(seeds):
        sim = simulate_hpte_panel(400, seed=s)
        res = HPTEEstimator(seed=s, n_bootstrap=200).fit(sim.panel).result
        lo, hi = res.conf_int()
        row = {
            "hpte": res.effect,
            "se": res.se,
            "cover_pop": lo <= sim.population_att <= hi,
            "cover_sample": lo <= sim.sample_att <= hi,
            "did": plain_did(sim.panel),
            "truth": sim.population_att,
            "sample_att": sim.sample_att,
        }
        if s < variant_seeds:
            for name, kw in {
                "no_filter": {"outlier_c": None},
                "quantile_c2": {"outlier_rule": "quantile", "outlier_c": 2.0},
                "no_matching": {"matching": "none"},
                "unsupervised": {"matching": "unsupervised"},
            }.items():
                row[name] = HPTEEstimator(seed=s, se="none", **kw).fit(sim.panel).result.effect  # type: ignore[arg-type]
        rows.append(row)
    df = pd.DataFrame(rows)
    err = df["hpte"] - df["truth"]
    print(f"  time {time.time() - t0:.0f}s")
    print(
        f"  HPTE  bias {err.mean():+.3f}  RMSE {_rmse(err.tolist()):.3f}  "
        f"sd {df['hpte'].std():.3f}  mean SE {df['se'].mean():.3f}"
    )
    d = df["did"] - df["truth"]
    print(f"  DID   bias {d.mean():+.3f}  RMSE {_rmse(d.tolist()):.3f}  sd {df['did'].std():.3f}")
    n = len(df)
    for col in ("cover_pop", "cover_sample"):
        p = df[col].mean()
        print(
            f"  coverage ({col[6:]} ATT) {100 * p:.1f}%  (MC s.e. {100 * np.sqrt(p * (1 - p) / n):.1f})"
        )
    es = df["hpte"] - df["sample_att"]
    print(
        f"  vs sample ATT: sd of error {es.std():.3f}; vs population ATT: sd {err.std():.3f}; "
        f"bootstrap SE mean {df['se'].mean():.3f}"
    )
    sub = df.iloc[:variant_seeds]
    print(f"  ablations on {len(sub)} seeds (RMSE vs population ATT):")
    for name in ("hpte", "no_filter", "quantile_c2", "no_matching", "unsupervised", "did"):
        e = sub[name] - sub["truth"]
        print(f"    {name:13s} bias {e.mean():+.3f}  RMSE {_rmse(e.tolist()):.3f}")

    print(f"  confounded design (P(treated) = 0.2 + 0.6 x3), {variant_seeds} seeds:")
    conf = []
    for s in range(variant_seeds):
        sim = simulate_hpte_panel(400, seed=10_000 + s, confounded=True)
        conf.append(
            {
                "hpte": HPTEEstimator(seed=s, se="none").fit(sim.panel).result.effect,
                "no_matching": HPTEEstimator(matching="none", se="none")
                .fit(sim.panel)
                .result.effect,
                "did": plain_did(sim.panel),
                "truth": sim.population_att,
            }
        )
    cf = pd.DataFrame(conf)
    for name in ("hpte", "no_matching", "did"):
        e = cf[name] - cf["truth"]
        print(f"    {name:13s} bias {e.mean():+.3f}  RMSE {_rmse(e.tolist()):.3f}")


def part_a2(seeds: int, sizes: tuple[int, ...] = (100, 1000), offset: int = 20_000) -> None:
    print(
        f"\n(a2) HPTE coverage at other sizes, {seeds} seeds each (from seed {offset}), "
        "200 bootstrap replicates"
    )
    for n in sizes:
        t0 = time.time()
        cover, err, ses = [], [], []
        for s in range(seeds):
            sim = simulate_hpte_panel(n, seed=offset + s)
            res = HPTEEstimator(seed=s).fit(sim.panel).result
            lo, hi = res.conf_int()
            cover.append(lo <= sim.population_att <= hi)
            err.append(res.effect - sim.population_att)
            ses.append(res.se)
        p = float(np.mean(cover))
        print(
            f"  {n} products: coverage {100 * p:.1f}% (MC s.e. {100 * np.sqrt(p * (1 - p) / seeds):.1f}), "
            f"bias {np.mean(err):+.3f}, sd {np.std(err, ddof=1):.3f}, mean SE {np.mean(ses):.3f} "
            f"({time.time() - t0:.0f}s)"
        )


def part_b2(seeds: int) -> None:
    print(
        f"\n(b2) Spillover IPW with the *estimated* graph (outcomes on the true graph), {seeds} seeds"
    )
    hist = simulate_history(20, seed=7)
    G_true = hist.true_graph
    nodes = list(G_true.nodes)
    G_est = build_graph(hist.history, alpha=0.05)
    G_loose = build_graph(hist.history, alpha=0.20)
    G_est.add_nodes_from(nodes)
    G_loose.add_nodes_from(nodes)
    n = len(nodes)
    base = np.random.default_rng(4).normal(10, 2, n)
    truth = {"direct": 2.0, "spillover_control:any": -1.0, "spillover_treated:any": -0.5}
    design = bernoulli_design(n, 0.5)
    for label, G in (
        ("true graph", G_true),
        ("estimated graph, FDR 0.05", G_est),
        ("estimated graph, FDR 0.20", G_loose),
    ):
        recs = []
        for s in range(seeds):
            z = design(np.random.default_rng(60_000 + s))
            y = simulate_spillover_outcomes(G_true, z, nodes=nodes, base=base, seed=s)
            res = estimate_spillover(
                G, z, y, design, nodes=nodes, n_draws=1000, n_variance_draws=300, seed=s
            )
            recs.append(
                {
                    k: (
                        res.effects.loc[k, "effect"],
                        res.effects.loc[k, "ci_low"] <= v <= res.effects.loc[k, "ci_high"],
                    )
                    for k, v in truth.items()
                }
            )
        parts = []
        for k, v in truth.items():
            est = np.array([r[k][0] for r in recs])
            cov = np.mean([r[k][1] for r in recs])
            parts.append(f"{k} mean {est.mean():+.3f} (truth {v:+.1f}) coverage {100 * cov:.0f}%")
        print(f"  {label} ({G.number_of_edges()} edges): " + "; ".join(parts))


# ---------------------------------------------------------------------------------- (b)
def part_b(seeds: int) -> None:
    print(f"\n(b) Spillover IPW coverage: planted graph, Bernoulli(1/2), {seeds} seeds")
    t0 = time.time()
    G, _ = planted_substitute_graph(30, seed=1)
    nodes = list(G.nodes)
    n = len(nodes)
    base = np.random.default_rng(2).normal(10, 2, n)
    truth = {"direct": 2.0, "spillover_control:any": -1.0, "spillover_treated:any": -0.5}
    design = bernoulli_design(n, 0.5)
    recs = []
    for s in range(seeds):
        z = design(np.random.default_rng(50_000 + s))
        y = simulate_spillover_outcomes(G, z, nodes=nodes, base=base, seed=s)
        res = estimate_spillover(
            G, z, y, design, nodes=nodes, n_draws=1000, n_variance_draws=300, seed=s
        )
        rec = {}
        for k, v in truth.items():
            r = res.effects.loc[k]
            rec[k] = r["effect"]
            rec[k + ":se"] = r["se"]
            rec[k + ":cover"] = r["ci_low"] <= v <= r["ci_high"]
        rec["naive"] = res.effects.loc["naive", "effect"]
        recs.append(rec)
    df = pd.DataFrame(recs)
    print(f"  {n} products, {G.number_of_edges()} edges; time {time.time() - t0:.0f}s")
    for k, v in truth.items():
        p = df[k + ":cover"].mean()
        print(
            f"  {k:22s} truth {v:+.2f}  mean {df[k].mean():+.3f}  sd {df[k].std():.3f}  "
            f"mean SE {df[k + ':se'].mean():.3f}  coverage {100 * p:.1f}% "
            f"(MC s.e. {100 * np.sqrt(p * (1 - p) / len(df)):.1f})"
        )
    print(f"  naive difference in means: mean {df['naive'].mean():+.3f} (direct effect 2.00)")

    print("\n(b) Naive bias vs the global effect, Bernoulli vs cluster randomisation")
    print(
        "    outcomes: y = base + 2 z + s(z) * fraction of neighbours treated, s(0)=-1, s(1)=-0.5"
    )
    print("    clusters: Louvain on the graph estimated from a simulated year of history")
    for p_between, cap in [
        (0.01, None), (0.01, 8), (0.05, None), (0.05, 20), (0.05, 8), (0.05, 4), (0.15, 8)
    ]:  # fmt: skip
        hist = simulate_history(20, p_between=p_between, seed=7)
        G_true = hist.true_graph
        G_est = build_graph(hist.history)
        nodes = list(G_true.nodes)
        cl_est = cluster_graph(G_est, max_size=cap, seed=0)
        cl_true = cluster_graph(G_true, max_size=cap, seed=0)
        deg = np.array([G_true.degree(v) for v in nodes])
        global_effect = 2.0 - 0.5 * (deg > 0).mean()
        base = np.random.default_rng(3).normal(10, 2, len(nodes))
        out = {}
        for name, design in [
            ("bernoulli", bernoulli_design(len(nodes))),
            ("cluster_est", cluster_design(cl_est.label_array(nodes))),
            ("cluster_true", cluster_design(cl_true.label_array(nodes))),
        ]:
            rng = np.random.default_rng(11)
            naive = []
            for r in range(400):
                z = design(rng)
                if z.all() or not z.any():
                    continue
                y = simulate_spillover_outcomes(
                    G_true, z, nodes=nodes, base=base, direct=2.0, spill_control=-1.0,
                    spill_treated=-0.5, mode="fraction", seed=r,
                )  # fmt: skip
                naive.append(y[z].mean() - y[~z].mean())
            out[name] = (
                np.mean(naive) - global_effect,
                np.std(naive) / np.sqrt(len(naive)),
                np.std(naive),
            )
        # predicted ratio under this linear model: mean share of true neighbours outside the cluster
        lab = cl_est.labels
        share_out = np.mean(
            [
                np.mean([lab[u] != lab[v] for u in G_true.neighbors(v)])
                for v in nodes
                if G_true.degree(v) > 0
            ]
        )
        true_e = {frozenset(e) for e in G_true.edges}
        rec = len(true_e & {frozenset(e) for e in G_est.edges}) / len(true_e)
        cut_true_weight = sum(
            d["weight"] for u, v, d in G_true.edges(data=True) if lab[u] != lab[v]
        ) / sum(d["weight"] for *_, d in G_true.edges(data=True))
        b0, bc, bt = out["bernoulli"][0], out["cluster_est"][0], out["cluster_true"][0]
        print(
            f"  p_between {p_between:.2f} cap {cap}: graph recall {rec:.2f}, clusters "
            f"{cl_est.sizes.size} (median {np.median(cl_est.sizes):.0f}, max {cl_est.sizes.max()}), "
            f"true weight cut {100 * cut_true_weight:.0f}%\n"
            f"    bias Bernoulli {b0:+.3f} (+-{out['bernoulli'][1]:.3f}), cluster(est. graph) "
            f"{bc:+.3f} (+-{out['cluster_est'][1]:.3f}), cluster(true graph) {bt:+.3f}; "
            f"reduction {100 * (1 - bc / b0):.0f}% (true-graph clusters {100 * (1 - bt / b0):.0f}%; "
            f"predicted 1 - share of neighbours cut = {100 * (1 - share_out):.0f}%)\n"
            f"    sd of the naive estimate over designs: Bernoulli {out['bernoulli'][2]:.3f}, "
            f"cluster {out['cluster_est'][2]:.3f} (the power cost)"
        )


# ---------------------------------------------------------------------------------- (c)
def part_c() -> None:
    print("\n(c) Graph recovery: 20 categories of 20-60 products, 365 days, 3 seeds")
    for alpha in (0.01, 0.05, 0.10):
        prec, rec, wcorr = [], [], []
        for s in range(3):
            hist = simulate_history(20, seed=100 + s)
            G = build_graph(hist.history, alpha=alpha)
            est = {frozenset(e) for e in G.edges}
            true = {frozenset(e) for e in hist.true_graph.edges}
            tp = est & true
            prec.append(len(tp) / max(1, len(est)))
            rec.append(len(tp) / len(true))
            w = np.array(
                [
                    (G.edges[tuple(e)]["weight"], hist.true_graph.edges[tuple(e)]["weight"])
                    for e in tp
                ]
            )
            wcorr.append(np.corrcoef(w.T)[0, 1])
        print(
            f"  FDR {alpha:.2f}: precision {np.mean(prec):.3f}  recall {np.mean(rec):.3f}  "
            f"corr(estimated, true elasticity) {np.mean(wcorr):.2f}"
        )
    # recall by strength of the true cross elasticity
    hist = simulate_history(20, seed=100)
    G = build_graph(hist.history)
    rows = [(d["weight"], G.has_edge(u, v)) for u, v, d in hist.true_graph.edges(data=True)]
    df = pd.DataFrame(rows, columns=["elasticity", "found"])
    df["band"] = pd.cut(df["elasticity"], [0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    print(
        "  recall by true elasticity:",
        df.groupby("band", observed=True)["found"].mean().round(2).to_dict(),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["a", "a2", "b", "b2", "c", "all"])
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--variant-seeds", type=int, default=100)
    ap.add_argument("--spill-seeds", type=int, default=200)
    ap.add_argument("--a2-seeds", type=int, default=100)
    ap.add_argument("--a2-sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--a2-offset", type=int, default=20_000)
    args = ap.parse_args()
    if args.part in ("a", "all"):
        part_a(args.seeds, args.variant_seeds)
    if args.part in ("a2", "all"):
        part_a2(args.a2_seeds, tuple(args.a2_sizes), args.a2_offset)
    if args.part in ("b", "all"):
        part_b(args.spill_seeds)
    if args.part in ("b2", "all"):
        part_b2(100)
    if args.part in ("c", "all"):
        part_c()


if __name__ == "__main__":
    main()
