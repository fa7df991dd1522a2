"""The factor-model panels of the core estimator tests: the generator lives in the package
(:func:`analysis.pricing_dgp.factor_panel`), where studies and benchmarks import it too."""

from analysis.pricing_dgp import factor_panel

__all__ = ["factor_panel"]
