"""Unit-level resampling shared by the matrix estimators (MC-NNM, TROP).

Kept private: ``analysis/inference.py`` holds the public placebo/jackknife/bootstrap tools for
block designs; these helpers work for any assignment pattern because they only resample rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.errors import InferenceError
from analysis.inference import (
    ALIASES,
    overlap_df,
    placebo_df,
    time_placebo_df,
    time_placebo_windows,
    welch_satterthwaite_df,
)

#: tau(Y, W, usable, rows) -> effect; rows of the matrices are units, ``rows`` gives the
#: original unit index of each (a replicate may repeat units), for warm starts
EffectFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class StratifiedBootstrap:
    """Result of ``stratified_unit_bootstrap``: the SE and its Welch-Satterthwaite df."""

    se: float
    df: float
    var_treated: float
    var_control: float
    draws: np.ndarray  # treated-stratum replicates, then control-stratum replicates


def stratified_unit_bootstrap(
    effect: EffectFn,
    Y: np.ndarray,
    W: np.ndarray,
    usable: np.ndarray,
    *,
    n_boot: int,
    rng: np.random.Generator,
) -> StratifiedBootstrap:
    """Unit bootstrap with treated and never-treated units as separate strata.

    Resampling the strata separately keeps every replicate with treated cells and controls
    (Athey, Imbens, Qu & Viviano 2025 bootstrap the same way). Units that are treated at some
    time are one stratum; never-treated units the other. Three choices, each for a measured
    reason (docs/analysis-advanced.md):

    - Each stratum of n units is redrawn with n - 1 units (McCarthy & Snowden 1985; Rao & Wu
      1988). The plain n-out-of-n bootstrap variance of a stratum mean is (n - 1)/n times the
      unbiased one: with 8 treated units an SE 6.5% too small.
    - The strata are resampled one at a time (half the replicates redraw the treated units
      with the controls held, half the reverse), so the variance splits into a treated and a
      control part; for a statistic that is additive over strata to first order the sum equals
      the joint bootstrap's variance.
    - That split gives the Welch-Satterthwaite degrees of freedom of the variance estimate,
      ``(v_t + v_c)^2 / (v_t^2/(n_t - 1) + v_c^2/(n_c - 1))``. With few treated units the SE is
      itself noisy and a normal interval under-covers; intervals use Student t with these df.
    """
    ever = (W & usable).any(axis=1)
    tr, co = np.flatnonzero(ever), np.flatnonzero(~ever)
    if len(tr) < 2:
        raise InferenceError(
            "The unit bootstrap needs at least 2 treated units; with one treated unit use "
            "se='placebo'."
        )
    if n_boot < 4:
        raise InferenceError(f"The bootstrap needs at least 4 replicates, not {n_boot}.")
    n_co_draws = n_boot // 2 if len(co) >= 2 else 0
    n_tr_draws = n_boot - n_co_draws
    out = np.empty(n_boot)
    for b in range(n_boot):
        if b < n_tr_draws:
            idx = np.concatenate([rng.choice(tr, len(tr) - 1), co])
        else:
            idx = np.concatenate([tr, rng.choice(co, len(co) - 1)])
        out[b] = effect(Y[idx], W[idx], usable[idx], idx)
    v_t = float(np.var(out[:n_tr_draws], ddof=1))
    v_c = float(np.var(out[n_tr_draws:], ddof=1)) if n_co_draws >= 2 else 0.0
    # with fewer than 2 controls nothing is redrawn there (v_c = 0): its df do not enter
    df = welch_satterthwaite_df(v_t, v_c, len(tr), max(len(co), 2))
    return StratifiedBootstrap(
        se=float(np.sqrt(v_t + v_c)), df=float(df), var_treated=v_t, var_control=v_c, draws=out
    )


def placebo_effects(
    effect: EffectFn,
    Y: np.ndarray,
    W: np.ndarray,
    usable: np.ndarray,
    *,
    n_placebo: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Effects on control-only panels where random control units take the treated paths.

    Each replicate draws as many control units as there are treated units and gives them the
    treated units' assignment paths (Arkhangelsky et al. 2021, placebo variance; Abadie et al.
    2010 for one treated unit). Valid when units are exchangeable (homoskedastic across units);
    needs more control than treated units. When there are at most ``n_placebo`` sets of
    controls (one treated unit and at most ``n_placebo`` controls, say), each set is used once,
    taking the treated paths in order - the limit of the random draws, and no draw at all, as
    ``inference.placebo_variance`` does for the block estimators.
    """
    ever = (W & usable).any(axis=1)
    tr, co = np.flatnonzero(ever), np.flatnonzero(~ever)
    if len(co) <= len(tr) or len(co) < 3:
        raise InferenceError(
            f"Placebo inference needs more control units ({len(co)}) than treated units "
            f"({len(tr)}) and at least 3 controls."
        )
    Yc, Uc = Y[co], usable[co]
    if math.comb(len(co), len(tr)) <= n_placebo:
        picks = [np.array(c) for c in itertools.combinations(range(len(co)), len(tr))]
    else:
        picks = [rng.choice(len(co), size=len(tr), replace=False) for _ in range(n_placebo)]
    out = np.empty(len(picks))
    for k, pick in enumerate(picks):
        Wp = np.zeros_like(W[co])
        Wp[pick] = W[tr]
        out[k] = effect(Yc, Wp, Uc, co)
    return out


