"""Direct and spillover effects on a substitutable-items graph, by exposure-probability weighting.

Estimand (Aronow & Samii, "Estimating average causal effects under general interference",
Annals of Applied Statistics 11(4), 2017): each product's outcome is assumed to depend on the
assignment only through its *exposure* ``(own arm, level of neighbours treated)``, the level
being the fraction of its graph neighbours in the treated arm (neighbours among the experiment's
products: graph nodes outside ``nodes`` are ignored) cut at ``thresholds`` (default
``(0.0,)``: level "none" when no neighbour is treated, "any" otherwise; ``(0.0, 0.5)`` gives
"none", "some" (up to half), "most"). Products without neighbours are always at level "none".
For exposures k and l, the contrast ``mean_i [y_i(k) - y_i(l)]`` is estimated by the Hajek
(stabilised inverse-probability-weighted) means

    mu_k = sum_i 1{e_i = k} y_i / pi_i(k)  /  sum_i 1{e_i = k} / pi_i(k)

where ``pi_i(k)`` is the probability under the design that product i ends up in exposure k.
Reported contrasts: ``direct`` = (T, none) - (C, none); ``spillover_control:<level>`` =
(C, level) - (C, none); ``spillover_treated:<level>`` = (T, level) - (T, none); plus the
naive treated-minus-control difference in means for comparison.

Probabilities are Monte-Carlo frequencies over ``n_draws`` assignments drawn from the design,
which is any callable ``rng -> bool vector`` (see :func:`bernoulli_design`,
:func:`cluster_design`), so any design, including cluster randomisation, is handled exactly up
to Monte-Carlo error.

Weight trimming (overlap): a product whose probability of an exposure is below
``min_probability`` is left out of every contrast involving that exposure, for both of its
sides, so each contrast is the average effect over the products for which both exposures are
reasonably likely (no weight exceeds ``1 / min_probability``). ``details["overlap"]`` says how
many products each contrast covers; under a cluster design many products can never be at
(T, none) and the direct effect covers only the others.

Variance: "bootstrap over designs". The science table is imputed from the fitted model
``y_i(k) = mu_k + r_i`` (``r_i`` = product i's residual from the Hajek mean of its observed
exposure, i.e. constant exposure effects with product heterogeneity); assignments are redrawn
from the design and the whole estimator recomputed; the standard error is the standard deviation
across redraws. It is exact under constant exposure effects and, like Neyman's, may understate
the variance when effects vary across products in ways correlated with the weights
(docs/pricing-methods.md reports the coverage measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from analysis.errors import AnalysisError
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng

#: A design draws one assignment vector (True = treated) over the graph's products.
Design = Callable[[np.random.Generator], np.ndarray]


class SpilloverError(AnalysisError, ValueError):
    """Inputs to the spillover estimator are inconsistent; the message says what to fix."""


# ---------------------------------------------------------------------------------- designs
def bernoulli_design(n_products: int, p: float = 0.5) -> Design:
    """Each product treated independently with probability ``p``."""

    def draw(rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(size=n_products) < p

    return draw


def cluster_design(cluster_of: np.ndarray, p: float = 0.5) -> Design:
    """Each cluster treated independently with probability ``p``; products follow their cluster.

    ``cluster_of`` gives each product's cluster id (e.g. ``Clustering.label_array(nodes)``).
    """
    codes, inv = np.unique(np.asarray(cluster_of), return_inverse=True)

    def draw(rng: np.random.Generator) -> np.ndarray:
        return (rng.uniform(size=codes.size) < p)[inv]

    return draw


# ---------------------------------------------------------------------------------- exposures
@dataclass(frozen=True)
class ExposureMapping:
    """Own arm x level of neighbours treated; exposure code = arm * n_levels + level."""

    thresholds: tuple[float, ...] = (0.0,)

    @property
    def level_names(self) -> list[str]:
        if self.thresholds == (0.0,):
            return ["none", "any"]
        if self.thresholds == (0.0, 0.5):
            return ["none", "some", "most"]
        return ["none"] + [f">{t:g}" for t in self.thresholds]

    @property
    def n_levels(self) -> int:
        return len(self.thresholds) + 1

    @property
    def names(self) -> list[str]:
        return [f"{arm}:{lv}" for arm in ("C", "T") for lv in self.level_names]

    def code(self, arm: str, level: str) -> int:
        return self.names.index(f"{arm}:{level}")

    def exposures(self, A: sp.csr_array, degree: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Exposure codes for assignments ``Z`` (draws x products, bool)."""
        Z2 = np.atleast_2d(Z)
        treated_nb = np.asarray(A @ Z2.T.astype(float)).T
        frac = np.divide(treated_nb, degree[None, :], out=np.zeros(Z2.shape), where=degree > 0)
        level = np.zeros(Z2.shape, dtype=np.int64)
        for t in self.thresholds:
            level += frac > t
        out = Z2.astype(np.int64) * self.n_levels + level
        return out if np.ndim(Z) == 2 else out[0]


