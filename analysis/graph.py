"""The substitutable-items graph: which products' prices move which other products' demand.

For every candidate pair of products in the same category, a year of daily history is used to
estimate the cross-price elasticity of j's demand with respect to i's price, in the time-series
regression (one per ordered pair)

    log(1 + units_jt) = a_j + d_j t + c c_t + k p_t + beta_j log price_jt + gamma_ij log price_it
                        + e_jt

with ``c_t`` and ``p_t`` the category's mean log(1 + units) and mean log price on day t (they
absorb category-wide demand and category-wide price moves: seasons, weekdays, sale events; a
time effect shared by the category) and ``a_j + d_j t`` the product's own level and trend.
Without ``p_t``, a category sale moves every price at once and i's price stands in for the
omitted prices of j's true neighbours, which produced most false edges in simulation. Substitutes have ``gamma_ij > 0``; the one-sided t-test of
``gamma_ij <= 0`` gives p_ij. The pair's p-value is the Bonferroni combination of both
directions, ``min(1, 2 min(p_ij, p_ji))``, and the Benjamini-Hochberg procedure (Benjamini &
Hochberg 1995) at level ``alpha`` runs across all candidate pairs of all categories. Survivors
become undirected edges weighted by the mean of the positive parts of the two elasticities.

Computation: by Frisch-Waugh-Lovell, residualising all series of a category on the shared
controls once reduces every pair's regression to 2x2 normal equations built from the category's
Gram matrices, so a category of m products costs two m x T matrix products, not m^2 regressions.

Assumptions: price variation is as good as random given the controls (promotions not timed to
product-specific demand shocks); cross effects are constant over the year; the approach is the
"graph of products with correlated demand" of Cooprider & Nassiri, Business Economics (2023).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from scipy import stats

from analysis.errors import AnalysisError


class GraphError(AnalysisError, ValueError):
    """The history cannot be turned into a graph; the message says what to fix."""


@dataclass(frozen=True)
class PairTests:
    """All candidate pairs (i < j within a category) with both directional estimates."""

    source: np.ndarray  # product labels
    target: np.ndarray
    gamma_st: np.ndarray  # effect of source's log price on target's log units
    gamma_ts: np.ndarray
    pvalue: np.ndarray  # pair p-value (Bonferroni of the two one-sided tests)
    category: np.ndarray
    #: what was not tested and why (sparse products, categories short of days), one sentence
    #: each: a product left out has no edge, which a spillover analysis reads as no neighbour
    left_out: tuple[str, ...] = ()


def benjamini_hochberg(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Reject-mask of the Benjamini-Hochberg step-up procedure at FDR level ``alpha``."""
    p = np.asarray(pvalues, dtype=float)
    n = p.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    thresh = alpha * np.arange(1, n + 1) / n
    below = p[order] <= thresh
    reject = np.zeros(n, dtype=bool)
    if below.any():
        k = int(np.flatnonzero(below).max())
        reject[order[: k + 1]] = True
    return reject


