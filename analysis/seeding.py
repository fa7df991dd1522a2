"""The seed of every random draw in ``analysis/``: estimators, variance methods, spillover.

``seed`` seeds every draw an estimator or a variance method makes (placebo and bootstrap
replications, cross-validation folds), so the same seed gives the same result; ``None`` means
``DEFAULT_SEED``. It sits below both the estimators and :mod:`analysis.inference`, which
each draw through it, so that neither imports the other's modules for it.
"""

from __future__ import annotations

import numpy as np

#: the seed of an estimator given ``seed=None`` (the analysis worker also defaults to 0)
DEFAULT_SEED = 0
#: the fixed seed of the multivariate normal/t cdf's quasi-Monte-Carlo integration (the
#: simultaneous intervals' and MCB's critical values): the same panel gives the same value
CDF_SEED = 20261126


def seeded_rng(seed: int | None) -> np.random.Generator:
    """The generator of an estimator's random draws: ``seed``, or ``DEFAULT_SEED`` if None."""
    return np.random.default_rng(DEFAULT_SEED if seed is None else seed)