def adjacency(G: nx.Graph, nodes: list[str]) -> tuple[sp.csr_array, np.ndarray]:
    """Unweighted symmetric adjacency in ``nodes`` order, and degrees."""
    missing = [n for n in nodes if n not in G]
    if missing:
        raise SpilloverError(
            f"{len(missing)} product(s) are not in the graph, e.g. {missing[0]!r}."
        )
    A = nx.to_scipy_sparse_array(G, nodelist=nodes, weight=None, format="csr").astype(float)
    return A, np.asarray(A.sum(axis=1)).ravel()


def exposure_probabilities(
    G: nx.Graph,
    design: Design,
    *,
    nodes: list[str],
    mapping: ExposureMapping | None = None,
    n_draws: int = 2000,
    seed: int | None = None,
    batch: int = 250,
) -> pd.DataFrame:
    """Monte-Carlo probability of every exposure for every product (rows: products).

    Exact enumeration is exponential in the neighbourhood size, so frequencies over ``n_draws``
    design draws are used; the Monte-Carlo standard error of a probability p is
    ``sqrt(p (1 - p) / n_draws)``.
    """
    mapping = mapping or ExposureMapping()
    A, deg = adjacency(G, nodes)
    counts = _exposure_counts(A, deg, design, mapping, len(nodes), n_draws, seed, batch)
    return pd.DataFrame(
        counts / n_draws, index=pd.Index(nodes, name="product"), columns=mapping.names
    )


def bernoulli_exposure_probabilities(
    G: nx.Graph, *, nodes: list[str], p: float = 0.5, mapping: ExposureMapping | None = None
) -> pd.DataFrame:
    """Exact exposure probabilities under independent Bernoulli(p) assignment of products.

    With d neighbours, the number treated is Binomial(d, p) and independent of the product's own
    arm; each count k maps to a level through the fraction k/d.
    """
    mapping = mapping or ExposureMapping()
    _, deg = adjacency(G, nodes)
    L = mapping.n_levels
    out = np.zeros((len(nodes), 2 * L))
    for d in np.unique(deg).astype(int):
        rows = deg == d
        k = np.arange(d + 1)
        pmf = stats.binom.pmf(k, d, p)
        frac = k / d if d > 0 else np.zeros(1)
        level = np.zeros(k.size, dtype=int)
        for t in mapping.thresholds:
            level += frac > t
        by_level = np.bincount(level, weights=pmf, minlength=L)
        out[rows, :L] = (1 - p) * by_level
        out[rows, L:] = p * by_level
    return pd.DataFrame(out, index=pd.Index(nodes, name="product"), columns=mapping.names)


def _exposure_counts(
    A: sp.csr_array,
    deg: np.ndarray,
    design: Design,
    mapping: ExposureMapping,
    n: int,
    n_draws: int,
    seed: int | None,
    batch: int,
) -> np.ndarray:
    rng = seeded_rng(seed)
    K = 2 * mapping.n_levels
    counts = np.zeros((n, K))
    done = 0
    while done < n_draws:
        b = min(batch, n_draws - done)
        Z = np.stack([_check_draw(design(rng), n) for _ in range(b)])
        exp = mapping.exposures(A, deg, Z)
        for k in range(K):
            counts[:, k] += (exp == k).sum(axis=0)
        done += b
    return counts


