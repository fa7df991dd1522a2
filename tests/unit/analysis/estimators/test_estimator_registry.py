"""The estimator registry: a table of the built-in methods, and a door for estimators written
outside pricelab."""

from __future__ import annotations

import pytest

from analysis.estimators import registry
from analysis.estimators.base import PanelEstimator
from analysis.estimators.crossover import DifferenceInMeansEstimator


@pytest.mark.parametrize("method", registry.BUILTIN)
def test_every_built_in_method_makes_the_estimator_of_that_name(method: str) -> None:
    assert registry.make(method).name == method


def test_a_registered_estimator_is_made_and_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", {})

    class Mine(DifferenceInMeansEstimator):
        name = "mine"

    registry.register("mine", Mine)
    assert isinstance(registry.make("mine"), Mine)
    assert "mine" in registry.methods()
    assert set(registry.BUILTIN) < set(registry.methods())


def test_an_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="Unknown method 'nope'; known methods: crossover, "):
        registry.make("nope")
    assert registry.factory("nope") is None
    assert isinstance(registry.make("dm", cluster="unit"), PanelEstimator)