#: variance methods of the matrix estimators (MC-NNM, TROP); aliases as for the block ones;
#: "two_way" (bootstrap + period part) needs per-cell effects, which only TROP provides
METHODS = ("bootstrap", "placebo", "time_placebo", "two_way", "none")


def resolve_method(
    se: str | None, estimator: str, n_treated_units: int, methods: tuple[str, ...] = METHODS
) -> str:
    """The variance method to run: ``se`` (aliases resolved) or the default, bootstrap (placebo
    with one treated unit); a name not in ``methods`` raises InferenceError naming them."""
    if se is None:
        return "placebo" if n_treated_units == 1 else "bootstrap"
    method = ALIASES.get(se.lower(), se.lower())
    if method not in methods:
        choices = ", ".join(f"'{m}'" for m in (*methods, *ALIASES))
        raise InferenceError(f"{estimator} supports se={choices}; not {se!r}.")
    return method


@dataclass(frozen=True)
class TimePlacebo:
    """Result of ``time_placebo_effects``: the placebo estimates and their reference df."""

    draws: np.ndarray
    starts: np.ndarray
    window: int
    se: float
    df: float


def _pre_period_windows(W: np.ndarray, usable: np.ndarray) -> tuple[int, int, np.ndarray, int]:
    """(T_pre, T_post, window starts, L) of the time-placebo windows: the pre-period is the
    periods before the first treated usable cell, T_post runs from it to the last one."""
    periods = np.flatnonzero((W & usable).any(axis=0))
    if periods.size == 0:
        raise InferenceError("No treated usable cell: nothing to estimate.")
    t_pre = int(periods[0])
    t_post = int(periods[-1]) - t_pre + 1
    starts, L = time_placebo_windows(t_pre, t_post)
    return t_pre, t_post, starts, L