def _check_draw(z: np.ndarray, n: int) -> np.ndarray:
    z = np.asarray(z)
    if z.shape != (n,):
        raise SpilloverError(f"The design drew {z.shape} assignments for {n} products.")
    return z.astype(bool)


# ---------------------------------------------------------------------------------- estimator
@dataclass(frozen=True)
class SpilloverResult:
    """Hajek estimates of direct and spillover contrasts, and the naive difference in means."""

    effects: pd.DataFrame  # index: contrast name; columns effect, se, ci_low, ci_high, n_units
    means: pd.Series  # Hajek mean outcome per exposure (all products with overlap)
    probabilities: pd.DataFrame  # products x exposures
    exposure: pd.Series  # observed exposure name per product
    details: dict[str, Any] = field(default_factory=dict)

    def to_results(self, metric: str = "outcome") -> list[EstimateResult]:
        """One EstimateResult per contrast, method ``spillover_ipw:<contrast>`` (and ``naive``)."""
        out = []
        for name, row in self.effects.iterrows():
            method = "naive_difference" if name == "naive" else f"spillover_ipw:{name}"
            out.append(
                EstimateResult(
                    method=method,
                    effect=float(row["effect"]),
                    se=float(row["se"]),
                    n_units=int(row["n_units"]),
                    n_periods=1,
                    se_method="neyman" if name == "naive" else "design_bootstrap",
                    metric=metric,
                )
            )
        return out


def _contrasts(mapping: ExposureMapping) -> list[tuple[str, int, int]]:
    c = mapping.code
    out = [("direct", c("T", "none"), c("C", "none"))]
    for lv in mapping.level_names[1:]:
        out.append((f"spillover_control:{lv}", c("C", lv), c("C", "none")))
    for lv in mapping.level_names[1:]:
        out.append((f"spillover_treated:{lv}", c("T", lv), c("T", "none")))
    return out


def hajek_means(
    y: np.ndarray, exp: np.ndarray, k: int, inv_pi: np.ndarray, ok: np.ndarray
) -> np.ndarray:
    """Hajek mean of exposure k over products ``ok``, for each row of ``exp`` (draws x products)."""
    w = ((exp == k) & ok[None, :]) * inv_pi[None, :]
    den = w.sum(axis=1)
    num = w @ y if y.ndim == 1 else np.einsum("rn,rn->r", w, y)
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def leverage_adjusted(
    resid: np.ndarray, e_obs: np.ndarray, inv_pi: np.ndarray, usable: np.ndarray
) -> np.ndarray:
    """Residuals from the Hajek means, scaled back to the spread of the deviations they estimate.

    The design bootstrap imputes each product's outcome under every exposure as the exposure's
    mean plus the product's residual, so its variance is that of the Hajek contrast over a
    population whose spread is the residuals'. But a residual ``y_i - mu_k`` is taken from a
    mean its own product helped fit: with weights ``h_j = w_j / sum w`` in its exposure group
    (``w = 1/pi``), a deviation of variance s^2 leaves a residual of expected square
    ``s^2 (1 - 2 h_i + sum_j h_j^2)``, so the unscaled bootstrap understates the variance:
    on all 70 assignments of an 8-product design it gave 0.85 of the exact design variance
    (tests/unit/analysis/test_spillover.py). In docs/validation.md's spillover study (about 9 of 90
    products at (treated, no treated neighbour) a period) the correction is small: the random
    days' direct-effect SE rose by about 1% (0.264 to 0.267, against a spread of 0.268 with
    the products' levels netted out; the shortfall measured on raw outcomes, 0.89, is finding 3
    of docs/validation.md).

    Each residual is divided by the square root of its factor (HC2's leverage correction for a
    weighted mean), which makes its square unbiased for s^2; the n scaled residuals are then
    multiplied by sqrt((n - 1) / n), since the deviations' own spread around their mean has
    expectation (n - 1) s^2, not n s^2. With equal weights in groups of n_k this is the
    pooled variance with n - K degrees of freedom that Neyman's estimator uses. A product alone
    in its group (factor 0) keeps its residual, which is 0.
    """
    out = resid.copy()
    for k in np.unique(e_obs):
        members = (e_obs == k) & usable[:, k]
        if members.sum() < 2:
            continue
        w = inv_pi[members, k]
        h = w / w.sum()
        factor = 1.0 - 2.0 * h + float((h**2).sum())
        out[members] = resid[members] / np.sqrt(np.where(factor > 0, factor, 1.0))
    n = len(out)
    return out * math.sqrt((n - 1) / n) if n > 1 else out


