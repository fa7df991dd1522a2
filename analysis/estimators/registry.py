"""Method id -> estimator factory, used by `pricelab analyze` and the analysis worker.

The built-in methods are the table of :func:`factory`: one import per method, made when the
method is first asked for, so that a command imports only the estimators it runs and a broken
optional estimator breaks only its own methods. An estimator written outside pricelab is made
available with ``register("name", MyEstimator)`` when its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis.estimators.base import PanelEstimator

#: the built-in methods, each a row of :func:`factory`
BUILTIN = (
    "did",
    "sc",
    "difp",
    "sdid",
    "hpte",
    "mc",
    "trop",
    "ht",
    "hajek",
    "crossover",
    "dm",
    "fe",
    "staggered",
    "cuped",
)

_FACTORIES: dict[str, Callable[..., PanelEstimator]] = {}


def register(name: str, factory: Callable[..., PanelEstimator]) -> None:
    """Make ``factory`` the estimator of method ``name`` (it replaces a built-in one)."""
    _FACTORIES[name] = factory


def factory(name: str) -> Callable[..., PanelEstimator] | None:
    """The estimator of method ``name``, or None for an unknown name."""
    if name in _FACTORIES:
        return _FACTORIES[name]
    match name:
        case "did":
            from analysis.estimators.did import DIDEstimator

            return DIDEstimator
        case "sc":
            from analysis.estimators.synth import SyntheticControl

            return SyntheticControl
        case "difp":
            from analysis.estimators.synth import SyntheticControlIntercept

            return SyntheticControlIntercept
        case "sdid":
            from analysis.estimators.synth import SyntheticDID

            return SyntheticDID
        case "hpte":
            from analysis.estimators.hpte import HPTEEstimator

            return HPTEEstimator
        case "mc":
            from analysis.estimators.mcnnm import MCNNMEstimator

            return MCNNMEstimator
        case "trop":
            from analysis.estimators.trop import TROPEstimator

            return TROPEstimator
        case "ht":
            from analysis.estimators.switchback import SwitchbackHTEstimator

            return SwitchbackHTEstimator
        case "hajek":
            from analysis.estimators.switchback import SwitchbackHajekEstimator

            return SwitchbackHajekEstimator
        case "crossover":
            from analysis.estimators.crossover import CrossoverEstimator

            return CrossoverEstimator
        case "dm":
            from analysis.estimators.crossover import DifferenceInMeansEstimator

            return DifferenceInMeansEstimator
        case "fe":
            from analysis.estimators.crossover import WithinProductEstimator

            return WithinProductEstimator
        case "staggered":
            from analysis.estimators.staggered import StaggeredDIDEstimator

            return StaggeredDIDEstimator
        case "cuped":
            from analysis.estimators.cuped import RegressionAdjustedEstimator

            return RegressionAdjustedEstimator
    return None


def make(name: str, **params: Any) -> PanelEstimator:
    make_one = factory(name)
    if make_one is None:
        raise ValueError(f"Unknown method {name!r}; known methods: {', '.join(methods())}.")
    return make_one(**params)


def methods() -> list[str]:
    return sorted(set(_FACTORIES) | set(BUILTIN))
