"""The order in which ``./run test`` hands the test files to its processes.

``./run test`` runs the files on three processes (pytest-xdist ``--dist loadfile``: a file's
tests, and its module-scoped stack, stay on one) and keeps the order given here
(``--no-loadscope-reorder``; xdist's own order is by number of tests, which put the files of
one or two long tests, a soak or a simulation, last, where the suite waited on them alone).
The files measured longest go first, longest first, so that the short ones fill the
processes' ends; every other file keeps pytest's order (integration, then unit).
"""

from __future__ import annotations

import pytest

#: the longest files, longest first: their sums of durations in one run of the suite
#: (2026-11-27, three processes at load 12-20; the order is what matters, not the figures)
LONGEST_FIRST = (
    "tests/unit/lab/test_plan_arms.py",  # 440 s: the planner's 400 simulations, then 800 more
    "tests/unit/lab/test_plan_arms_aa.py",  # 216 s: 400 A/A ladders and 4 plans
    "tests/integration/test_simulate_live_continues.py",  # 303 s
    "tests/integration/test_live_inference.py",  # 299 s
    "tests/integration/test_faults_controllers.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_faults_redis.py",
    "tests/integration/test_faults_broker.py",  # 596 s, the four files together
    "tests/unit/analysis/test_arms_cuped_coverage.py",  # 142 s of test_arms.py's 259
    "tests/unit/analysis/test_arms.py",
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
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # a stable sort: each file's tests stay together and in their own order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
