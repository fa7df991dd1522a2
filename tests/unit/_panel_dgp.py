"""Seeded factor-model panels shared by the core estimator tests and docs/studies/panel_core_study.py.

Untreated outcomes: Y_it(0) = alpha_i + beta_t + sum_k L_ik F_tk + eps_it with rank-``rank``
factors (F a random walk, so trends differ across units), eps_it i.i.d. N(0, noise^2) or AR(1).
Treated: ``n_treated`` units from period ``T0`` on, effect ``tau`` added. With ``confounded`` the
treated units are those with the largest loading on the first factor, so parallel trends fail
and DID is biased while weighting estimators are not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.panel import Panel


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


def to_long(panel: Panel) -> pd.DataFrame:
    return panel.to_long()