def estimate_spillover(
    G: nx.Graph,
    assignment: np.ndarray,
    outcome: np.ndarray,
    design: Design,
    *,
    nodes: list[str],
    mapping: ExposureMapping | None = None,
    n_draws: int = 2000,
    n_variance_draws: int = 500,
    min_probability: float = 0.02,
    alpha: float = 0.05,
    seed: int | None = None,
    probabilities: pd.DataFrame | None = None,
) -> SpilloverResult:
    """Direct and spillover effects with stabilised IPW (see the module docstring).

    ``assignment`` and ``outcome`` are vectors over ``nodes`` (the products of the experiment,
    all of them in ``G``); ``design`` is the callable that drew ``assignment`` (used for the
    Monte-Carlo probabilities and for the variance). Exact ``probabilities`` (products x
    exposures, e.g. :func:`bernoulli_exposure_probabilities`) replace the Monte-Carlo ones.
    """
    mapping = mapping or ExposureMapping()
    z = np.asarray(assignment).astype(bool)
    y = np.asarray(outcome, dtype=float)
    n = len(nodes)
    if z.shape != (n,) or y.shape != (n,):
        raise SpilloverError(f"assignment and outcome must have one value per product ({n}).")
    if not np.isfinite(y).all():
        raise SpilloverError("outcome has missing or infinite values; drop those products first.")
    if not 0.0 < min_probability < 0.5:
        raise SpilloverError(f"min_probability must be in (0, 0.5); got {min_probability}.")
    rng = seeded_rng(seed)
    A, deg = adjacency(G, nodes)
    mc_seed = int(rng.integers(2**31))
    if probabilities is not None:
        if list(probabilities.columns) != mapping.names or len(probabilities) != n:
            raise SpilloverError(
                f"probabilities must have one row per product and columns {mapping.names}."
            )
        pi = probabilities.to_numpy(dtype=float).copy()
    else:
        pi = _exposure_counts(A, deg, design, mapping, n, n_draws, mc_seed, 250) / n_draws
    e_obs = mapping.exposures(A, deg, z)
    # an observed exposure never drawn in Monte Carlo: give it the smallest resolvable mass
    own = pi[np.arange(n), e_obs]
    pi[np.arange(n), e_obs] = np.where(own > 0, own, 1.0 / (n_draws + 1))
    K = pi.shape[1]
    usable = pi >= min_probability
    inv_pi = np.divide(1.0, pi, out=np.zeros_like(pi), where=pi > 0)

    contrasts = _contrasts(mapping)
    E1 = e_obs[None, :]
    # fitted exposure means over every product with overlap, for residuals
    mu_all = np.array([hajek_means(y, E1, k, inv_pi[:, k], usable[:, k])[0] for k in range(K)])
    fallback = np.nanmean(mu_all) if np.isfinite(mu_all).any() else y.mean()
    resid = leverage_adjusted(y - np.nan_to_num(mu_all, nan=fallback)[e_obs], e_obs, inv_pi, usable)

    rows: dict[str, dict[str, float]] = {}
    overlap: dict[str, int] = {}
    # variance draws: one set of fresh design draws shared by all contrasts
    Zv = np.stack([_check_draw(design(rng), n) for _ in range(n_variance_draws)])
    Ev = mapping.exposures(A, deg, Zv)
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    for name, k, ref in contrasts:
        ok = usable[:, k] & usable[:, ref]
        overlap[name] = int(ok.sum())
        mk = hajek_means(y, E1, k, inv_pi[:, k], ok)[0]
        ml = hajek_means(y, E1, ref, inv_pi[:, ref], ok)[0]
        est = mk - ml
        se = np.nan
        if np.isfinite(est):
            # imputed science table under the fitted model, then redraw the design
            yv = np.where(Ev == k, mk, np.where(Ev == ref, ml, 0.0)) + resid[None, :]
            draws = hajek_means(yv, Ev, k, inv_pi[:, k], ok) - hajek_means(
                yv, Ev, ref, inv_pi[:, ref], ok
            )
            if np.isfinite(draws).sum() >= 2:
                se = float(np.nanstd(draws, ddof=1))
        rows[name] = {"effect": est, "se": se, "n_units": overlap[name]}
    n1, n0 = int(z.sum()), int((~z).sum())
    if n1 >= 2 and n0 >= 2:
        naive = float(y[z].mean() - y[~z].mean())
        naive_se = float(np.sqrt(y[z].var(ddof=1) / n1 + y[~z].var(ddof=1) / n0))
    else:
        naive, naive_se = np.nan, np.nan
    rows["naive"] = {"effect": naive, "se": naive_se, "n_units": n}
    effects = pd.DataFrame.from_dict(rows, orient="index")
    effects["ci_low"] = effects["effect"] - z_crit * effects["se"]
    effects["ci_high"] = effects["effect"] + z_crit * effects["se"]
    names = np.array(mapping.names)
    return SpilloverResult(
        effects=effects[["effect", "se", "ci_low", "ci_high", "n_units"]],
        means=pd.Series(mu_all, index=mapping.names, name="hajek_mean"),
        probabilities=pd.DataFrame(
            pi, index=pd.Index(nodes, name="product"), columns=mapping.names
        ),
        exposure=pd.Series(names[e_obs], index=pd.Index(nodes, name="product"), name="exposure"),
        details={
            "overlap": overlap,
            "min_probability": min_probability,
            "n_draws": n_draws,
            "n_variance_draws": n_variance_draws,
            "alpha": alpha,
            "max_weight": float(np.max(inv_pi[np.arange(n), e_obs] * usable[np.arange(n), e_obs])),
        },
    )


