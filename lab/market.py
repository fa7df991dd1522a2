"""A seeded market of products whose daily demand responds to a price-change treatment, or
to a ladder of listed prices (one price ratio per arm).

The simulator is the ground truth for pricelab's designs and estimators: everything that an
estimator is supposed to recover (the per-product lag-m effect, the spillover parameter, the
expected untreated demand) is computed exactly from the model and returned beside the draws.

Model (log scale, product i, day t, see docs/simulator.md for parameters and defaults)::

    log mu0_it = log level_i + trend_i * t + log weekly[dow(t)] + common_t + category_{c(i),t}
                 + ar_it + undercut_effect * undercut_fraction_it
    log mu_it  = log mu0_it + lift_i * sum_{l=0..m} decay**l * W_{i,t-l} + spillover * s_it
    lift_i     = elasticity_i * log(1 + price_change) + sum_k effect_modifiers[k] * z_ik
    Y_it       ~ Poisson(mu_it * G_it) + outlier_it * Poisson(outlier_scale * mu0_it * L_it)

with ``G ~ Gamma(r, 1/r)`` (negative-binomial counts; ``G = 1`` for Poisson), ``s_it`` the share
of i's substitutes treated on day t, ``z`` standardised characteristics, ``L`` a Lomax draw and
``outlier_it ~ Bernoulli(outlier_probability)``. Latent terms (shocks, AR deviations, undercut
episodes, count noise) are drawn from seed-and-day keyed streams, so they do not depend on the
assignment and any day can be recomputed in any order: the same seeds and arms give the same
outcomes. Counts are inverse-CDF draws from per-cell uniforms, so potential outcomes are fixed
given the seeds and monotone in the treatment.

Ground truth reported per product-day:

- ``expected_units_control``: E[Y | never treated] (the 0-path; includes the expected spike);
- ``direct_effect``: E[Y | i treated today and the last m days, substitutes in control]
  - E[Y | i in control today and the last m days, substitutes in control];
- ``true_effect``: the same lag-m contrast with *every* product switched together (the global
  effect of the price policy). It equals ``direct_effect`` without spillover; with spillover it
  adds the substitutes' effect, which is what a market-wide price change would realise.

Price ladders (:meth:`Market.run_slots` with ``ratios``): each cell's listed price is
``base_i * r_it`` (``r = 1``: control's price), and the treatment term above becomes

    log mu_it  = log mu0_it + elasticity_i * sum_{l=0..m} decay**l * log r_{i,t-l}
                 + spillover * s_it,        s_it = share of i's substitutes with r != 1 today

A price ratio is the only treatment then: a market with non-zero ``effect_modifiers`` refuses
ratios (a lift that is not the price's has no per-arm meaning). A ladder cell's
``direct_effect`` and ``true_effect`` are the lag-m contrasts of *its own* arm (its ratio
today) against control, defined as above with ``log r`` in place of ``W`` (0 in a control
cell); :meth:`Market.ratio_log_lift` gives the global contrast of any ratio, and
:meth:`Market.optimal_ratio` the profit-maximising one.

The switchback framework with carryover of order m follows Bojinov, Simchi-Levi & Zhao,
"Design and analysis of switchback experiments", Management Science (2023).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import networkx as nx
import numpy as np
import pandas as pd
from scipy import optimize, sparse, special

from lab.config import CHARACTERISTICS, MarketConfig

__all__ = ["DayOutcome", "Market", "MarketConfig"]

_CATEGORY_NAMES = (
    "phones",
    "laptops",
    "headphones",
    "tablets",
    "cameras",
    "speakers",
    "watches",
    "chargers",
    "monitors",
    "keyboards",
    "printers",
    "routers",
)

# Stream keys of the seeded generators; one independent stream per purpose and day.
_S_PRODUCTS, _S_SHOCKS, _S_AR, _S_UNDERCUT, _S_COUNTS = 0, 1, 2, 3, 4
# Leading word of every simulator seed: numpy's SeedSequence pads entropy with zeros, so
# default_rng([seed, 0, 0]) IS default_rng(seed); the tag keeps the market's streams apart from
# a user's default_rng(seed) (e.g. an assignment drawn with the market's own seed).
SEED_TAG = 0x5EED5111


def _nearest(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of each point's k nearest other points (Euclidean), one row per point."""
    if len(points) <= 2000:
        d = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
        np.fill_diagonal(d, np.inf)
        return np.argsort(d, axis=1, kind="stable")[:, :k]
    # a tree query keeps memory linear in the category size for large markets
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(points).kneighbors(return_distance=False)


