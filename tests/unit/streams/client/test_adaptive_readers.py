"""The readers of an adaptive ladder's messages (issue #57): ``pricelab estimates`` (the
client's renderers), the console's view and template, and the HTML report show its arms and
the allocation over time from the published messages alone, and the readers of estimates
keep the look message out of their rows. The messages are the worker's on a seeded ladder,
as the Kafka sink writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report
from controller.settings import Settings
from streams.client.adaptive import adaptive_view
from streams.client.estimates import (
    is_adaptive,
    latest_adaptive,
    latest_of,
    primary_estimators,
    render_adaptive,
)
from streams.client.results import results_view
from streams.client.series import running_estimates
from streams.console.app import _templates
from streams.worker.sinks import KafkaEstimateSink
from tests.unit.analysis.test_worker_adaptive import DAYS, _cells, _ladder, _look

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class Capture:
    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send(self, topic: str, msg: object, key: str) -> None:
        self.sent.append(msg)

    async def flush(self) -> None:
        pass


@cache
def _wire() -> tuple[list[dict[str, Any]], np.ndarray]:
    """The ladder's messages of one look, as JSON dicts, and the recorded probabilities."""
    import asyncio

    got = asyncio.run(_look())
    capture = Capture()
    sink = KafkaEstimateSink(capture, Settings())  # type: ignore[arg-type]

    async def publish() -> None:
        for result, cs in got.estimates:
            await sink.publish("e1", result, AS_OF, cs)
        await sink.publish_adaptive("e1", got.adaptive[0], AS_OF)
        await sink.publish_verdict("e1", got.verdicts[0], AS_OF)

    asyncio.run(publish())
    docs = [json.loads(m.model_dump_json()) for m in capture.sent]  # type: ignore[attr-defined]
    return docs, _ladder()[1].probabilities


def test_the_estimate_readers_keep_the_look_message_out_of_their_rows() -> None:
    docs, _ = _wire()
    assert sum(is_adaptive(d) for d in docs) == 1
    rows = latest_of(docs)
    assert {k[1] for k in rows} == {"aipw_adaptive"}
    assert len(rows) == 3  # profit, one per non-control arm
    assert set(primary_estimators(docs).values()) == {"aipw_adaptive"}
    assert {s["arm"] for s in running_estimates(docs)} == {"r1", "r2", "r3"}
    assert len(results_view(docs, lead="profit")["scorecard"]) == 3


def test_pricelab_estimates_prints_the_arms_and_the_allocation_over_time() -> None:
    docs, probs = _wire()
    doc = latest_adaptive(docs)
    assert doc is not None
    text = render_adaptive(doc)
    lines = text.splitlines()
    assert lines[0].startswith("ADAPTIVE LADDER") and "profit" in lines[0]
    for a in doc["arms"]:
        (line,) = [x for x in lines if x.strip().startswith(a["arm"] + " ")]
        assert f"{a['mean']:.4g}" in line
        assert ("in the best set" in line) == a["in_best_set"]
    rows = [x for x in lines if x.strip().split(":")[0].strip().isdigit()]
    assert len(rows) == DAYS
    last = rows[-1].split(":")[1].split()
    assert last == [f"{p:.1%}" for p in probs[-1]]
    assert "not published" in lines[-1]


def test_the_console_shows_the_adaptive_look_and_its_allocation() -> None:
    docs, probs = _wire()
    view = adaptive_view(docs)
    assert view is not None
    assert view["allocation"]["names"] == ["r0", "r1", "r2", "r3"]
    got = np.array([p["probabilities"] for p in view["allocation"]["periods"]])
    assert np.array_equal(got, probs)
    page = _templates().get_template("adaptive.html").render(doc={"adaptive": view})
    assert 'id="allocation"' in page and page.count("<tr data-period=") == DAYS
    assert f"{probs[-1][0]:.1%}" in page
    assert "not published" in page
    assert adaptive_view([d for d in docs if not is_adaptive(d)]) is None
    assert _templates().get_template("adaptive.html").render(doc={"adaptive": None}).strip() == ""


def test_the_report_shows_the_allocation_over_time_and_no_fixed_share_ratio_check() -> None:
    docs, probs = _wire()
    spec, run = _ladder()
    cells = _cells(run, [a.name for a in spec.arm_list()]).assign(units=lambda d: d["profit"])
    est = pd.DataFrame(docs)
    page = build_report(
        cells,
        est,
        title="adaptive",
        design="random-days",
        allocations={a.name: a.allocation for a in spec.arm_list()},
    ).html
    assert "<h2>Adaptive allocation</h2>" in page
    assert f"after {DAYS} period(s)" in page and "(carryover lag 0)" in page
    assert page.count("<tr data-period=") == DAYS
    bars = page.count('data-probability="')
    assert bars == DAYS * len(probs[0])
    assert f'data-period="{DAYS - 1}" data-arm="r0" data-probability="{probs[-1][0]:.6g}"' in page
    # no recorded probabilities among these cells: the page says why, never the allocations
    assert "data-check='sample-ratio-recorded' data-flag='none'" in page
    assert "against the spec's allocations" not in page and "binomial test" not in page
    assert "No demand curve" not in page
    assert "not published" in page


@pytest.mark.parametrize("kind", ["verdict", "demand"])
def test_other_kinds_are_not_adaptive(kind: str) -> None:
    assert not is_adaptive({"kind": kind, "estimator": "x"})
