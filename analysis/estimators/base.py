"""The sklearn-shaped estimator contract.

``__init__`` only stores its arguments; ``fit(panel)`` computes and stores the result in
``result_`` (plus any learned state in trailing-underscore attributes) and returns ``self``.

Keyword convention (used by ``pricelab analyze`` and the analysis worker): every estimator's
``__init__`` accepts ``se: str | None = None`` and ``seed: int | None = None``.

- ``se`` names the variance method (``"placebo"``, ``"jackknife"``, ``"bootstrap"``,
  ``"time_placebo"``, ``"cluster"``, ``"none"``, or a method of the estimator's own such as
  ``"randomization"``); ``None`` means the estimator's documented default. An unknown name is a
  ``ValueError``; a method that is invalid for the data (jackknife with one treated unit,
  placebo with no more controls than treated units) raises ``analysis.errors.InferenceError``
  from ``fit`` with a sentence saying why and what to use instead.
- ``seed`` seeds every random draw the estimator makes (placebo/bootstrap replications,
  cross-validation folds), so the same seed gives the same result; ``None`` means
  ``DEFAULT_SEED`` (0, the analysis worker's default seed too), so the same input gives the same
  result on every run (``seeded_rng``; both live in :mod:`analysis.seeding`, below the
  estimators and :mod:`analysis.inference`). A point estimate should not depend on a draw at all
  where that is possible (TROP tunes on a fixed set of placebo units); MC-NNM's
  cross-validation folds and hpte's forests are drawn, so their estimates depend on the seed.

The chosen method is reported in ``result_.se_method``. Shared variance algorithms live in
:mod:`analysis.inference`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import DEFAULT_SEED, seeded_rng

#: the seed convention, named here too for estimators written outside pricelab
__all__ = ["DEFAULT_SEED", "PanelEstimator", "seeded_rng"]


class PanelEstimator(ABC):
    """Base class: subclasses implement ``_fit(panel) -> EstimateResult``."""

    #: short method id used by the CLI, the worker and published estimates ("did", "sdid", ...)
    name: ClassVar[str]

    result_: EstimateResult

    def fit(self, panel: Panel) -> Self:
        self.result_ = self._fit(panel)
        return self

    @abstractmethod
    def _fit(self, panel: Panel) -> EstimateResult: ...

    @property
    def result(self) -> EstimateResult:
        try:
            return self.result_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} is not fitted; call fit(panel) first."
            ) from None

    def get_params(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}