def panel_spillover(
    panel: Panel,
    graph: nx.Graph,
    design: Design,
    *,
    mapping: ExposureMapping | None = None,
    season_period: int | None = 7,
    n_draws: int = 2000,
    n_variance_draws: int = 500,
    min_probability: float = 0.02,
    seed: int | None = None,
) -> SpilloverResult:
    """Spillover-adjusted estimates for a block-design experiment held in a panel.

    Each product's outcome is its detrended first difference (HPTE step 1: post-period mean
    of observed minus its own trend-and-weekday forecast), which removes level and trend
    differences between products before weighting; the assignment is the panel's treated arm.
    Every product of the panel must be a node of ``graph`` (isolated nodes are fine) and
    ``design`` must draw assignments over ``panel.units`` in panel order. For the analysis
    worker: publish ``panel_spillover(...).to_results()`` next to the naive estimate.
    """
    from analysis.estimators.hpte import detrended_first_differences, season_index

    _, n_pre = panel.block_structure()
    season = None
    if season_period and season_period > 1 and n_pre >= season_period + 4:
        season = season_index(panel.times, season_period)
    fd = detrended_first_differences(panel.Y, panel.usable, n_pre, season, trend=n_pre >= 3)
    nodes = [str(u) if str(u) in graph else u for u in panel.units.tolist()]
    return estimate_spillover(
        graph,
        panel.treated_units,
        fd,
        design,
        nodes=nodes,
        mapping=mapping,
        n_draws=n_draws,
        n_variance_draws=n_variance_draws,
        min_probability=min_probability,
        seed=seed,
    )


