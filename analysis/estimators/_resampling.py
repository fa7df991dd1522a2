"""Unit-level resampling shared by the matrix estimators (MC-NNM, TROP).

Kept private: ``analysis/inference.py`` holds the public placebo/jackknife/bootstrap tools for
block designs; these helpers work for any assignment pattern because they only resample rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.errors import InferenceError

#: tau(Y, W, usable) -> effect; rows are units
EffectFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def stratified_unit_bootstrap(
    effect: EffectFn,
    Y: np.ndarray,
    W: np.ndarray,
    usable: np.ndarray,
    *,
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Effects on ``n_boot`` panels that redraw treated and never-treated units separately.

    Resampling the two groups separately keeps their sizes fixed, so every replicate has
    treated cells and controls (Athey, Imbens, Qu & Viviano 2025 bootstrap the same way).
    Units that are treated at some time are one stratum; never-treated units the other.
    """
    ever = (W & usable).any(axis=1)
    tr, co = np.flatnonzero(ever), np.flatnonzero(~ever)
    if len(tr) < 2:
        raise InferenceError(
            "The unit bootstrap needs at least 2 treated units; with one treated unit use "
            "se='placebo'."
        )
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(tr, len(tr)), rng.choice(co, len(co)) if len(co) else co])
        out[b] = effect(Y[idx], W[idx], usable[idx])
    return out


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
    needs more control than treated units.
    """
    ever = (W & usable).any(axis=1)
    tr, co = np.flatnonzero(ever), np.flatnonzero(~ever)
    if len(co) <= len(tr) or len(co) < 3:
        raise InferenceError(
            f"Placebo inference needs more control units ({len(co)}) than treated units "
            f"({len(tr)}) and at least 3 controls."
        )
    Yc, Uc = Y[co], usable[co]
    out = np.empty(n_placebo)
    for k in range(n_placebo):
        pick = rng.choice(len(co), size=len(tr), replace=False)
        Wp = np.zeros_like(W[co])
        Wp[pick] = W[tr]
        out[k] = effect(Yc, Wp, Uc)
    return out
