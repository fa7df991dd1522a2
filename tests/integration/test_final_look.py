"""An ended experiment leaves the analysis cycle once its final look is out (issue #56, item
5; core.final_look), on the real broker and redis-server with a real analysis worker process.

Two experiments of hourly periods: one ends after four, one runs on. While the ended one's
last period still takes late sales (its end + the allowed lateness of one hour), the worker
looks at it every cycle. Once that has passed, the worker compacts its periods, publishes
one more look (its final look, with its verdict), marks it in Redis, and looks at it no
more: the running one's later looks reach the topic and the ended one's do not, the
worker's gauges of the experiments it looks at and keeps fall to one, and a restarted
worker does not look at it again. A reader of the topic still finds its final look.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.spec import load_spec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from core import status
from core.final_look import FINAL_LOOK
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings, pricelab, read_topic, wait_until
from tests.integration.test_chunked_analysis import START, _period

pytestmark = pytest.mark.integration


@pytest.fixture
async def stage(stack: Any) -> AsyncIterator[tuple[Any, Store, SharedSimulatedClock]]:
    settings = make_settings(stack, analysis_interval=0.3, allowed_lateness=timedelta(hours=1))
    await ensure_topics(settings)
    redis = make_redis(settings)
    try:
        yield (
            settings,
            Store(redis, settings.key_prefix),
            SharedSimulatedClock(redis, clock_key(settings.key_prefix)),
        )
    finally:
        await redis.aclose()


def _spec(exp_id: str) -> Any:
    """Random days over hourly periods, its own 20 products, a guardrail (so each look has a
    verdict)."""
    products = [f"{exp_id}-{i:02d}" for i in range(20)]
    return load_spec(
        {
            "id": exp_id,
            "design": "random-days",
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(hours=14)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
            "guardrails": [{"metric": "units", "max_drop_pct": 30}],
        }
    )


def _at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def _looks(messages: list[dict[str, Any]], exp: str) -> dict[str, int]:
    """The experiment's messages on the topic, counted by the clock time of their look."""
    out: dict[str, int] = {}
    for m in messages:
        if m.get("experiment") == exp:
            out[m["as_of"]] = out.get(m["as_of"], 0) + 1
    return out


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _until_look(settings: Any, exp: str, at: datetime) -> list[dict[str, Any]]:
    """The estimates topic, read until ``exp``'s look as of ``at`` is on it."""

    def seen(out: list[dict[str, Any]]) -> bool:
        return any(_same_time(k, at) for k in _looks(out, exp))

    out = await read_topic(
        settings, settings.topics.estimates, expect=10**9, timeout=90, until=seen
    )
    assert seen(out), f"no look of {exp} as of {at} on the topic"
    return out


def _same_time(text: str, at: datetime) -> bool:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) == at


async def test_an_ended_experiment_is_looked_at_until_its_final_look_then_never(
    stage: tuple[Any, Store, SharedSimulatedClock],
) -> None:
    settings, store, clock = stage
    ends, runs = _spec("ends"), _spec("runs")
    for spec in (ends, runs):
        await store.create_experiment(spec, START)
        for k in range(4):
            await _period(store, spec, k)
    await store.set_status(ends.id, status.ENDED)  # as the flip tick ends it after period 3
    await clock.set(_at(4.1))
    w = WorkerProcess(settings, roles=("analysis",)).start()
    try:

        def gauge(name: str) -> float:
            return metric_value(w.metrics(), name)

        # within its lateness: looked at every cycle, like the running one
        await wait_until(
            lambda: gauge("pricelab_analysis_cycles_total") >= 2, 90, "two analysis cycles"
        )
        assert gauge("pricelab_analysis_last_cycle_experiments") == 2
        await _until_look(settings, ends.id, _at(4.1))
        # its last period's sales window closes (4 h + 1 h): compacted, then its final look
        await clock.set(_at(5.2))
        cs = f"{store.exp(ends.id)}:cs"

        async def marked() -> bool:
            return await store.redis.hget(cs, FINAL_LOOK) is not None

        await wait_until(marked, 60, "the ended experiment's final look to be marked")
        final_at = datetime.fromtimestamp(
            float(await store.redis.hget(cs, FINAL_LOOK)) / 1000, START.tzinfo
        )
        assert final_at == _at(5.2)
        assert (await store.get_experiment(ends.id)).compacted == 4
        # later cycles look at the running experiment alone, and keep nothing of the other
        await wait_until(
            lambda: gauge("pricelab_analysis_experiments_held") == 1,
            30,
            "the worker to let go of the ended experiment",
        )
        assert gauge("pricelab_analysis_last_cycle_experiments") == 1
        await clock.set(_at(5.3))
        out = await _until_look(settings, runs.id, _at(5.3))
        looks = _looks(out, ends.id)
        assert max(looks, key=lambda k: datetime.fromisoformat(k.replace("Z", "+00:00"))) in (
            _iso(final_at),
            final_at.isoformat(),
        )

        # whole looks, each with its verdict: at 5.2 h the look that compacted the last
        # period and the final look (the same cells), as many messages each as one before
        def verdicts(at: datetime) -> int:
            return sum(
                1
                for m in out
                if m.get("experiment") == ends.id
                and m.get("kind") == "verdict"
                and _same_time(m["as_of"], at)
            )

        def messages(at: datetime) -> int:
            return sum(n for k, n in looks.items() if _same_time(k, at))

        assert verdicts(final_at) == 2
        assert messages(final_at) * verdicts(_at(4.1)) == 2 * messages(_at(4.1))
    finally:
        w.stop()
    # a restarted worker does not look at it again
    w = WorkerProcess(settings, roles=("analysis",)).start()
    try:
        await clock.set(_at(5.4))
        out = await _until_look(settings, runs.id, _at(5.4))
        assert not [k for k in _looks(out, ends.id) if _same_time(k, _at(5.4))]
        # its cycle's gauges are set once its looks are out: waited for, not raced

        def one_each() -> bool:
            m = w.metrics()
            return (
                metric_value(m, "pricelab_analysis_last_cycle_experiments") == 1
                and metric_value(m, "pricelab_analysis_experiments_held") == 1
            )

        await wait_until(one_each, 30, "the restarted worker to look at and keep one experiment")
    finally:
        w.stop()
    # a reader still finds its final look: the CLI's latest verdict and estimates
    shown = await asyncio.to_thread(pricelab, settings, "estimates", ends.id)
    assert shown.returncode == 0, shown.stderr
    assert final_at.isoformat()[:16] in shown.stdout or _iso(final_at)[:16] in shown.stdout