# ---------------------------------------------------------------------------------- live designs
def past_levels(
    Y: np.ndarray, usable: np.ndarray, exposure: np.ndarray, n_codes: int
) -> np.ndarray:
    """Each product's level before each period (N x T; NaN where it has no earlier usable
    cell): its mean outcome over its usable cells before period t, net of the exposure effects
    at the exposures it had there. The effects (relative to code 0, (C, none)) are the
    within-product least-squares fit on those same earlier cells, so the level of a product
    cancels exactly from ``Y[:, t] - level[:, t]``; where the earlier cells cannot identify an
    effect (one period: no product has varied yet) it counts as 0. Built from running sums, so
    every period costs the same however long the experiment."""
    ok = np.asarray(usable, dtype=bool)
    N, T = ok.shape
    k = n_codes - 1
    D = (exposure[:, :, None] == np.arange(1, n_codes)[None, None, :]) & ok[:, :, None]
    D = D.astype(float)  # N x T x k dummies of the usable cells
    y = np.where(ok, Y, 0.0)

    def before(x: np.ndarray) -> np.ndarray:  # sums over the periods before each period
        c = np.cumsum(x, axis=1)
        return np.concatenate([np.zeros_like(c[:, :1]), c[:, :-1]], axis=1)

    n = before(ok.astype(float))  # N x T
    sy = before(y)
    sd = before(D)  # N x T x k
    has = n > 0
    inv_n = np.divide(1.0, n, out=np.zeros_like(n), where=has)
    # within-product normal equations, summed over products (no N x T x k x k array): X'X and
    # X'y of the earlier cells, each product's own means removed
    dd = np.cumsum(np.einsum("ntk,ntl->tkl", D, D), axis=0)
    dd = np.concatenate([np.zeros_like(dd[:1]), dd[:-1]])
    xx = dd - np.einsum("ntk,ntl,nt->tkl", sd, sd, inv_n)
    xy = np.cumsum(np.einsum("ntk,nt->tk", D, y), axis=0)
    xy = np.concatenate([np.zeros_like(xy[:1]), xy[:-1]]) - np.einsum("ntk,nt->tk", sd, sy * inv_n)
    beta = np.zeros((T, k))
    for t in range(T):
        # the directions the earlier cells identify: eigenvalues above rounding (the sums are
        # of 0/1 dummies, so their scale is the count of dummy cells); the others count as 0
        w, V = np.linalg.eigh(xx[t])
        keep = w > 1e-9 * max(1.0, float(np.trace(dd[t])))
        if keep.any():
            Vk = V[:, keep]
            beta[t] = Vk @ ((Vk.T @ xy[t]) / w[keep])
    level = (sy - np.einsum("ntk,tk->nt", sd, beta)) * inv_n
    return np.where(has, level, np.nan)


def average_periods(per_period: list[pd.DataFrame], metric: str) -> list[EstimateResult]:
    """The per-period contrasts averaged over periods, their design variances added: each
    contrast over the periods that estimated it with a finite SE (effect = their mean, se =
    sqrt(sum se_t^2) / their number, n_periods = their number)."""
    stacked = pd.concat(per_period, keys=range(len(per_period)))
    # a contrast counts the periods that estimated it with a variance, in its mean and its SE
    stacked = stacked[np.isfinite(stacked["effect"]) & np.isfinite(stacked["se"])]
    g = stacked.groupby(level=1)
    eff, var, n_units = (
        g["effect"].mean(),
        g["se"].apply(lambda s: float((s**2).sum())),
        g["n_units"].mean(),
    )
    return [
        EstimateResult(
            method="naive_difference" if name == "naive" else f"spillover_ipw:{name}",
            effect=float(eff[name]),
            se=math.sqrt(var[name]) / g.size()[name],
            n_units=int(round(n_units[name])),
            n_periods=int(g.size()[name]),
            se_method="design_bootstrap",
            metric=metric,
        )
        for name in eff.index
        if math.isfinite(eff[name]) and math.isfinite(var[name])
    ]