def _window_panel(
    Y: np.ndarray, W: np.ndarray, usable: np.ndarray, s: int, L: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The panel cut at the end of the window [s, s + L), its placebo treatment and usable
    masks, and how many treated units take the placebo: those observed untreated before the
    window (a unit with no earlier cell has no level to impute from)."""
    units = (W & usable).any(axis=1) & (usable[:, :s] & ~W[:, :s]).any(axis=1)
    Up = usable[:, : s + L]
    Wp = np.zeros_like(Up)
    Wp[units, s : s + L] = True
    Wp &= Up
    return Y[:, : s + L], Wp, Up, int(units.sum())


def time_placebo_effects(
    effect: EffectFn, Y: np.ndarray, W: np.ndarray, usable: np.ndarray
) -> TimePlacebo:
    """Estimates on placebo treatment windows moved over the pre-period, treated units fixed.

    The "Time-Placebo" variance of Almeida, Olaizola, Lestant, Imbens & Athey (arXiv
    2510.11841) for any assignment pattern: the pre-period is the periods before the first
    treated usable cell; the units ever treated take a placebo block of ``L = min(T_post,
    T_pre // 2)`` periods (T_post: first to last treated period) starting at each period that
    leaves 2 earlier periods (``inference.time_placebo_windows``, as for the block estimators),
    on the panel cut at the window's end (so every placebo-treated cell is really untreated). The estimand is zero, so SE^2 is the mean square
    of the placebo estimates. It holds the units fixed and varies the periods: it sees what a
    unit bootstrap cannot, the error that comes with the periods (period-specific shocks and
    factor values the fit does not absorb), and not the treated units' own sampling noise
    beyond what those periods show.

    Reference distribution, chosen before any coverage was measured: Student t with the
    windows' overlap df (``inference.time_placebo_df``); 7 windows of 6 periods carry about
    2 degrees of freedom.
    """
    t_pre, t_post, starts, L = _pre_period_windows(W, usable)
    if L < 1 or starts.size < 2:
        raise InferenceError(
            "Time-placebo variance needs at least two placebo windows in the pre-period, each "
            f"with 2 earlier periods; there are only {t_pre} pre-period(s). Use "
            "se='bootstrap' instead."
        )
    draws, used = [], []
    for s in starts:
        Yp, Wp, Up, _ = _window_panel(Y, W, usable, int(s), L)
        if Wp.any():  # a window without placebo cells is skipped
            draws.append(effect(Yp, Wp, Up, np.arange(Y.shape[0])))
            used.append(int(s))
    if len(used) < 2:
        raise InferenceError(
            "Time-placebo variance needs two placebo windows with a treated unit observed before "
            f"the window; {len(used)} of {starts.size} qualify. Use se='bootstrap' instead."
        )
    d, u = np.asarray(draws), np.asarray(used)
    df = time_placebo_df(t_pre, t_post) if u.size == starts.size else overlap_df(u, L)
    return TimePlacebo(d, u, L, float(np.sqrt(np.mean(d**2))), df)


#: (Y, W, usable, rows) -> (unit row of each treated cell, the cell's effect)
CellEffectFn = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
]


@dataclass(frozen=True)
class PeriodPart:
    """Result of ``period_component``: the variance of the error part the treated units share."""

    variance: float
    df: float
    per_window: np.ndarray  # each used window's estimate of it (may be negative)
    starts: np.ndarray  # the used windows' first periods


def period_component(
    cell_effect: CellEffectFn, Y: np.ndarray, W: np.ndarray, usable: np.ndarray
) -> PeriodPart:
    """Variance of the error component common to the treated units, from pre-period windows.

    An imputation estimator's error splits into a part the treated units share given the
    data of the periods and of the controls (the factor values of the post-period the fit
    does not absorb, the control noise every treated unit is imputed from) and the treated
    units' own parts. A unit bootstrap of the treated stratum, controls held, measures only the
    own parts; nothing that holds the periods sees the period-driven share. Here the treated
    units take placebo blocks on the windows of ``time_placebo_effects``; in window k their
    per-unit placebo effects e_ik (cell-weighted w_i) have mean e_k = shared part + own parts,
    whose variance s_k^2 sum w_i^2 is estimated from the spread of e_ik across units. The
    shared part's variance is the mean over windows of e_k^2 - s_k^2 sum w_i^2 (floored at 0),
    with the used windows' overlap df (``inference.overlap_df``). A window uses the treated
    units with an untreated usable cell before it (a unit with none has no level to impute
    from) and is skipped with fewer than 2 of them; at least 2 windows must remain.
    """
    _, _, starts, L = _pre_period_windows(W, usable)
    if (W & usable).any(axis=1).sum() < 2:
        raise InferenceError("The period part needs at least 2 treated units.")
    est, used = [], []
    for s0 in starts:
        Yp, Wp, Up, n_units = _window_panel(Y, W, usable, int(s0), L)
        if L < 1 or n_units < 2:
            continue
        rows, eff = cell_effect(Yp, Wp, Up, np.arange(Y.shape[0]))
        ids, inv, n = np.unique(rows, return_inverse=True, return_counts=True)
        if ids.size < 2:
            continue
        e = np.bincount(inv, eff) / n
        w = n / n.sum()
        ebar = float(w @ e)
        sw2 = float(w @ w)
        s2 = float(w @ (e - ebar) ** 2) / (1.0 - sw2)
        est.append(ebar**2 - s2 * sw2)
        used.append(int(s0))
    if len(used) < 2:
        raise InferenceError(
            "The period part needs two placebo windows in the pre-period, each with 2 treated "
            f"units observed before it; {len(used)} of {starts.size} qualify. Use se='bootstrap'."
        )
    u = np.asarray(used)
    return PeriodPart(max(0.0, float(np.mean(est))), overlap_df(u, L), np.asarray(est), u)


def resampled_se(
    method: str,
    effect: EffectFn,
    Y: np.ndarray,
    W: np.ndarray,
    usable: np.ndarray,
    *,
    n_boot: int,
    n_placebo: int,
    rng: np.random.Generator,
    cell_effect: CellEffectFn | None = None,
) -> tuple[float, float | None, dict[str, float]]:
    """(se, df, details) for ``method`` in bootstrap / placebo / time_placebo / two_way / none.

    ``two_way``: the treated stratum's bootstrap variance (the units' own parts) plus
    ``period_component``'s (the part they share: periods and controls, which resampling the
    treated units holds fixed), Student t with the Welch-Satterthwaite df of the two parts
    (n_treated - 1 and the windows' overlap df); needs ``cell_effect``.

    Every method reports df (Student t intervals): the bootstrap Welch-Satterthwaite df, the
    placebo ``N0 - 1`` (``inference.placebo_df``, N0 the never-treated units), the time placebo
    its windows' overlap df.
    """
    if method == "two_way":
        if cell_effect is None:
            raise InferenceError("se='two_way' is available for TROP only.")
        b = stratified_unit_bootstrap(effect, Y, W, usable, n_boot=n_boot, rng=rng)
        p = period_component(cell_effect, Y, W, usable)
        # the treated units' own parts (the bootstrap's treated stratum) and the shared part,
        # which already holds the control noise: the bootstrap's control part would count it
        # twice, so it is reported but not added
        n_t = int((W & usable).any(axis=1).sum())
        v = b.var_treated + p.variance
        denom = b.var_treated**2 / (n_t - 1) + p.variance**2 / p.df
        df = v**2 / denom if denom > 0 else math.inf
        return (
            float(np.sqrt(v)),
            float(df),
            {
                "n_draws": int(b.draws.size),
                "var_treated": b.var_treated,
                "var_control": b.var_control,
                "var_period": p.variance,
                "period_windows": int(p.starts.size),
            },
        )
    if method == "bootstrap":
        b = stratified_unit_bootstrap(effect, Y, W, usable, n_boot=n_boot, rng=rng)
        return (
            b.se,
            b.df,
            {
                "n_draws": int(b.draws.size),
                "var_treated": b.var_treated,
                "var_control": b.var_control,
            },
        )
    if method == "placebo":
        draws = placebo_effects(effect, Y, W, usable, n_placebo=n_placebo, rng=rng)
        se = float(np.std(draws, ddof=1)) if draws.size > 1 else float("nan")
        n_co = int((~(W & usable).any(axis=1)).sum())
        return se, placebo_df(n_co), {"n_draws": int(draws.size)}
    if method == "time_placebo":
        tp = time_placebo_effects(effect, Y, W, usable)
        return tp.se, tp.df, {"n_draws": int(tp.draws.size), "placebo_window": tp.window}
    return float("nan"), None, {"n_draws": 0}
