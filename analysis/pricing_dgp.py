"""Seeded data generators for the Pricing Labs methods (HPTE, graph, spillover, clusters).

Small, explicit models whose truth is known, used by tests, the validation studies (lab/studies/) and benchmarks:

- :func:`simulate_hpte_panel`: products with heterogeneous levels, linear trends, weekly
  seasonality, a post-period demand shock that depends on product characteristics, gross
  outliers and heterogeneous treatment effects, in a block design.
- :func:`simulate_history`: a year of daily prices and units for products in categories, with a
  known within-category substitute graph (cross-price elasticities > 0 on true edges).
- :func:`simulate_spillover_outcomes`: outcomes on a graph given an assignment, with direct
  and spillover effects defined on the exposure levels of :mod:`analysis.spillover` (or on the
  fraction of treated neighbours).
- :func:`planted_substitute_graph`: a graph of small dense groups inside categories with a few
  ties across groups, the structure clustering is meant to find.
- :func:`simulate_relative_panel`: random days with a multiplicative effect, for relative
  effects (analysis.ratio).
- :func:`factor_panel`: a factor-model panel with a block of treated units, for the core panel
  estimators (DID, SC, SDID, TROP) and their studies.
- :func:`factor_block`: stationary rank-2 factors with the treated units selected on their
  loadings, the advanced estimators' (MC-NNM, TROP) study DGP.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from analysis.panel import Panel


# ---------------------------------------------------------------------------------- HPTE
@dataclass(frozen=True)
class HPTESimulation:
    """A simulated block-design panel and its truth."""

    panel: Panel
    long: pd.DataFrame
    tau: np.ndarray  # per-product effect (defined for every product; applies to treated)
    treated: np.ndarray  # bool per product
    outlier: np.ndarray  # bool per product: a gross post-period jump unrelated to treatment
    population_att: float  # E[tau | treated] under the design

    @property
    def sample_att(self) -> float:
        return float(self.tau[self.treated].mean())


def simulate_hpte_panel(
    n_products: int = 400,
    n_pre: int = 56,
    n_post: int = 28,
    *,
    treated_share: float = 0.5,
    noise_sd: float = 5.0,
    shock_scale: float = 4.0,
    trend_sd: float = 0.1,
    outlier_share: float = 0.02,
    outlier_size: tuple[float, float] = (30.0, 80.0),
    effect_mean: float = 3.5,
    effect_spread: float = 3.0,
    confounded: bool = False,
    seed: int | None = None,
) -> HPTESimulation:
    """Block-design panel with heterogeneous trends, effects, shocks and outliers.

    Characteristics x1..x4 ~ U(0, 1) and a categorical ``segment``. Untreated outcome of
    product i on day t: ``level_i + slope_i * t + season_i(dow) + shock(x_i) * post_t + jump_i
    * post_t + noise``, with ``slope_i = 0.2 (x2 - 0.5) + N(0, trend_sd^2)`` (trends differ
    by characteristics and idiosyncratically), ``shock(x) = shock_scale * (sin(2 pi x3) +
    1{x4 > 0.5} - 0.5)`` (a post-period demand shock shared by similar products) and ``jump_i``
    non-zero for an ``outlier_share`` of products (sign random, size uniform in
    ``outlier_size``). Effect ``tau_i = effect_mean + effect_spread (x1 - 0.5)``. Assignment is a
    fixed share completely at random, or, with ``confounded``, Bernoulli with probability rising
    in x3 (then plain DID is biased by the shock; matching on characteristics is not).
    """
    rng = np.random.default_rng(seed)
    N, T = n_products, n_pre + n_post
    X = rng.uniform(size=(N, 4))
    segment = np.array(["a", "b", "c"])[rng.integers(3, size=N)]
    level = 50.0 + 30.0 * X[:, 0] + 5.0 * (segment == "b")
    slope = 0.2 * (X[:, 1] - 0.5) + rng.normal(0.0, trend_sd, N)
    weekly = np.array([0.0, -0.5, -0.5, 0.0, 0.5, 1.5, 1.0])
    amp = rng.uniform(2.0, 6.0, N)
    t = np.arange(T)
    dates = pd.date_range("2024-01-01", periods=T, freq="D")
    dow = dates.dayofweek.to_numpy()
    post = (t >= n_pre).astype(float)
    shock = shock_scale * (np.sin(2 * np.pi * X[:, 2]) + (X[:, 3] > 0.5) - 0.5)
    outlier = rng.uniform(size=N) < outlier_share
    jump = np.where(outlier, rng.choice([-1.0, 1.0], N) * rng.uniform(*outlier_size, N), 0.0)
    tau = effect_mean + effect_spread * (X[:, 0] - 0.5)
    if confounded:
        p = 0.2 + 0.6 * X[:, 2]
        treated = rng.uniform(size=N) < p
        population_att = effect_mean  # x1 independent of x3, so E[tau | treated] = effect_mean
    else:
        treated = np.zeros(N, dtype=bool)
        treated[rng.permutation(N)[: int(round(treated_share * N))]] = True
        population_att = effect_mean
    W = treated[:, None] & (post[None, :] > 0)
    Y = (
        level[:, None]
        + slope[:, None] * t[None, :]
        + amp[:, None] * weekly[dow][None, :]
        + (shock + jump)[:, None] * post[None, :]
        + tau[:, None] * W
        + rng.normal(0.0, noise_sd, (N, T))
    )
    units = np.array([f"p{i:05d}" for i in range(N)])
    long = pd.DataFrame(
        {
            "product": np.repeat(units, T),
            "date": np.tile(dates.strftime("%Y-%m-%d").to_numpy(), N),
            "units": Y.ravel(),
            "treated": W.ravel().astype(int),
            "x1": np.repeat(X[:, 0], T),
            "x2": np.repeat(X[:, 1], T),
            "x3": np.repeat(X[:, 2], T),
            "x4": np.repeat(X[:, 3], T),
            "segment": np.repeat(segment, T),
        }
    )
    cov = pd.DataFrame(
        {"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "x4": X[:, 3], "segment": segment},
        index=pd.Index(units, name="product"),
    )
    panel = Panel(
        Y=Y,
        W=W,
        units=units,
        times=dates.to_numpy(),
        blackout=np.zeros((N, T), dtype=bool),
        covariates=cov,
    )
    return HPTESimulation(panel, long, tau, treated, outlier, population_att)


def plain_did(panel: Panel) -> float:
    """Textbook DID of a block design: mean post-minus-pre change, treated minus control."""
    _, n_pre = panel.block_structure()
    tr = panel.treated_units
    change = panel.Y[:, n_pre:].mean(axis=1) - panel.Y[:, :n_pre].mean(axis=1)
    return float(change[tr].mean() - change[~tr].mean())


# ---------------------------------------------------------------------------------- graph
@dataclass(frozen=True)
class HistorySimulation:
    history: pd.DataFrame  # product, date, price, units, category
    true_graph: nx.Graph  # true substitute edges, weight = cross-price elasticity


def planted_substitute_graph(
    n_categories: int,
    category_size: tuple[int, int] = (20, 60),
    group_size: tuple[int, int] = (3, 8),
    p_within: float = 0.6,
    p_between: float = 0.01,
    elasticity: tuple[float, float] = (0.3, 0.8),
    seed: int | None = None,
) -> tuple[nx.Graph, dict[str, str]]:
    """Substitute graph: categories split into small groups, dense inside, sparse across.

    Returns the graph (every product a node, weight = cross elasticity) and product -> category.
    Edges only join products of the same category.
    """
    rng = np.random.default_rng(seed)
    G = nx.Graph()
    category: dict[str, str] = {}
    pid = 0
    for c in range(n_categories):
        m = int(rng.integers(category_size[0], category_size[1] + 1))
        names = [f"p{pid + k:06d}" for k in range(m)]
        pid += m
        group = np.empty(m, dtype=int)
        k, g = 0, 0
        while k < m:
            s = int(rng.integers(group_size[0], group_size[1] + 1))
            group[k : k + s] = g
            k += s
            g += 1
        for n in names:
            category[n] = f"c{c:04d}"
            G.add_node(n, category=f"c{c:04d}")
        iu, ju = np.triu_indices(m, 1)
        same = group[iu] == group[ju]
        p = np.where(same, p_within, p_between)
        hit = rng.uniform(size=p.size) < p
        for a, b in zip(iu[hit], ju[hit], strict=True):
            G.add_edge(names[a], names[b], weight=float(rng.uniform(*elasticity)))
    return G, category


def simulate_history(
    n_categories: int = 10,
    n_days: int = 365,
    *,
    category_size: tuple[int, int] = (20, 60),
    p_within: float = 0.6,
    p_between: float = 0.01,
    elasticity: tuple[float, float] = (0.3, 0.8),
    base_units: tuple[float, float] = (10.0, 60.0),
    seed: int | None = None,
) -> HistorySimulation:
    """A year of daily price and units history with a planted substitute graph.

    Log price: list price times independent promotions (each product on promotion about 15% of
    days, 10-30% off, in runs of a few days) and category-wide sale events. Log expected
    demand of product j on day t: ``log base_j + trend_j t + weekly(dow) + category_t +
    own_j log p_jt + sum_{i ~ j} e_ij log p_it`` with own elasticity in [-2.5, -1.2]
    and cross elasticity ``e_ij`` > 0 on true edges; units ~ Poisson(demand x lognormal noise).
    """
    rng = np.random.default_rng(seed)
    G, category = planted_substitute_graph(
        n_categories, category_size, p_within=p_within, p_between=p_between,
        elasticity=elasticity, seed=int(rng.integers(2**31 - 1)),
    )  # fmt: skip
    products = list(G.nodes)
    N, T = len(products), n_days
    idx = {p: k for k, p in enumerate(products)}
    cats = np.array([category[p] for p in products])
    cat_codes, cat_idx = np.unique(cats, return_inverse=True)
    # prices: promotions in runs (2-state Markov chain per product) + category sale days
    on = np.zeros((N, T), dtype=bool)
    state = rng.uniform(size=N) < 0.15
    for day in range(T):
        u = rng.uniform(size=N)
        state = np.where(state, u < 0.7, u < 0.05)
        on[:, day] = state
    depth = rng.uniform(0.1, 0.3, (N, T))
    sale = rng.uniform(size=(len(cat_codes), T)) < 0.03
    log_list = np.log(rng.uniform(5.0, 200.0, N))
    log_p = log_list[:, None] + np.log1p(-depth * on) + np.log(0.85) * sale[cat_idx]
    # demand
    t = np.arange(T)
    dates = pd.date_range("2023-01-01", periods=T, freq="D")
    weekly = np.array([0.0, -0.05, -0.05, 0.0, 0.05, 0.15, 0.1])[dates.dayofweek.to_numpy()]
    cat_shock = np.cumsum(rng.normal(0.0, 0.03, (len(cat_codes), T)), axis=1)
    own = rng.uniform(-2.5, -1.2, N)
    trend = rng.normal(0.0, 0.3 / T, N)
    rel_p = log_p - log_list[:, None]
    A = nx.to_scipy_sparse_array(G, nodelist=products, weight="weight", format="csr")
    cross = A @ rel_p  # sum over neighbours of e_ij * log relative price of i
    log_mu = (
        np.log(rng.uniform(*base_units, N))[:, None]
        + trend[:, None] * t[None, :]
        + weekly[None, :]
        + cat_shock[cat_idx]
        + own[:, None] * rel_p
        + cross
        + rng.normal(0.0, 0.1, (N, T))
    )
    units = rng.poisson(np.exp(log_mu))
    history = pd.DataFrame(
        {
            "product": np.repeat(np.array(products), T),
            "date": np.tile(dates.strftime("%Y-%m-%d").to_numpy(), N),
            "price": np.exp(log_p).ravel().round(2),
            "units": units.ravel(),
            "category": np.repeat(cats, T),
        }
    )
    del idx
    return HistorySimulation(history, G)


# ---------------------------------------------------------------------------------- spillover
def simulate_spillover_outcomes(
    graph: nx.Graph,
    assignment: np.ndarray,
    *,
    nodes: list[str] | None = None,
    base: np.ndarray | None = None,
    direct: float = 2.0,
    spill_control: float = -1.0,
    spill_treated: float = -0.5,
    mode: str = "any",
    noise_sd: float = 1.0,
    seed: int | None = None,
) -> np.ndarray:
    """Outcomes of a single post-period snapshot on a graph, given a 0/1 assignment.

    ``y_i = base_i + direct z_i + s(z_i) e_i + noise`` where ``s(0) = spill_control``,
    ``s(1) = spill_treated`` and ``e_i`` is 1{any neighbour treated} (``mode="any"``) or the
    fraction of neighbours treated (``mode="fraction"``); isolated products have ``e_i = 0``.
    Substitutes steal demand, so spillover effects are negative by default. The global
    effect (all treated vs none treated) is ``direct + spill_treated`` for products with at
    least one neighbour and ``direct`` for isolated ones.
    """
    rng = np.random.default_rng(seed)
    nodes = list(graph.nodes) if nodes is None else nodes
    N = len(nodes)
    z = np.asarray(assignment, dtype=float)
    A = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=None, format="csr")
    deg = np.asarray(A.sum(axis=1)).ravel()
    treated_nb = A @ z
    frac = np.divide(treated_nb, deg, out=np.zeros(N), where=deg > 0)
    e = (treated_nb > 0).astype(float) if mode == "any" else frac
    b = np.zeros(N) if base is None else np.asarray(base, dtype=float)
    s = np.where(z > 0, spill_treated, spill_control)
    return b + direct * z + s * e + rng.normal(0.0, noise_sd, N)


# ------------------------------------------------------------------------ relative effects
def simulate_relative_panel(
    seed: int, n: int, t: int, delta: float, level_sd: float, level: float = 20.0
) -> tuple[Panel, float]:
    """Random days: every product-day an independent draw (p = 0.5), product levels lognormal
    around ``level`` units a day with SD ``level_sd``, Poisson units around a lognormal day
    effect, and a multiplicative effect: treated cells sell ``1 + delta`` times their control
    mean. Returns the panel and the absolute estimand (delta x the treated cells' expected
    control outcome)."""
    rng = np.random.default_rng(seed)
    levels = level * np.exp(level_sd * rng.normal(size=n))[:, None]
    w = rng.random((n, t)) < 0.5
    y0 = levels * np.exp(0.5 * rng.normal(size=(n, t)) - 0.125)
    y = rng.poisson(np.where(w, y0 * (1 + delta), y0)).astype(float)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), t),
            "period": np.tile(np.arange(t), n),
            "y": y.ravel(),
            "w": w.ravel().astype(int),
        }
    )
    panel = Panel.from_long(df, unit="unit", time="period", outcome="y", treated="w")
    return panel, float(delta * np.broadcast_to(levels, (n, t))[w].mean())


# ---------------------------------------------------------------------------------- factor model
def factor_panel(
    seed: int,
    *,
    n_units: int = 30,
    n_periods: int = 20,
    n_treated: int = 3,
    n_pre: int = 15,
    tau: float = 1.0,
    rank: int = 2,
    noise: float = 1.0,
    ar: float = 0.0,
    confounded: bool = False,
) -> Panel:
    """Untreated outcomes Y_it(0) = alpha_i + beta_t + sum_k L_ik F_tk + eps_it with
    rank-``rank`` factors (F a random walk, so trends differ across units), eps_it i.i.d.
    N(0, noise^2) or AR(1). Treated: ``n_treated`` units from period ``n_pre`` on, effect
    ``tau`` added. With ``confounded`` the treated units are those with the largest loading on
    the first factor, so parallel trends fail and DID is biased while weighting estimators are
    not."""
    rng = np.random.default_rng(seed)
    N, T = n_units, n_periods
    alpha = rng.normal(0.0, 2.0, N)
    beta = np.cumsum(rng.normal(0.0, 0.5, T))
    L = rng.normal(0.0, 1.0, (N, rank))
    F = np.cumsum(rng.normal(0.0, 0.3, (T, rank)), axis=0)
    eps = rng.normal(0.0, noise, (N, T))
    if ar:
        for t in range(1, T):
            eps[:, t] = ar * eps[:, t - 1] + np.sqrt(1.0 - ar**2) * eps[:, t]
    Y0 = alpha[:, None] + beta[None, :] + L @ F.T + eps
    if confounded:
        treated = np.argsort(-L[:, 0])[:n_treated]
    else:
        treated = rng.choice(N, n_treated, replace=False)
    W = np.zeros((N, T), dtype=bool)
    W[np.ix_(treated, np.arange(n_pre, T))] = True
    Y = Y0 + tau * W
    return Panel(
        Y=Y,
        W=W,
        units=np.array([f"u{i:03d}" for i in range(N)]),
        times=np.arange(T),
        blackout=np.zeros((N, T), dtype=bool),
    )


def factor_block(seed: int, N: int = 30, T: int = 20, n_tr: int = 8, t0: int = 14) -> Panel:
    """Rank-2 factor model + unit and time effects, block adoption, tau = 1.

    Treated units load more on the first factor (selection on loadings), so two-way fixed
    effects alone is biased; the factors are stationary.
    """
    rng = np.random.default_rng(seed)
    load = rng.normal(size=(N, 2))
    load[:n_tr, 0] += 1.0
    fac = rng.normal(size=(T, 2))
    Y = (
        load @ fac.T
        + rng.normal(size=(N, 1))
        + np.linspace(0, 2, T)[None]
        + 0.5 * rng.normal(size=(N, T))
    )
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return Panel(Y=Y + W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))