def _to_matrices(
    history: pd.DataFrame, product: str, date: str, price: str, units: str, category: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in (product, date, price, units, category) if c not in history.columns]
    if missing:
        raise GraphError(f"Column(s) {missing} not found; the history has {list(history.columns)}.")
    if history.empty:
        raise GraphError("The history has no rows.")
    pcode, products = pd.factorize(history[product], sort=True)
    dcode, dates = pd.factorize(history[date], sort=True)
    if np.bincount(pcode.astype(np.int64) * len(dates) + dcode).max() > 1:
        raise GraphError(
            "A product appears more than once on a date; aggregate to one row per product and day."
        )
    p = pd.to_numeric(history[price], errors="coerce").to_numpy(dtype=float)
    q = pd.to_numeric(history[units], errors="coerce").to_numpy(dtype=float)
    for col, values, bad, rule in (
        (price, p, p <= 0, "Prices must be positive"),
        (units, q, q < 0, "Units must be non-negative"),
    ):
        if bad.any():  # (NaN compares False: a blank is a missing day, not a bad value)
            i = int(np.flatnonzero(bad)[0])
            raise GraphError(
                f"{rule}: column {col!r} has {values[i]:g} for product "
                f"{history[product].iloc[i]!r} on {_day(history[date].iloc[i])}; leave that day "
                "out or correct it."
            )
    N, T = len(products), len(dates)
    LP = np.full((N, T), np.nan)
    LQ = np.full((N, T), np.nan)
    LP[pcode, dcode] = np.log(p)
    LQ[pcode, dcode] = np.log1p(q)
    blank = history[category].isna()
    if blank.any():  # factorize codes a blank -1, which picked the last category
        raise GraphError(
            f"Category column {category!r} is blank for product "
            f"{history.loc[blank, product].iloc[0]!r}; give every product its category."
        )
    ccode, cats = pd.factorize(history[category], sort=True)
    first = np.full(N, -1, dtype=np.int64)
    first[pcode[::-1]] = ccode[::-1]
    if np.any(first[pcode] != ccode):
        raise GraphError("A product is listed under more than one category; give each one only.")
    cat_of = np.asarray(cats, dtype=object)[first]
    return np.asarray(products), cat_of, LP, LQ, np.asarray(dates)


def _day(t: Any) -> str:
    """A day as a sentence names it: the date of a UTC midnight, else the instant (a zone's
    midnight is another date in UTC)."""
    if not isinstance(t, pd.Timestamp):
        return str(t)
    return t.date().isoformat() if t == t.normalize() else t.isoformat()


def _orthonormal_controls(LP: np.ndarray, LQ: np.ndarray) -> np.ndarray:
    T = LQ.shape[1]
    t = np.linspace(-1.0, 1.0, T)
    c = LQ.mean(axis=0)
    cp = LP.mean(axis=0)
    Z = np.column_stack([np.ones(T), t, c - c.mean(), cp - cp.mean()])
    Q, R = np.linalg.qr(Z)
    keep = np.abs(np.diag(R)) > 1e-10 * max(1.0, np.abs(R).max())
    return Q[:, keep]


