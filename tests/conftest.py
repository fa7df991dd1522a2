"""Hypothesis profiles for the whole suite, registered before the hypothesis plugin loads one.

``--hypothesis-profile long`` selects the long form of the model-based contract test
(tests/integration/test_contract_stateful.py; docs/operations.md, "The contract under
every interleaving"): many examples of many steps each, meant to run for an hour or more;
pytest-timeout's per-test limit is lifted for the tests that read the profile. Without
the option nothing changes: hypothesis's own default profile.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "long",
    max_examples=100_000,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: the keyword of the tests whose length follows the profile
LONG_FORM = "long_form"


def long_profile(config: pytest.Config) -> bool:
    return bool(config.getoption("hypothesis_profile", default=None) == "long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not long_profile(config):
        return
    for item in items:
        if item.get_closest_marker(LONG_FORM) is not None:
            item.add_marker(pytest.mark.timeout(0))  # bounded by the examples, not by 300 s
