"""The whole suite's hooks: the order in which ``./run test`` hands the test files to its
processes, and the hypothesis profiles.

``./run test`` runs the files on five processes (pytest-xdist ``--dist loadfile``: a file's
tests, and its module-scoped stack, stay on one) and keeps the order given here
(``--no-loadscope-reorder``; xdist's own order is by number of tests, which put the files of
one or two long tests, a soak or a simulation, last, where the suite waited on them alone).
The files measured longest go first, longest first, so that the short ones fill the
processes' ends; every other file keeps pytest's order (integration, then unit).

``--hypothesis-profile long`` selects the long form of the model-based contract test
(tests/integration/test_contract_stateful.py; docs/operations.md, "The contract under
every interleaving"): many examples of many steps each, meant to run for an hour or more;
pytest-timeout's per-test limit is lifted for the tests that read the profile. Without
the option nothing changes: hypothesis's own default profile.
"""

from __future__ import annotations

import sys

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


#: the longest files, longest first: their sums of durations in one run of the suite
#: (2026-11-27, three processes at load 12-20; the order is what matters, not the figures).
#: The unit suite's statistical studies that led it are in the slow suite since 2026-11-28
LONGEST_FIRST = (
    "tests/integration/test_simulate_live_continues.py",  # 303 s
    "tests/integration/test_live_inference.py",  # 299 s
    "tests/integration/test_faults_controllers.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_faults_redis.py",
    "tests/integration/test_faults_broker.py",  # 596 s, the four files together
    "tests/integration/test_outside_clients.py",  # 247 s
    "tests/integration/test_second_terminal.py",  # 240 s
    "tests/integration/test_operator_commands.py",  # 194 s
    "tests/integration/test_tls.py",  # 192 s
    "tests/integration/test_controller_worker.py",  # 184 s
    "tests/integration/test_sharded_analysis.py",  # 181 s
    "tests/unit/analysis/report/test_report_page.py",  # 178 s
    "tests/integration/test_demo_ladder.py",  # 174 s
    "tests/integration/test_report_chromium.py",  # 174 s
    "tests/integration/test_live_subdaily.py",  # 170 s
    "tests/unit/streams/cli/test_report.py",  # 169 s
    "tests/integration/test_history_order.py",  # 162 s
    "tests/integration/test_sales_as_retail_sends.py",  # 154 s
    "tests/integration/test_console_browser.py",  # 148 s
    "tests/integration/test_simulate_live_ladder.py",  # 138 s
    "tests/integration/test_cluster.py",  # 126 s
    "tests/integration/test_adaptive_live.py",  # 53-56 s alone (quiet)
    "tests/integration/test_adaptive_flip.py",  # 49-51 s alone (quiet)
    "tests/integration/test_contract_stateful.py",  # 61-85 s, its workers' start included
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # a stable sort: each file's tests stay together and in their own order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
    if not long_profile(config):
        return
    for item in items:
        if item.get_closest_marker(LONG_FORM) is not None:
            item.add_marker(pytest.mark.timeout(0))  # bounded by the examples, not by 300 s


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The workers' own log files (``WorkerProcess.made_logs``, in the temporary directory)
    go when the session passes; a failed session keeps them for its diagnosis."""
    launcher = sys.modules.get("streams.live.launcher")
    if launcher is None or exitstatus != 0:
        return
    for log in launcher.WorkerProcess.made_logs:
        log.unlink(missing_ok=True)
    launcher.WorkerProcess.made_logs.clear()