def cross_price_tests(
    history: pd.DataFrame,
    *,
    product: str = "product",
    date: str = "date",
    price: str = "price",
    units: str = "units",
    category: str = "category",
    max_missing: float = 0.2,
    min_days: int = 60,
) -> PairTests:
    """Cross-price tests for every within-category candidate pair (see the module docstring).

    Products missing more than ``max_missing`` of the days are left out; within a category,
    days on which any remaining product is missing are dropped. Categories left with fewer than
    ``min_days`` days or 2 products are skipped. What is left out is said in ``left_out``.
    """
    products, cat_of, LP, LQ, _ = _to_matrices(history, product, date, price, units, category)
    ok = np.isnan(LP).mean(axis=1) <= max_missing
    ok &= np.isnan(LQ).mean(axis=1) <= max_missing
    left_out: list[str] = []
    if not ok.all():
        sparse = products[~ok]
        left_out.append(
            f"{sparse.size} product(s) without a price or units on more than "
            f"{max_missing:.0%} of the days not tested (e.g. {sparse[0]!r})"
        )
    src, tgt, g_st, g_ts, pv, cats = [], [], [], [], [], []
    alone: list[int] = []  # the one product of each category that has one left
    order = np.argsort(cat_of[ok], kind="stable")
    rows_ok = np.flatnonzero(ok)[order]
    cat_sorted = cat_of[rows_ok]
    bounds = np.flatnonzero(np.r_[True, cat_sorted[1:] != cat_sorted[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows = rows_ok[a:b]
        m = rows.size
        if m < 2:
            alone.append(int(rows[0]))
            continue
        lp, lq = LP[rows], LQ[rows]
        days = ~(np.isnan(lp).any(axis=0) | np.isnan(lq).any(axis=0))
        if days.sum() < min_days:
            left_out.append(
                f"category {cat_of[rows[0]]!r} ({m} products) not tested: {int(days.sum())} "
                f"days on which each of them has a price and units, fewer than {min_days}"
            )
            continue
        lp, lq = lp[:, days], lq[:, days]
        Q = _orthonormal_controls(lp, lq)
        df = lp.shape[1] - Q.shape[1] - 2
        Xr = lp - (lp @ Q) @ Q.T
        Yr = lq - (lq @ Q) @ Q.T
        Sxx = Xr @ Xr.T
        Sxy = Xr @ Yr.T  # [i, j] = <x_i, y_j>
        syy = np.einsum("it,it->i", Yr, Yr)
        sd = np.diag(Sxx)
        a_ = sd[None, :]  # own price variance of the target j (columns)
        d_ = sd[:, None]  # cross price variance of the source i (rows)
        det = a_ * d_ - Sxx**2
        r1 = np.diag(Sxy)[None, :]
        r2 = Sxy
        good = det > 1e-10 * a_ * d_
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = (d_ * r1 - Sxx * r2) / det
            gamma = (a_ * r2 - Sxx * r1) / det
            rss = syy[None, :] - beta * r1 - gamma * r2
            se = np.sqrt(np.maximum(rss, 0.0) / df * a_ / det)
            tstat = gamma / se
        p_dir = np.where(good & (se > 0), stats.t.sf(tstat, df), 1.0)
        gamma = np.where(good, gamma, np.nan)
        iu, ju = np.triu_indices(m, 1)
        src.append(rows[iu])
        tgt.append(rows[ju])
        g_st.append(gamma[iu, ju])
        g_ts.append(gamma[ju, iu])
        pv.append(np.minimum(1.0, 2.0 * np.minimum(p_dir[iu, ju], p_dir[ju, iu])))
        cats.append(np.full(iu.size, cat_of[rows[0]], dtype=object))
    if alone:  # such a category was left out of the graph without a word
        left_out.append(
            f"{len(alone)} category(ies) with one product left (e.g. {cat_of[alone[0]]!r}, "
            f"product {products[alone[0]]!r}) not tested: a pair needs two products"
        )
    if not src:
        raise GraphError(
            "No category has 2 or more products with enough complete days; check the history "
            f"(min_days={min_days}, max_missing={max_missing})"
            + (f"; {left_out[-1]}." if left_out else ".")
        )
    s, t = np.concatenate(src), np.concatenate(tgt)
    return PairTests(
        source=products[s],
        target=products[t],
        gamma_st=np.concatenate(g_st),
        gamma_ts=np.concatenate(g_ts),
        pvalue=np.concatenate(pv),
        category=np.concatenate(cats),
        left_out=tuple(left_out),
    )


def build_graph(
    history: pd.DataFrame,
    *,
    alpha: float = 0.05,
    product: str = "product",
    date: str = "date",
    price: str = "price",
    units: str = "units",
    category: str = "category",
    max_missing: float = 0.2,
    min_days: int = 60,
) -> nx.Graph:
    """Substitutable-items graph: every tested product a node, BH survivors as weighted edges.

    Node attribute ``category``; edge attributes ``weight`` (mean of the positive parts of the
    two directional cross elasticities), ``elasticity`` (dict direction -> estimate) and
    ``pvalue``. Graph attributes record alpha and the number of tested pairs.
    """
    if not 0.0 < alpha < 1.0:
        raise GraphError(f"alpha must be in (0, 1); got {alpha}.")
    tests = cross_price_tests(
        history, product=product, date=date, price=price, units=units, category=category,
        max_missing=max_missing, min_days=min_days,
    )  # fmt: skip
    reject = benjamini_hochberg(tests.pvalue, alpha)
    G = nx.Graph(
        alpha=alpha, tested_pairs=int(tests.pvalue.size), method="cross-price BH",
        left_out=list(tests.left_out),
    )  # fmt: skip
    cat = dict(zip(tests.source.tolist(), tests.category.tolist(), strict=True))
    cat.update(zip(tests.target.tolist(), tests.category.tolist(), strict=True))
    G.add_nodes_from((str(n), {"category": str(c)}) for n, c in sorted(cat.items()))
    k = np.flatnonzero(reject)
    w = 0.5 * (np.clip(tests.gamma_st[k], 0, None) + np.clip(tests.gamma_ts[k], 0, None))
    for idx, weight in zip(k.tolist(), w.tolist(), strict=True):
        u, v = str(tests.source[idx]), str(tests.target[idx])
        G.add_edge(
            u,
            v,
            weight=float(weight),
            elasticity={
                f"{u}->{v}": float(tests.gamma_st[idx]),
                f"{v}->{u}": float(tests.gamma_ts[idx]),
            },
            pvalue=float(tests.pvalue[idx]),
        )
    return G


# ---------------------------------------------------------------------------------- persistence
def save_graph(G: nx.Graph, path: str | Path) -> None:
    """Write the graph as node-link JSON (networkx format, edges under "links")."""
    data = nx.node_link_data(G, edges="links")
    Path(path).write_text(json.dumps(data, default=_json_default))


def load_graph(path: str | Path) -> nx.Graph:
    """Read a graph written by :func:`save_graph`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GraphError(f"Cannot read a graph from {path}: {exc}") from exc
    return nx.node_link_graph(data, edges="links")


def _json_default(o: object) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def summary(G: nx.Graph, top: int = 10) -> dict[str, Any]:
    """Degree statistics, strongest edges, components and clusters (if nodes carry one)."""
    deg = np.array([d for _, d in G.degree()], dtype=float)
    comps = [len(c) for c in nx.connected_components(G)] if G.number_of_nodes() else []
    edges = sorted(G.edges(data="weight", default=0.0), key=lambda e: -float(e[2]))[:top]
    out: dict[str, Any] = {
        "nodes": G.number_of_nodes(),
        "edges": G.number_of_edges(),
        "tested_pairs": G.graph.get("tested_pairs"),
        "alpha": G.graph.get("alpha"),
        "degree_mean": float(deg.mean()) if deg.size else 0.0,
        "degree_median": float(np.median(deg)) if deg.size else 0.0,
        "degree_max": int(deg.max()) if deg.size else 0,
        "isolated": int((deg == 0).sum()),
        "components_non_trivial": int(sum(1 for c in comps if c > 1)),
        "largest_component": int(max(comps)) if comps else 0,
        "top_edges": [(str(u), str(v), float(w)) for u, v, w in edges],
    }
    clusters = nx.get_node_attributes(G, "cluster")
    if clusters:
        sizes = pd.Series(clusters).value_counts().to_numpy()
        cut = sum(
            float(d.get("weight", 1.0))
            for u, v, d in G.edges(data=True)
            if clusters.get(u) != clusters.get(v)
        )
        total = sum(float(d.get("weight", 1.0)) for _, _, d in G.edges(data=True))
        out["clusters"] = {
            "count": int(sizes.size),
            "size_median": float(np.median(sizes)),
            "size_max": int(sizes.max()),
            "cut_weight_share": cut / total if total > 0 else 0.0,
        }
    return out


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of :func:`summary`."""
    lines = [
        f"nodes {s['nodes']}, edges {s['edges']}"
        + (
            f" (from {s['tested_pairs']} tested pairs, FDR {s['alpha']})"
            if s["tested_pairs"]
            else ""
        ),
        f"degree: mean {s['degree_mean']:.2f}, median {s['degree_median']:.0f}, "
        f"max {s['degree_max']}, isolated {s['isolated']}",
        f"components with edges: {s['components_non_trivial']}, "
        f"largest {s['largest_component']} products",
    ]
    if "clusters" in s:
        c = s["clusters"]
        lines.append(
            f"clusters: {c['count']}, median size {c['size_median']:.0f}, max {c['size_max']}, "
            f"edge weight cut {100 * c['cut_weight_share']:.1f}%"
        )
    if s["top_edges"]:
        lines.append("strongest edges (cross elasticity):")
        lines += [f"  {u} -- {v}: {w:.3f}" for u, v, w in s["top_edges"]]
    return "\n".join(lines)