def poisson_quantile(q: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Poisson quantile function: the smallest k with P(Poisson(mu) <= k) >= q, q in (0, 1).

    The continuous inverse of the CDF in k (``pdtrik``) rounded up, then stepped down once where
    the CDF at the lower integer already reaches q (as scipy.stats.poisson.ppf does).
    """
    k = np.ceil(special.pdtrik(q, mu))
    lower = np.maximum(k - 1, 0)
    return np.where(special.pdtr(lower, mu) >= q, lower, k)


def _normalised(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    total = w.sum()
    if not (len(w) and total > 0):
        raise ValueError("a window's profile needs at least one slice with a positive weight")
    return w / total


def _open_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniforms strictly inside (0, 1), safe for inverse CDFs."""
    return (rng.integers(0, 2**53, size=n) + 0.5) / 2.0**53


@dataclass(frozen=True, eq=False)
class DayOutcome:
    """One simulated day for every product (arrays in ``Market.product_ids`` order)."""

    day: int
    units: np.ndarray  # int, realised units sold
    price: np.ndarray  # float, price in force today
    revenue: np.ndarray  # float, units * price
    treated: np.ndarray  # bool, arm in force today (a ladder: a price other than control's)
    expected_units: np.ndarray  # E[Y | the given arms history]
    expected_units_control: np.ndarray  # E[Y | never treated]
    true_effect: np.ndarray  # lag-m effect, all products switched together (a ladder: own arm's)
    direct_effect: np.ndarray  # lag-m effect of the product alone (substitutes in control)
    outlier: np.ndarray  # bool, a demand spike was added today
    substitutes_treated_share: np.ndarray  # share of the product's substitutes treated today


@dataclass(frozen=True, eq=False)
class PeriodSlot:
    """One period of an experiment's grid as the market sees it (:meth:`Market.slots`).

    ``index`` is the experiment's period, ``day`` the market day it falls in (local date
    minus ``start_date``), ``slot`` its position among the day's ``per_day`` periods (on the
    local grid: an experiment that starts at 15:00 starts with hourly slot 15),
    ``[start, end)`` its instants, ``hour_weights`` the intraday profile's weight of each of
    its real hours (a DST day has 23 or 25; an hourly period in the spring gap has none), and
    ``mass`` its share of the day's demand.
    """

    index: int
    day: int
    slot: int
    per_day: int
    start: dt.datetime
    end: dt.datetime
    hour_weights: np.ndarray
    mass: float


def in_force(slots: Sequence[PeriodSlot], t: int, m: int) -> list[int]:
    """The columns of period ``t``'s arms history for carryover of order ``m``: up to ``m``
    earlier periods that were in force, then ``t``. An hour the spring-forward night skips (a
    slot with no time) never ran, so it is no lag of the hours after it."""
    lags: list[int] = []
    k = t - 1
    while k >= 0 and len(lags) < m:
        if slots[k].start != slots[k].end:
            lags.append(k)
        k -= 1
    return [*reversed(lags), t]


class Market:
    """A seeded market: products, substitutes graph, daily demand and event streams.

    ``Market(cfg, seed)`` is deterministic: two markets with the same config and seed produce
    the same products, the same latent demand and (given the same arms) the same outcomes.
    ``product_ids`` and ``competitor_ids`` name the products and competitors (default
    ``P0001``... and ``competitor-a``...), e.g. after an experiment spec's.
    """

    def __init__(
        self,
        cfg: MarketConfig | None = None,
        seed: int = 0,
        *,
        demand_seed: int | None = None,
        product_ids: Sequence[str] | None = None,
        competitor_ids: Sequence[str] | None = None,
    ) -> None:
        for name, value in (("seed", seed), ("demand_seed", demand_seed)):
            if value is None and name == "demand_seed":
                continue
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
        self.cfg = cfg if cfg is not None else MarketConfig()
        #: Seed of the products, their parameters and the substitutes graph.
        self.seed = int(seed)
        #: Seed of the daily demand path (shocks, AR, undercuts, count noise); defaults to seed.
        self.demand_seed = self.seed if demand_seed is None else int(demand_seed)
        if product_ids is not None and len(set(product_ids)) != self.cfg.n_products:
            raise ValueError(
                f"product_ids must name {self.cfg.n_products} distinct products; "
                f"got {len(set(product_ids))}"
            )
        self._names = None if product_ids is None else [str(p) for p in product_ids]
        if competitor_ids is not None and len(set(competitor_ids)) != self.cfg.n_competitors:
            raise ValueError(
                f"competitor_ids must name {self.cfg.n_competitors} distinct competitors"
            )
        self._competitor_names = None if competitor_ids is None else list(competitor_ids)
        self._log_mu0_cache: dict[int, np.ndarray] = {}
        self._tz = ZoneInfo(self.cfg.timezone)
        self._build_products()
        self._build_substitutes()
        weekly = np.log(np.asarray(self.cfg.weekly_profile, dtype=float))
        self._log_weekly = weekly - weekly.mean()
        self._carry_weights = self.cfg.carryover_decay ** np.arange(self.cfg.carryover_order + 1)
        self._ar_cache: list[np.ndarray] = []
        prof = np.asarray(self.cfg.intraday_profile, dtype=float)
        self._intraday = prof / prof.sum()
        weekend = self.cfg.intraday_profile_weekend
        wk = prof if weekend is None else np.asarray(weekend, dtype=float)
        self._intraday_weekend = wk / wk.sum()

    # ------------------------------------------------------------------ construction
    def _rng(self, stream: int, day: int = 0) -> np.random.Generator:
        key = self.seed if stream == _S_PRODUCTS else self.demand_seed
        return np.random.default_rng([SEED_TAG, key, stream, day])

    def _build_products(self) -> None:
        cfg = self.cfg
        rng = self._rng(_S_PRODUCTS)
        n, k = cfg.n_products, cfg.n_categories
        cat = rng.permutation(np.arange(n) % k)
        names = [
            _CATEGORY_NAMES[j] if j < len(_CATEGORY_NAMES) else f"category{j + 1:02d}"
            for j in range(k)
        ]
        cat_price = np.exp(rng.uniform(np.log(cfg.price_min), np.log(cfg.price_max), size=k))
        base_price = np.maximum(np.round(cat_price[cat] * np.exp(rng.normal(0, 0.25, n)), 2), 0.01)
        cat_width = rng.uniform(5.0, 40.0, size=k)
        width = np.round(np.abs(cat_width[cat] * np.exp(rng.normal(0, 0.2, n))), 1)
        battery = np.round(np.exp(rng.normal(np.log(10.0), 0.5, n)), 1)
        rating = np.round(np.clip(rng.normal(4.1, 0.4, n), 1.0, 5.0), 1)
        weight = np.round(0.02 * width * np.exp(rng.normal(0, 0.3, n)), 3)
        chars = {"width": width, "battery": battery, "rating": rating, "weight": weight}
        X = np.column_stack([chars[c] for c in CHARACTERISTICS])
        sd = X.std(axis=0)
        Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        self._Z = Z
        self._category_codes = cat
        self._base_price = base_price
        #: each product's unit cost (no draw: today's streams are unchanged by it)
        self.unit_cost: np.ndarray = np.round(cfg.unit_cost_share * base_price, 2)
        self.product_ids: list[str] = self._names or [f"P{i + 1:04d}" for i in range(n)]
        self.products = pd.DataFrame(
            {
                "product": self.product_ids,
                "category": [names[c] for c in cat],
                "base_price": base_price,
                "unit_cost": self.unit_cost,
                **chars,
            }
        )
        self.categories: list[str] = names

        lo, hi = np.log(cfg.mean_units_min), np.log(cfg.mean_units_max)
        self._log_level = rng.uniform(lo, hi, size=n)
        self._trend = rng.normal(0.0, cfg.trend_sd, size=n)
        zi = {c: Z[:, j] for j, c in enumerate(CHARACTERISTICS)}
        self.elasticity: np.ndarray = (
            cfg.elasticity_mean
            + sum((b * zi[c] for c, b in cfg.elasticity_modifiers.items()), np.zeros(n))
            + cfg.elasticity_sd * rng.normal(size=n)
        )
        extra = sum((b * zi[c] for c, b in cfg.effect_modifiers.items()), np.zeros(n))
        #: Log-multiplier of demand for a product treated today only (no carryover, no spillover).
        self.treatment_log_lift: np.ndarray = self.elasticity * np.log1p(cfg.price_change) + extra
        self._competitor_markup = cfg.competitor_markup_mean + cfg.competitor_markup_sd * (
            rng.normal(size=(n, cfg.n_competitors))
        )
        self.competitors: list[str] = self._competitor_names or [
            f"competitor-{chr(ord('a') + j)}" for j in range(cfg.n_competitors)
        ]

    def _build_substitutes(self) -> None:
        """Link each product to its nearest within-category neighbours (characteristics, price)."""
        k = self.cfg.substitutes_per_product
        feats = np.column_stack([self._Z, np.log(self._base_price)])
        g = nx.Graph()
        g.add_nodes_from(
            (pid, {"category": c})
            for pid, c in zip(self.product_ids, self.products["category"], strict=True)
        )
        rows: list[int] = []
        cols: list[int] = []
        if k > 0:
            for c in np.unique(self._category_codes):
                members = np.flatnonzero(self._category_codes == c)
                if len(members) < 2:
                    continue
                kk = min(k, len(members) - 1)
                nearest = _nearest(feats[members], kk)
                rows.extend(np.repeat(members, kk).tolist())
                cols.extend(members[nearest.ravel()].tolist())
        n = self.cfg.n_products
        A = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
        A = ((A + A.T) > 0).astype(float)
        iu, ju = sparse.triu(A, k=1).nonzero()
        g.add_edges_from(
            (self.product_ids[a], self.product_ids[b]) for a, b in zip(iu, ju, strict=True)
        )
        deg = np.asarray(A.sum(axis=1)).ravel()
        self._has_substitutes = deg > 0
        #: Row-normalised substitutes adjacency: (share_matrix @ W_today) is the treated share.
        self._share = sparse.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0)) @ A
        self.substitutes: nx.Graph = g

    # ------------------------------------------------------------------ properties
    @property
    def n_products(self) -> int:
        return self.cfg.n_products

    @property
    def spillover(self) -> float:
        """True spillover parameter: log-demand change when all substitutes are treated."""
        return self.cfg.spillover

    @property
    def category_codes(self) -> np.ndarray:
        """Each product's category, as an index into :attr:`categories`."""
        return self._category_codes

    @property
    def base_levels(self) -> np.ndarray:
        """Each product's base level of expected units a day (the exp of its log level, before
        trend, seasonality and shocks)."""
        return np.exp(self._log_level)

    @property
    def carryover_order(self) -> int:
        return self.cfg.carryover_order

    def day_of_week(self, day: int) -> int:
        """Monday = 0 ... Sunday = 6 for simulated day ``day``."""
        return (self.cfg.start_date.weekday() + day) % 7

    def date(self, day: int) -> dt.date:
        return self.cfg.start_date + dt.timedelta(days=day)

    def intraday(self, day: int) -> np.ndarray:
        """The intraday order profile of day ``day`` over equal slices of the day (sum 1): the
        weekend profile on Saturday and Sunday where one is set."""
        return self._intraday_weekend if self.day_of_week(day) >= 5 else self._intraday

    def hourly_profile(self, day: int) -> np.ndarray:
        """:meth:`intraday` at hour resolution: 24 weights, each the profile's mean over that
        local hour (a 24-slice profile's own values; a 12-slice one's, each twice)."""
        prof = self.intraday(day)
        return np.repeat(prof, 24).reshape(24, len(prof)).mean(axis=1)

    def slots(
        self, bounds: Sequence[tuple[dt.datetime, dt.datetime]], per_day: int
    ) -> list[PeriodSlot]:
        """The market's view of an experiment's consecutive periods ``bounds`` (aware
        ``[start, end)``, ``per_day`` of them in each local day, laid on the local wall clock
        as :mod:`controller.periods` lays them): each period's day, its real hours' profile
        weights and its share of the day's demand. A day's shares add up to 1 whatever its
        length: demand is the day's, spread over the hours the day has (a 23-hour day's
        skipped hour sells nothing, a 25-hour day's repeated hour twice)."""
        one_hour = dt.timedelta(hours=1)
        out: list[PeriodSlot] = []
        day_mass: dict[int, float] = {}
        seen: dict[int, int] = {}

        def local_hours(a: dt.datetime, b: dt.datetime) -> list[int]:
            # the real hours of [a, b): arithmetic on UTC instants, never on the wall clock
            a, b = a.astimezone(dt.UTC), b.astimezone(dt.UTC)
            return [
                (a + h * one_hour).astimezone(self._tz).hour for h in range((b - a) // one_hour)
            ]

        for k, (start, end) in enumerate(bounds):
            span = end.astimezone(dt.UTC) - start.astimezone(dt.UTC)
            if span % one_hour or span < dt.timedelta(0):
                raise ValueError(f"period {k} ({start} to {end}) is not a whole number of hours")
            local = start.astimezone(self._tz)
            day = (local.date() - self.cfg.start_date).days
            self._check_day(day)
            hourly = self.hourly_profile(day)
            hours = local_hours(start, end)
            weights = hourly[hours] if hours else np.zeros(0)
            if day not in day_mass:
                day_mass[day] = float(hourly[local_hours(*self.day_window(day))].sum())
            if not seen:  # the first period may start mid-day: its place on the day's grid
                wall = local.hour * 3600 + local.minute * 60 + local.second
                seen[day] = wall // (86400 // per_day) - 1
            slot = seen[day] = seen.get(day, -1) + 1
            out.append(
                PeriodSlot(
                    k, day, slot, per_day, start, end, weights, float(weights.sum()) / day_mass[day]
                )
            )
        return out

    def day_window(self, day: int) -> tuple[dt.datetime, dt.datetime]:
        """The local calendar day ``day`` as tz-aware ``[start, end)`` datetimes."""
        d = self.date(day)
        start = dt.datetime.combine(d, dt.time(0), tzinfo=self._tz)
        end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tzinfo=self._tz)
        return start, end

    # ------------------------------------------------------------------ latent demand
    def _ar(self, day: int) -> np.ndarray:
        """Product-level AR(1) log deviations on ``day`` (computed once, in order, cached)."""
        cfg = self.cfg
        rho, sd = cfg.product_ar_rho, cfg.product_ar_sd
        while len(self._ar_cache) <= day:
            t = len(self._ar_cache)
            eps = self._rng(_S_AR, t).normal(size=cfg.n_products)
            if t == 0:
                self._ar_cache.append(sd * eps)
            else:
                self._ar_cache.append(rho * self._ar_cache[-1] + np.sqrt(1 - rho**2) * sd * eps)
        return self._ar_cache[day]

    def undercut_episodes(self, day: int) -> pd.DataFrame:
        """Competitor undercut episodes starting on ``day`` (ground truth, seed-determined).

        Columns: product, competitor, start_fraction and end_fraction (of the day, episodes end at
        midnight at the latest), depth (relative drop below our base price), competitor_price.
        """
        idx, comp, start, end, depth = self._undercuts(day)
        return pd.DataFrame(
            {
                "product": [self.product_ids[i] for i in idx],
                "competitor": [self.competitors[j] for j in comp],
                "start_fraction": start,
                "end_fraction": end,
                "depth": depth,
                "competitor_price": np.round(self._base_price[idx] * (1 - depth), 2),
            }
        )

    def _undercuts(
        self, day: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        rng = self._rng(_S_UNDERCUT, day)
        n = cfg.n_products
        hit = rng.random(n) < cfg.undercut_probability
        comp = rng.integers(0, cfg.n_competitors, size=n)
        start = rng.random(n)
        hours = rng.uniform(cfg.undercut_hours_min, cfg.undercut_hours_max, size=n)
        depth = rng.uniform(cfg.undercut_depth_min, cfg.undercut_depth_max, size=n)
        end = np.minimum(start + hours / 24.0, 1.0)
        idx = np.flatnonzero(hit)
        return idx, comp[idx], start[idx], end[idx], depth[idx]

    def _log_mu0(self, day: int) -> np.ndarray:
        """Log of expected untreated demand (before the count draw and spikes); cached."""
        cached = self._log_mu0_cache.get(day)
        if cached is None:
            cached = self._log_mu0_cache[day] = self._compute_log_mu0(day)
        return cached

    def _compute_log_mu0(self, day: int) -> np.ndarray:
        cfg = self.cfg
        rng = self._rng(_S_SHOCKS, day)
        common = cfg.common_shock_sd * rng.normal()
        cat_shock = cfg.category_shock_sd * rng.normal(size=cfg.n_categories)
        idx, _, start, end, _ = self._undercuts(day)
        undercut = np.zeros(cfg.n_products)
        np.add.at(undercut, idx, end - start)
        return (
            self._log_level
            + self._trend * day
            + self._log_weekly[self.day_of_week(day)]
            + common
            + cat_shock[self._category_codes]
            + self._ar(day)
            + cfg.undercut_demand_effect * np.minimum(undercut, 1.0)
        )

    def _count_noise(
        self, day: int, mu0: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Assignment-independent count noise of ``day`` (or from ``rng``, a period's stream):
        gamma mixing, uniforms, spikes."""
        cfg = self.cfg
        n = cfg.n_products
        rng = self._rng(_S_COUNTS, day) if rng is None else rng
        if cfg.nb_dispersion is None:
            mix = np.ones(n)
        else:
            r = cfg.nb_dispersion
            mix = rng.gamma(r, 1.0 / r, size=n)
        u_units = _open_uniform(rng, n)
        spike = rng.random(n) < cfg.outlier_probability
        spike_mean = cfg.outlier_scale * mu0 * rng.pareto(cfg.outlier_tail, size=n)
        u_spike = _open_uniform(rng, n)
        return mix, u_units, spike, spike_mean, u_spike

    def _outlier_mean_factor(self) -> float:
        cfg = self.cfg
        return cfg.outlier_probability * cfg.outlier_scale / (cfg.outlier_tail - 1.0)

    def effects(self, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected_units_control, direct_effect, true_effect) per product on ``day``.

        The effects are lag-m contrasts: treated today and the previous m days against control
        today and the previous m days (days before day 0 count as in the window, as if the
        market had been running).
        """
        self._check_day(day)
        mu0 = np.exp(self._log_mu0(day))
        lag_sum = float(self._carry_weights.sum())
        direct = mu0 * np.expm1(self.treatment_log_lift * lag_sum)
        spill = self.cfg.spillover * self._has_substitutes
        total = mu0 * np.expm1(self.treatment_log_lift * lag_sum + spill)
        return mu0 * (1.0 + self._outlier_mean_factor()), direct, total

    def _days(self, day: int | None, days: Iterable[int] | None) -> list[int]:
        if day is not None and days is not None:
            raise ValueError("pass either day or days, not both")
        if day is not None:
            return [day]
        chosen = list(days) if days is not None else list(range(self.cfg.horizon_days))
        if not chosen:
            raise ValueError("days is empty")
        return chosen

    def true_effect(self, day: int | None = None, *, days: Iterable[int] | None = None) -> float:
        """Estimand: mean per-product lag-m effect on units per product-day (global contrast).

        With ``day`` the mean over products on that day; with ``days`` the mean over products
        and those days; with neither, over days ``0 .. cfg.horizon_days - 1``.
        """
        return float(np.mean([self.effects(d)[2].mean() for d in self._days(day, days)]))

    def direct_effect(self, day: int | None = None, *, days: Iterable[int] | None = None) -> float:
        """Like :meth:`true_effect` but each product switched alone (substitutes in control)."""
        return float(np.mean([self.effects(d)[1].mean() for d in self._days(day, days)]))

    # ------------------------------------------------------------------ decision metrics
    def arm_prices(self, ratio: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each product's price in the control arm and in the treatment arm (as charged):
        ``price_change``'s, or the arm listed at ``ratio`` times control's."""
        base = self._base_price
        if ratio is not None:
            return base, np.round(base * ratio, 2)
        return base, np.round(base * (1.0 + self.cfg.price_change), 2)

    def metric_truth(
        self,
        cells: np.ndarray,
        control_units: np.ndarray,
        effect_units: np.ndarray,
        metric: str,
        unit_cost: np.ndarray | None = None,
        *,
        relative: bool = False,
        ratio: float | None = None,
    ) -> float:
        """The true effect on ``metric`` over ``cells`` (a products x periods mask, products
        in market order), given each cell's expected control units and effect on units (both
        as counted: scaled to the analysis window); with ``relative``, over the control mean;
        ``ratio``: the treatment is the arm listed at that price ratio (p_T its price,
        :meth:`arm_prices`), else ``price_change``'s.

        units: ``te``; revenue: ``p_T (y0 + te) - p_C y0``; profit: ``(p_T - c)(y0 + te) -
        (p_C - c) y0`` with ``unit_cost`` c (NaN without one); the price paid, a ratio of
        sums as estimated: ``sum p_T (y0 + te) / sum (y0 + te) - sum p_C y0 / sum y0``. The
        relative form divides by the control mean of the same cells (NaN when it is not
        positive: pricelab publishes no relative change of a loss)."""
        if not cells.any() or (metric == "profit" and unit_cost is None):
            return float("nan")
        y0, te = control_units[cells], effect_units[cells]
        rows = np.broadcast_to(np.arange(cells.shape[0])[:, None], cells.shape)[cells]
        price_c, price_t = self.arm_prices(ratio)
        p_c, p_t = price_c[rows], price_t[rows]
        if metric == "price":
            control = float(p_c @ y0 / y0.sum())
            effect = float(p_t @ (y0 + te) / (y0 + te).sum()) - control
        else:
            if metric == "units":
                m_c = m_t = np.ones_like(p_c)
            elif metric == "revenue":
                m_c, m_t = p_c, p_t
            elif metric == "profit":
                assert unit_cost is not None
                m_c, m_t = p_c - unit_cost[rows], p_t - unit_cost[rows]
            else:
                raise ValueError(f"no true effect for metric {metric!r}")
            control = float((m_c * y0).mean())
            effect = float((m_t * (y0 + te) - m_c * y0).mean())
        if relative:
            return effect / control if control > 0 else float("nan")  # as analysis.ratio
        return effect

    def elasticity_truth(self, analysed: np.ndarray, treated: np.ndarray) -> float:
        """The elasticity the within-product estimator identifies (analysis.elasticity): per
        product its own-price log lift in expected units over the log change in its price,
        pooled with the estimator's weights ``n_T n_C / (n_T + n_C)`` over the analysed
        cells (masks products x periods, in market order)."""
        t, c = analysed & treated, analysed & ~treated
        nt, nc = t.sum(axis=1), c.sum(axis=1)
        w = np.where((nt > 0) & (nc > 0), nt * nc / np.maximum(nt + nc, 1), 0.0)
        price_c, price_t = self.arm_prices()
        dp = np.log(price_t / price_c)
        return float(w @ self.treatment_log_lift / (w @ dp))

    # ------------------------------------------------------------------ outcomes
    def _check_day(self, day: int) -> None:
        if not isinstance(day, int | np.integer) or day < 0:
            raise ValueError(f"day must be a non-negative integer; got {day!r}")

    def _arms(self, day: int, arms_history: Any) -> np.ndarray:
        H = np.asarray(arms_history)
        if H.ndim == 1:
            H = H[:, None]
        n = self.cfg.n_products
        if H.ndim != 2 or H.shape[0] != n:
            raise ValueError(
                f"arms_history must be a (n_products={n}, day+1) array; got shape {H.shape}"
            )
        if H.shape[1] < 1 or H.shape[1] > day + 1:
            raise ValueError(
                f"arms_history for day {day} must have 1..{day + 1} columns (the last is "
                f"today); got {H.shape[1]}"
            )
        if H.dtype != bool:
            if not np.isin(H, (0, 1)).all():
                raise ValueError("arms_history must be boolean (or 0/1)")
            H = H.astype(bool)
        return H

    def day_outcomes(self, day: int, arms_history: Any) -> DayOutcome:
        """Draw day ``day`` given the arms in force on days ``0..day`` (last column = today).

        ``arms_history`` is a bool ``(n_products, day + 1)`` array; fewer columns are accepted
        (the missing earliest days count as control), a 1-d array is today's arms only. Only the
        last ``m + 1`` columns matter for carryover of order m.
        """
        self._check_day(day)
        start, end = self.day_window(day)
        # a day is the daily grid's period: mass 1, the day's own count-noise stream (the
        # same draws as :meth:`period_outcomes` on a daily grid, the same code)
        slot = PeriodSlot(day, day, 0, 1, start, end, self.hourly_profile(day), 1.0)
        return self.period_outcomes(slot, arms_history)

    def period_outcomes(
        self, slot: PeriodSlot, arms_history: Any, ratio_history: Any = None
    ) -> DayOutcome:
        """Draw period ``slot`` given the arms in force in periods ``0..slot.index`` (last
        column = this period), as :meth:`day_outcomes` draws a day: the period's expected
        demand is its share (``slot.mass``) of its day's, carryover counts periods, and its
        count noise has a stream of its own. A daily grid (one period a day) is the daily
        model itself: the same draws as :meth:`day_outcomes`. The outcome's ``day`` is the
        period's index.

        ``ratio_history`` (floats, ``arms_history``'s shape): the listed price ratio in force
        in each cell, 1 at control's price; demand then follows the ratios (module
        docstring), the price is ``round(base * ratio, 2)``, ``treated`` is a ratio other
        than 1 and the effects are the cell's own arm's against control. Without it, the
        one treatment of ``price_change``, draw for draw as before ladders existed."""
        H = self._arms(slot.index, arms_history)
        cfg = self.cfg
        lag_sum = float(self._carry_weights.sum())
        if ratio_history is None:
            today = H[:, -1]
            history = H.astype(float)  # each cell's dose: 1 treated, 0 not
            lift = self.treatment_log_lift  # one treatment: every product's lift per dose
            price = np.round(self._base_price * (1.0 + cfg.price_change * today), 2)
            # the global contrast: every product treated, every substitute too
            own = self.treatment_log_lift * lag_sum
            spill = self._has_substitutes
        else:
            R = self._ladder_ratios(H, ratio_history)
            today = R[:, -1] != 1.0
            history = np.log(R)  # each cell's dose: its log listed ratio
            lift = self.elasticity
            price = np.round(self._base_price * R[:, -1], 2)
            own = self.elasticity * (np.log(R[:, -1]) * lag_sum)  # its own arm, held m lags
            spill = self._has_substitutes & today
        depth = min(cfg.carryover_order + 1, H.shape[1])
        dose = history[:, ::-1][:, :depth] @ self._carry_weights[:depth]
        exposure = self._share @ today.astype(float)
        with np.errstate(divide="ignore"):
            log_mu0 = self._log_mu0(slot.day) + np.log(slot.mass)
        mu0 = np.exp(log_mu0)
        mu = np.exp(log_mu0 + lift * dose + cfg.spillover * exposure)
        units, spike = self._period_counts(slot, mu0, mu)
        return DayOutcome(
            day=int(slot.index),
            units=units,
            price=price,
            revenue=units * price,
            treated=today.copy(),
            expected_units=mu + mu0 * self._outlier_mean_factor(),
            expected_units_control=mu0 * (1.0 + self._outlier_mean_factor()),
            true_effect=mu0 * np.expm1(own + cfg.spillover * spill),
            direct_effect=mu0 * np.expm1(own),
            outlier=spike & (slot.mass > 0),
            substitutes_treated_share=exposure,
        )

    def _period_counts(
        self, slot: PeriodSlot, mu0: np.ndarray, mu: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A period's units given its expected demand ``mu`` (and untreated ``mu0``, the
        spikes' scale), from the period's own count-noise stream; and where a spike fell."""
        if slot.per_day == 1:
            rng = self._rng(_S_COUNTS, slot.day)
        else:
            rng = np.random.default_rng(
                [SEED_TAG, self.demand_seed, _S_COUNTS, slot.day, slot.per_day, slot.slot]
            )
        mix, u_units, spike, spike_mean, u_spike = self._count_noise(slot.day, mu0, rng)
        if slot.mass > 0:
            units = poisson_quantile(u_units, mu * mix).astype(np.int64)
            units += np.where(spike, poisson_quantile(u_spike, spike_mean), 0).astype(np.int64)
        else:  # an hourly period in the spring-forward gap: no hour, no sale
            units = np.zeros(self.cfg.n_products, dtype=np.int64)
        return units, spike

    def run_slots(
        self, W: Any, slots: Sequence[PeriodSlot], ratios: Any = None
    ) -> list[DayOutcome]:
        """Period outcomes under ``W`` (N x len(slots) bool), periods before the first as
        control for carryover (:meth:`period_outcomes`). Carryover counts the periods that were
        in force: an hour the spring-forward night skips (a slot with no time) never ran, so
        its column is no lag of the hour after it, whose previous period is the hour before.

        ``ratios`` (N x len(slots) floats): a price ladder, each cell's listed price ratio (1:
        control's price; a cell off control's price must be in ``W``); demand, prices and
        effects then follow the ratios (:meth:`period_outcomes`)."""
        Wa = np.asarray(W, dtype=bool)
        n = self.cfg.n_products
        if Wa.shape != (n, len(slots)):
            raise ValueError(f"W must be a (n_products={n}, {len(slots)}) array; got {Wa.shape}")
        m = self.cfg.carryover_order
        if ratios is None:
            return [
                self.period_outcomes(s, Wa[:, in_force(slots, t, m)]) for t, s in enumerate(slots)
            ]
        R = self._ratios(ratios, Wa)
        out = []
        for t, s in enumerate(slots):
            cols = in_force(slots, t, m)
            out.append(self.period_outcomes(s, Wa[:, cols], R[:, cols]))
        return out

    # ------------------------------------------------------------------ price ladders
    def check_price_only(self) -> None:
        """ValueError unless a price ratio is the market's only treatment (no effect
        modifiers): a ladder's arms differ by their prices alone."""
        if any(v != 0 for v in self.cfg.effect_modifiers.values()):
            raise ValueError(
                "a market with effect_modifiers cannot run a price ladder: their lift is not a "
                "price's, so it has no meaning per arm; set effect_modifiers to {} in the "
                "market config"
            )

    def _ratios(self, ratios: Any, W: np.ndarray) -> np.ndarray:
        self.check_price_only()
        R = np.asarray(ratios, dtype=float)
        if R.shape != W.shape:
            raise ValueError(f"ratios must have W's shape {W.shape}; got {R.shape}")
        return R

    def ratio_log_lift(self, ratio: float, *, spillover: bool = True) -> np.ndarray:
        """Each product's log-multiplier of expected units in the lag-m contrast of listed
        price ratio ``ratio`` against control: ``elasticity_i * log(ratio) * sum_l decay**l``,
        plus ``spillover`` where the product has substitutes and ``ratio != 1`` when every
        product is switched together (``spillover=False``: the product alone)."""
        lag_sum = float(self._carry_weights.sum())
        lift = self.elasticity * (np.log(ratio) * lag_sum)
        if spillover and ratio != 1.0:
            lift = lift + self.cfg.spillover * self._has_substitutes
        return np.asarray(lift, dtype=float)

    def untreated_means(self, slots: Sequence[PeriodSlot]) -> np.ndarray:
        """E[units | never treated] of every product (rows) and period ``slots`` (columns)
        without the spike's share: ``mu0``, to which the treatment's multiplier applies."""
        cols = []
        for s in slots:
            with np.errstate(divide="ignore"):
                cols.append(np.exp(self._log_mu0(s.day) + np.log(s.mass)))
        return np.column_stack(cols)

    def expected_profit(self, ratio: float, exposure: np.ndarray, unit_cost: np.ndarray) -> float:
        """Expected profit when every product is listed at ``ratio`` times its base price,
        ``sum_i (ratio * base_i - c_i) * exposure_i * (exp(lift_i(ratio)) + spike factor)``
        with the global lift (:meth:`ratio_log_lift`), ``exposure_i`` the sum of the
        product's ``mu0`` over the cells counted; prices unrounded (a smooth curve in the
        ratio)."""
        lift = self.ratio_log_lift(ratio)
        margin = ratio * self._base_price - unit_cost
        return float(margin @ (exposure * (np.exp(lift) + self._outlier_mean_factor())))

    def optimal_ratio(
        self, exposure: np.ndarray, unit_cost: np.ndarray, low: float, high: float
    ) -> float:
        """The listed price ratio in ``[low, high]`` maximising :meth:`expected_profit`: the
        best of a 201-point grid refined by bounded Brent between its neighbours, the two
        ends and, with spillover (a step at ratio 1), ratio 1 itself."""
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high; got {low}, {high}")

        def profit(r: float) -> float:
            return self.expected_profit(float(r), exposure, unit_cost)

        grid = np.linspace(low, high, 201)
        values = np.array([profit(r) for r in grid])
        j = int(np.argmax(values))
        candidates = [float(low), float(high), float(grid[j])]
        a, b = float(grid[max(j - 1, 0)]), float(grid[min(j + 1, len(grid) - 1)])
        if b > a:
            res = optimize.minimize_scalar(
                lambda r: -profit(r), bounds=(a, b), method="bounded", options={"xatol": 1e-10}
            )
            candidates.append(float(res.x))
        if self.cfg.spillover != 0 and low <= 1.0 <= high:
            candidates.append(1.0)
        return max(candidates, key=profit)

    def arm_metric_truth(
        self,
        cells: np.ndarray,
        control_units: np.ndarray,
        untreated: np.ndarray,
        metric: str,
        unit_cost: np.ndarray | None,
        *,
        ratio: float,
        relative: bool = False,
    ) -> float:
        """The true effect on ``metric`` of the arm listed at ``ratio`` against control over
        ``cells`` (products x periods): each cell's expected control units ``control_units``
        and the arm's global lag-m effect ``untreated * expm1(ratio_log_lift(ratio))``
        (``untreated``: ``mu0``, :meth:`untreated_means`), both as counted, at the arm's price
        (:meth:`metric_truth` with ``ratio``)."""
        effect = untreated * np.expm1(self.ratio_log_lift(ratio))[:, None]
        return self.metric_truth(
            cells, control_units, effect, metric, unit_cost, relative=relative, ratio=ratio
        )

    def cells_optimal_ratio(
        self,
        cells: np.ndarray,
        untreated: np.ndarray,
        unit_cost: np.ndarray | None,
        low: float,
        high: float,
    ) -> float:
        """:meth:`optimal_ratio` with each product's exposure the sum of its ``untreated``
        means (``mu0`` as counted) over ``cells``; NaN without unit costs or cells."""
        if unit_cost is None or not cells.any():
            return float("nan")
        exposure = np.where(cells, untreated, 0.0).sum(axis=1)
        return self.optimal_ratio(exposure, unit_cost, low, high)

    def _ladder_ratios(self, H: np.ndarray, ratio_history: Any) -> np.ndarray:
        """A ladder's listed ratios in force (``H``'s shape, 1: control's price), checked
        against the arms in force ``H``."""
        self.check_price_only()
        R = np.asarray(ratio_history, dtype=float)
        if R.ndim == 1:
            R = R[:, None]
        if R.shape != H.shape:
            raise ValueError(
                f"ratio_history must have arms_history's shape {H.shape}; got {R.shape}"
            )
        if not (np.isfinite(R).all() and (R > 0).all()):
            raise ValueError("price ratios must be finite and above 0 (1: control's price)")
        if ((R != 1.0) & ~H).any():
            raise ValueError(
                "a cell priced off control's (ratio != 1) must be treated in arms_history"
            )
        return R

    def run(self, W: Any, start_day: int = 0) -> list[DayOutcome]:
        """Day outcomes for days ``start_day .. start_day + T - 1`` under ``W`` (N x T bool).

        Days before ``start_day`` count as control for carryover.
        """
        self._check_day(start_day)
        Wa = np.asarray(W)
        n = self.cfg.n_products
        if Wa.ndim != 2 or Wa.shape[0] != n or Wa.shape[1] < 1:
            raise ValueError(f"W must be a (n_products={n}, T>=1) array; got shape {Wa.shape}")
        if Wa.dtype != bool:
            if not np.isin(Wa, (0, 1)).all():
                raise ValueError("W must be boolean (or 0/1)")
            Wa = Wa.astype(bool)
        m = self.cfg.carryover_order
        return [
            self.day_outcomes(start_day + t, Wa[:, max(0, t - m) : t + 1])
            for t in range(Wa.shape[1])
        ]

    def panel_from_outcomes(
        self, outcomes: list[DayOutcome], dates: Sequence[dt.date] | None = None
    ) -> pd.DataFrame:
        """Long panel (sorted by product, then day) from consecutive day outcomes; ``dates``:
        each outcome's local date, for periods shorter than a day (default: its day's)."""
        if not outcomes:
            raise ValueError("outcomes is empty; simulate at least one day")
        n, T = self.cfg.n_products, len(outcomes)
        cols = {
            "treated": "treated",
            "units": "units",
            "price": "price",
            "revenue": "revenue",
            "y0_expected": "expected_units_control",
            "expected_units": "expected_units",
            "true_effect": "true_effect",
            "direct_effect": "direct_effect",
            "outlier": "outlier",
            "substitutes_treated_share": "substitutes_treated_share",
        }
        days = np.array([o.day for o in outcomes])
        df = pd.DataFrame(
            {
                "product": np.repeat(self.product_ids, T),
                "day": np.tile(days, n),
                "date": np.tile(
                    np.array(
                        list(dates) if dates is not None else [self.date(int(d)) for d in days],
                        dtype=object,
                    ),
                    n,
                ),
                **{
                    col: np.column_stack([getattr(o, attr) for o in outcomes]).ravel()
                    for col, attr in cols.items()
                },
            }
        )
        df = df.merge(self.products, on="product", how="left", validate="many_to_one")
        lead = ["product", "category", "day", "date", "treated", "units", "price", "revenue"]
        return df[lead + [c for c in df.columns if c not in lead]]

    def simulate_panel(self, W: Any, start_day: int = 0) -> pd.DataFrame:
        """Run days ``start_day .. start_day + T - 1`` under assignment ``W`` (N x T bool).

        Days before ``start_day`` count as control for carryover. Returns a long panel sorted by
        product then day with columns product, category, day, date, treated, units, price,
        revenue, y0_expected (E[Y | never treated]), expected_units (E[Y | arms]), true_effect
        (global lag-m effect), direct_effect (own lag-m effect), outlier,
        substitutes_treated_share, then base_price and the characteristics.
        """
        return self.panel_from_outcomes(self.run(W, start_day))

    # ------------------------------------------------------------------ event streams
    @staticmethod
    def _check_window(day_start: dt.datetime, day_end: dt.datetime) -> dt.timedelta:
        if day_start.tzinfo is None or day_end.tzinfo is None:
            raise ValueError("day_start and day_end must be timezone-aware datetimes")
        span = day_end - day_start
        if span <= dt.timedelta(0):
            raise ValueError(f"day_end ({day_end}) must be after day_start ({day_start})")
        return span

    @staticmethod
    def _at(day_start: dt.datetime, span: dt.timedelta, frac: float) -> dt.datetime:
        ts = day_start + span * float(frac)
        limit = day_start + span
        return ts if ts < limit else limit - dt.timedelta(microseconds=1)

    def window_share(
        self,
        day_start: dt.datetime,
        day_end: dt.datetime,
        head: dt.timedelta,
        profile: np.ndarray | None = None,
    ) -> float:
        """Expected share of a day's units sold after the first ``head`` of ``[day_start,
        day_end)`` (the analysis window of a period whose washout-length head is set aside):
        the intraday profile's mass past ``head``, with orders spread over equal slices of the
        window as in :meth:`sale_events`; ``profile``: the window's own slices' weights (a
        period's hours, :attr:`PeriodSlot.hour_weights`) instead of the whole day's."""
        span = self._check_window(day_start, day_end)
        prof = self._intraday if profile is None else _normalised(profile)
        f = min(max(head / span, 0.0), 1.0) * len(prof)
        whole = int(np.floor(f))
        before = float(prof[:whole].sum())
        if whole < len(prof):
            before += float(prof[whole]) * (f - whole)
        return 1.0 - before

    def sale_events(
        self,
        day: int,
        day_start: dt.datetime,
        day_end: dt.datetime,
        out: DayOutcome,
        rng: np.random.Generator,
        profile: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Split each product's units of ``out`` into orders of 1..max_order_units units.

        Orders are timed in ``[day_start, day_end)`` following ``cfg.intraday_profile`` (equal
        slices of the window), or ``profile`` (a period's hours' weights); units of the
        orders of a product sum exactly to its units. Deterministic given ``rng``'s state.
        Returned sorted by ``occurred_at``.
        """
        span = self._check_window(day_start, day_end)
        if out.day != day:
            raise ValueError(f"out is the outcome of day {out.day}, not day {day}")
        prof = self._intraday if profile is None else _normalised(profile)
        slices = len(prof)
        events: list[dict[str, Any]] = []
        for i, total in enumerate(out.units.tolist()):
            if total <= 0:
                continue
            sizes = rng.integers(1, self.cfg.max_order_units + 1, size=total)
            cum = np.cumsum(sizes)
            k = int(np.searchsorted(cum, total)) + 1
            sizes = sizes[:k]
            sizes[-1] -= int(cum[k - 1]) - total
            slot = rng.choice(slices, size=k, p=prof)
            frac = (slot + rng.random(k)) / slices
            unit_price = float(out.price[i])
            for units, f in zip(sizes.tolist(), frac.tolist(), strict=True):
                events.append(
                    {
                        "event_id": uuid.UUID(bytes=rng.bytes(16), version=4).hex,
                        "product": self.product_ids[i],
                        "units": int(units),
                        "unit_price": unit_price,
                        "revenue": units * unit_price,
                        "occurred_at": self._at(day_start, span, f),
                    }
                )
        events.sort(key=lambda e: e["occurred_at"])
        return events

    def competitor_events(
        self,
        day: int,
        day_start: dt.datetime,
        day_end: dt.datetime,
        rng: np.random.Generator,
    ) -> list[dict[str, Any]]:
        """Competitor price observations in ``[day_start, day_end)``, sorted by time.

        Each competitor is observed about ``competitor_observations_per_day`` times per product
        at ``base_price * (1 + markup)``. During an undercut episode (see
        :meth:`undercut_episodes`, determined by the market's seed) the competitor's price is
        ``base_price * (1 - depth)``; an observation is always emitted at the episode's start
        and, if it ends before the day does, one at its end with the price restored. Observation
        times and noise come from ``rng``.
        """
        self._check_day(day)
        span = self._check_window(day_start, day_end)
        cfg = self.cfg
        n, k = cfg.n_products, cfg.n_competitors
        episodes: dict[tuple[int, int], tuple[float, float, float]] = {}
        idx, comp, start, end, depth = self._undercuts(day)
        for i, j, s, e, d in zip(idx, comp, start, end, depth, strict=True):
            episodes[(int(i), int(j))] = (float(s), float(e), float(d))

        counts = rng.poisson(cfg.competitor_observations_per_day, size=(n, k))
        events: list[dict[str, Any]] = []

        def emit(i: int, j: int, frac: float, price: float) -> None:
            events.append(
                {
                    "product": self.product_ids[i],
                    "competitor": self.competitors[j],
                    "price": round(max(float(price), 0.01), 2),
                    "observed_at": self._at(day_start, span, frac),
                }
            )

        for i in range(n):
            for j in range(k):
                regular = self._base_price[i] * (1.0 + self._competitor_markup[i, j])
                times = np.sort(rng.random(int(counts[i, j])))
                noise = rng.normal(0.0, 0.005, size=len(times))
                ep = episodes.get((i, j))
                for f, eps in zip(times.tolist(), noise.tolist(), strict=True):
                    if ep is not None and ep[0] <= f < ep[1]:
                        emit(i, j, f, self._base_price[i] * (1.0 - ep[2]))
                    else:
                        emit(i, j, f, regular * (1.0 + eps))
                if ep is not None:
                    emit(i, j, ep[0], self._base_price[i] * (1.0 - ep[2]))
                    if ep[1] < 1.0:
                        emit(i, j, ep[1], regular)
        events.sort(key=lambda e: (e["observed_at"], e["product"], e["competitor"]))
        return events
