"""Staggered adoption (triggered designs): Callaway & Sant'Anna, "Difference-in-differences with
multiple time periods", Journal of Econometrics 225(2), 2021.

Setting: each unit is untreated until its own start period g (its cohort) and treated from then
on (absorbing treatment); some units may never start. Pooled two-way fixed effects is biased
here when effects differ across cohorts or grow with time since start, because already-treated
units serve as controls and receive negative weights (Goodman-Bacon 2021; de Chaisemartin &
D'Haultfoeuille 2020). We avoid that by building every comparison from clean 2x2 DIDs:

    ATT(g, t) = E[Y_t - Y_{g-1} | cohort g] - E[Y_t - Y_{g-1} | not yet treated at t],  t >= g,

with "not yet treated at t" = units whose start is after t (or never), so no treated unit is
ever a control. Assumptions: parallel trends between each cohort and the not-yet-treated units
(conditional on nothing), no anticipation before g, absorbing treatment, no interference.
The overall effect averages ATT(g, t) over all post-treatment (g, t) with cohort-size weights,
i.e. the average effect over the treated cells that have a valid comparison ("simple"
aggregation of the paper); event-time effects ATT(e) (e = t - g) are reported in details.

Why Callaway & Sant'Anna rather than the imputation estimator of Borusyak, Jaravel & Spiess
(2024): every building block is a transparent 2x2 DID that analysts can check by hand, it does
not rely on homogeneous unit effects being estimable from all untreated cells, and it needs no
large sparse solve; the imputation estimator is more efficient under homoskedastic errors.
TROP with both decay rates at 0 and no low-rank term is the imputation estimator, if wanted.

Standard error: nonparametric bootstrap over units (multinomial unit weights; all ATT(g, t)
recomputed per replicate), valid with many units per cohort.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.estimators.crossover import two_way_demean
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng


def adoption_periods(panel: Panel) -> np.ndarray:
    """Start period index of each unit (``T`` for never treated); checks absorbing treatment."""
    W = panel.W
    if np.any(W[:, 1:] < W[:, :-1]):
        i = int(np.argmax((W[:, 1:] < W[:, :-1]).any(axis=1)))
        raise PanelError(
            f"Unit {panel.units[i]!r} stops being treated; staggered adoption needs treatment "
            "that stays on once started (use 'crossover' or 'ht' for switching designs)."
        )
    T = panel.n_periods
    start = np.where(W.any(axis=1), W.argmax(axis=1), T)
    if np.any(start == 0):
        i = int(np.argmax(start == 0))
        raise PanelError(
            f"Unit {panel.units[i]!r} is treated from the first period; it has no pre-period "
            "to difference against. Drop it or extend the panel backwards."
        )
    return start


def _group_time(
    Y: np.ndarray, usable: np.ndarray, start: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """ATT(g,t) and treated weight per (g,t) for each row of ``weights`` (B x N).

    Returns att (B x K), size (B x K) and the K (g, t) pairs; size is 0 where the pair has no
    treated or no control unit in that replicate.
    """
    T = Y.shape[1]
    Y0 = np.where(usable, Y, 0.0)
    att_cols, size_cols, pairs = [], [], []
    for g in np.unique(start[start < T]):
        base = g - 1
        D = Y0[:, g:] - Y0[:, [base]]
        V = (usable[:, g:] & usable[:, [base]]).astype(float)
        cohort = (start == g).astype(float)[:, None]
        ctrl = (start[:, None] > np.arange(g, T)[None, :]).astype(float)
        wt = weights * cohort.T
        num_t, den_t = wt @ (D * V), wt @ V
        Vc = V * ctrl
        num_c, den_c = weights @ (D * Vc), weights @ Vc
        ok = (den_t > 0) & (den_c > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            att = np.where(ok, num_t / np.where(ok, den_t, 1) - num_c / np.where(ok, den_c, 1), 0)
        att_cols.append(att)
        size_cols.append(np.where(ok, den_t, 0.0))
        pairs += [(int(g), int(t)) for t in range(g, T)]
    return np.concatenate(att_cols, axis=1), np.concatenate(size_cols, axis=1), pairs


class StaggeredDIDEstimator(PanelEstimator):
    """Callaway & Sant'Anna (2021) group-time ATTs with not-yet-treated controls.

    n_boot : bootstrap replicates over units. se : ``None``/"bootstrap", or "none".
    """

    name = "staggered"

    def __init__(self, *, n_boot: int = 200, se: str | None = None, seed: int | None = None):
        self.n_boot = n_boot
        self.se = se
        self.seed = seed

    def _fit(self, panel: Panel) -> EstimateResult:
        if self.se not in (None, "bootstrap", "none"):
            raise InferenceError(
                f"The staggered estimator supports se='bootstrap' or 'none', not {self.se!r}."
            )
        start = adoption_periods(panel)
        T = panel.n_periods
        if not np.any(start < T):
            raise PanelError("No unit is ever treated; nothing to estimate.")
        N = panel.n_units
        rng = seeded_rng(self.seed)
        n_boot = 0 if self.se == "none" else self.n_boot
        weights = np.ones((1 + n_boot, N))
        if n_boot:
            weights[1:] = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot)
        att, size, pairs = _group_time(panel.Y, panel.usable, start, weights)
        if size[0].sum() == 0:
            raise PanelError(
                "No cohort has a not-yet-treated comparison unit in any post period; the "
                "effects are not identified without never- or later-treated units."
            )
        tot = size.sum(axis=1)
        overall = (att * size).sum(axis=1) / np.where(tot > 0, tot, np.nan)
        tau = float(overall[0])
        draws = overall[1:][np.isfinite(overall[1:])]
        se = float(np.std(draws, ddof=1)) if draws.size > 1 else float("nan")
        if self.se != "none" and draws.size < 2:
            raise InferenceError("The bootstrap produced no usable replicate.")
        # event-time aggregation (point estimates and bootstrap SEs)
        e_of = np.array([t - g for g, t in pairs])
        event: dict[int, dict[str, float]] = {}
        for e in np.unique(e_of):
            k = e_of == e
            s = size[:, k].sum(axis=1)
            v = (att[:, k] * size[:, k]).sum(axis=1) / np.where(s > 0, s, np.nan)
            if np.isfinite(v[0]):
                vb = v[1:][np.isfinite(v[1:])]
                event[int(e)] = {
                    "att": float(v[0]),
                    "se": float(np.std(vb, ddof=1)) if vb.size > 1 else float("nan"),
                }
        # pooled static TWFE on the same cells, for comparison only (biased under dynamics)
        wt = two_way_demean(panel.W.astype(float), panel.usable)
        yt = two_way_demean(panel.Y, panel.usable)
        twfe = float((wt * yt).sum() / max((wt**2).sum(), 1e-300))
        used = size[0] > 0
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=N,
            n_periods=T,
            se_method="bootstrap" if n_boot else "none",
            n_cells=int(size[0].sum()),
            details={
                "group_time": [
                    {"cohort": g, "period": t, "att": float(a), "n_treated": float(n)}
                    for (g, t), a, n, u in zip(pairs, att[0], size[0], used, strict=True)
                    if u
                ],
                "event_time": event,
                "n_dropped_pairs": int((~used).sum()),
                "twfe_static": twfe,
                "n_boot": int(draws.size),
            },
        )