#: Redraws a live design: ``sample(seed, units, periods)`` -> units x periods bool arms
#: (``core.ports.AssignmentSampler``; the controller's ``design_sampler``).
Sampler = Callable[[int, list[str], list[int]], Any]


def design_spillover(
    panel: Panel,
    graph: nx.Graph,
    how: str | None,
    sampler: Sampler,
    *,
    design: str = "this",
    metric: str = "units",
    seed: int = 0,
    n_draws: int = 500,
    n_variance_draws: int = 200,
) -> list[EstimateResult]:
    """Spillover-adjusted estimates of a live design's experiment: what the analysis worker
    publishes and ``pricelab analyze --method spillover`` prints, by one function.

    ``how`` is the design's answer (``Design.spillover``): ``"block"`` (time-bound) runs
    :func:`panel_spillover` on detrended first differences; ``"per-period"`` (random days,
    designs that redraw every unit every period) runs one cross-sectional Hajek IPW estimate per
    period whose every product is usable, on the period's outcomes net of each product's level
    (:func:`past_levels`: its mean over the periods before, net of the exposure effects fitted
    within products on those periods; the first period, with no history, is not estimated),
    averages each contrast over the periods that estimated it with a finite SE and adds their
    design variances: se = sqrt(sum se_t^2) / (their number) (:func:`average_periods`). The
    level is fixed before a period's draw and the periods' draws are independent, so the
    periods' errors are martingale differences, up to the Hajek means' own bias of order 1/n,
    and their variances add. Raw outcomes carried the products' levels, the same in every period, into a Hajek bias
    that averaging over periods could not shrink (docs/validation.md, finding 3). None
    (designs whose periods share draws: crossover, optimal switchback with carryover,
    triggered; and the cluster design, whose measured SEs fall short of the spread) raises
    :class:`SpilloverError`: their joint variance over periods is not implemented.
    ``sampler`` redraws the live design for the exposure probabilities and the variance;
    ``panel.times`` are the design's period indices.
    """
    if how is None:
        raise SpilloverError(
            f"the {design} design gives no valid spillover variance (its periods share draws "
            "or, for the cluster design, its design-bootstrap SE was measured short of the spread)"
        )
    units = [str(u) for u in panel.units]
    missing = [u for u in units if u not in graph]
    if missing:
        raise SpilloverError(f"{len(missing)} product(s) are not nodes of the graph: {missing[:3]}")

    def design_at(period: int) -> Design:
        def draw(rng: np.random.Generator) -> np.ndarray:
            return np.asarray(sampler(int(rng.integers(0, 2**62)), units, [period]))[:, 0]

        return draw

    if how == "block":
        _, t_first = panel.block_structure()
        spill = panel_spillover(
            panel,
            graph,
            design_at(int(panel.times[t_first])),
            n_draws=n_draws,
            n_variance_draws=n_variance_draws,
            seed=seed,
        )
        return spill.to_results(metric)
    if how != "per-period":
        raise SpilloverError(f"unknown spillover kind {how!r}; expected 'block' or 'per-period'")
    mapping = ExposureMapping()
    A, deg = adjacency(graph, units)
    exposure = mapping.exposures(A, deg, np.asarray(panel.W, dtype=bool).T).T  # N x T codes
    levels = past_levels(panel.Y, panel.usable, exposure, len(mapping.names))
    per_period = []
    for t in range(panel.n_periods):
        ok = panel.usable[:, t]
        if ok.sum() < 4 or ok.sum() < panel.n_units:  # a period needs every product
            continue
        if not np.isfinite(levels[:, t]).all():  # ... and every product's history
            continue
        res = estimate_spillover(
            graph,
            panel.W[:, t],
            panel.Y[:, t] - levels[:, t],
            design_at(int(panel.times[t])),
            nodes=units,
            mapping=mapping,
            n_draws=n_draws,
            n_variance_draws=n_variance_draws,
            seed=seed + t,
        )
        per_period.append(res.effects)
    if not per_period:
        raise SpilloverError(
            "no period after the first has every product usable; nothing to estimate yet"
        )
    return average_periods(per_period, metric)
