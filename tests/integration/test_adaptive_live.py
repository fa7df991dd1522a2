"""An adaptive price ladder live through real workers (issue #57): a controller and an analysis
worker process on the embedded broker and Redis, the demo's adaptive ladder
(``streams.live.demo``, ``pricelab demo --ladder --adaptive``) driven in lock-step, and the
controller killed with SIGKILL while a period's sales are in flight.

What it shows: the analysis worker's looks reach the controller (after the warmup the
recorded probabilities are the rule's on a look the worker stored, recomputed here with
``controller.adaptive.next_probabilities``); a librdkafka reader of the assignments topic sees
each period's probabilities on every message; the estimates topic carries the adaptive
estimates and none of the fixed-allocation ones; and the kill -9 loses no sale and re-records
nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from controller.adaptive import adaptive_step, next_probabilities
from controller.adaptive_draw import MIN_LOOK_PERIODS
from controller.store import Store, make_redis
from core.ports import AdaptiveLook
from streams.cli import app
from streams.client.panel import read_panel
from streams.live.adaptive_demo import ADAPTIVE_ESTIMATOR
from streams.live.demo import DemoConfig, demo_market, demo_spec
from streams.live.driver import DriverConfig, LiveDriver, LiveRun, lockstep_settings
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

DAYS = 8
PRODUCTS = 40
#: the period whose sales are in flight when the controller is killed
KILLED_AT = 5


def _read(settings: Any, topic: str, until: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The topic from its beginning, read by a librdkafka consumer (confluent-kafka, as a
    pricing system's own client) assigned every partition (no group to join), until
    ``until(messages)`` holds."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"{settings.app_id}-{topic}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)]
    )
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                value = msg.value()
                if msg.error() is None and value is not None:
                    out.append(json.loads(value))
    finally:
        consumer.close()
    return out


async def test_an_adaptive_ladder_runs_live_through_both_workers_and_a_kill9(
    stack: Any, tmp_path: Path
) -> None:
    settings = lockstep_settings(make_settings(stack))
    await ensure_topics(settings)
    cfg = DemoConfig(products=PRODUCTS, days=DAYS, seed=5, ladder=True, adaptive=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    assert spec.adaptive is not None
    run = LiveRun(spec, market, sales_seed=cfg.seed + 1)
    workers: list[WorkerProcess] = []
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    looks: dict[int, AdaptiveLook] = {}  # the look stored once period d's look is read
    before_kill: dict[int, tuple[float, ...]] = {}
    killed: list[int | None] = []
    try:
        # launched inside the try: a launch that fails still has the one before it stopped
        controller = WorkerProcess(settings, ("controller",)).launch()
        workers.append(controller)
        analysis = WorkerProcess(settings, ("analysis",)).launch()
        workers.append(analysis)
        controller.wait_healthy()
        analysis.wait_healthy()
        async with LiveDriver(settings, store, [controller], analysis, DriverConfig()) as driver:
            send = driver._send_day

            async def send_then_kill(runs: Any, d: int, *args: Any) -> None:
                await send(runs, d, *args)
                if d != KILLED_AT:
                    return
                # the period's sales are on the topic, not all counted: kill -9 the controller
                before_kill.update(await store.allocations(spec.id))
                old = driver.controller[0]
                assert isinstance(old, WorkerProcess)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, old.kill9)
                killed.append(None if old.proc is None else old.proc.returncode)
                new = WorkerProcess(settings, ("controller",))
                workers.append(new)
                await loop.run_in_executor(None, new.start)
                driver.controller = [new]

            driver._send_day = send_then_kill  # type: ignore[method-assign,assignment]

            async def keep_look(d: int) -> None:
                look = await store.adaptive_look(spec.id)
                if look is not None:
                    looks[d] = look

            await driver.create([run])
            await driver.run([run], after_look=keep_look)
        recorded = await store.allocations(spec.id)
        totals = await store.totals(spec.id)
        exported = await read_panel(settings, spec.id)  # `pricelab panel export`'s table
    finally:
        await redis.aclose()
        for w in workers:
            w.stop()

    # the kill -9 happened mid-run; no sale was lost or counted twice
    assert killed == [-9]
    counted = sum(v for k, v in totals.items() if k.startswith("units:"))
    assert counted == run.units_sent > 0

    # every period recorded once; those recorded before the kill never changed
    assert sorted(recorded) == list(range(DAYS))
    assert len(before_kill) >= KILLED_AT
    assert {t: recorded[t] for t in before_kill} == before_kill
    alloc = tuple(spec.allocations())
    a = spec.adaptive
    for t in range(a.warmup):
        assert recorded[t] == pytest.approx(alloc)

    # the worker's looks reached the controller: the look read after period d's look (its
    # periods 0..d-1) steers period d + 1, by the rule on its numbers; the first period after
    # the warmup has no look of enough periods yet and holds the allocations (the look of
    # periods 0..t-1 is left only once period t was drawn: it never races the flip of t)
    assert all(look.periods == d and look.metric == spec.adaptive_metric()
               for d, look in looks.items())  # fmt: skip
    assert recorded[a.warmup] == pytest.approx(alloc)
    for t in range(a.warmup + 1, DAYS):
        look = looks[t - 1]
        assert look.periods >= MIN_LOOK_PERIODS
        rule = next_probabilities(
            a, look.means, cov=np.asarray(look.cov), step=adaptive_step(a, t), seed=spec.seed
        )
        assert recorded[t] == pytest.approx(tuple(rule), abs=1e-12), (t, recorded)
    assert any(
        max(abs(x - y) for x, y in zip(recorded[t], alloc, strict=True)) > 0.05
        for t in range(a.warmup, DAYS)
    ), recorded

    # a pricing system's librdkafka reader sees each period's probabilities, by arm name, on
    # every message (a redone flip's too): the recorded ones
    names = [arm.name for arm in spec.arm_list()]

    def all_periods(msgs: list[dict[str, Any]]) -> bool:
        return {(m["period"], m["product"]) for m in msgs} >= {
            (t, p) for t in range(DAYS) for p in spec.products
        }

    msgs = _read(settings, settings.topics.assignments, all_periods)
    assert all_periods(msgs)
    for m in msgs:
        probs = m["probabilities"]
        assert list(probs) == names
        assert tuple(probs[n] for n in names) == pytest.approx(recorded[m["period"]], abs=1e-12)

    # the estimates topic: the adaptive estimates and look, none of the fixed-allocation ones
    def final(msgs: list[dict[str, Any]]) -> bool:
        return any(m.get("kind") == "adaptive" and m.get("n_periods") == DAYS for m in msgs)

    docs = [
        d for d in _read(settings, settings.topics.estimates, final) if d["experiment"] == spec.id
    ]
    estimates = [d for d in docs if d.get("kind") not in ("verdict", "demand", "adaptive")]
    assert estimates and {d["estimator"] for d in estimates} == {ADAPTIVE_ESTIMATOR}
    assert not [d for d in docs if d.get("kind") == "demand"]
    last = [d for d in docs if d.get("kind") == "adaptive" and d["n_periods"] == DAYS][-1]
    assert [p["period"] for p in last["allocation"]] == list(range(DAYS))
    assert [tuple(p["probabilities"]) for p in last["allocation"]] == [
        pytest.approx(recorded[t], abs=1e-12) for t in range(DAYS)
    ]
    assert {d["arm"] for d in estimates if d["n_periods"] == DAYS} == set(names[1:])

    # the live panel export carries the recorded probabilities, and `pricelab analyze` on it
    # gives the final look's published estimates (the worker's fit, offline)
    cols = [f"probability_{n}" for n in names]
    by_period = exported.groupby("period")[cols].first()
    assert [tuple(by_period.loc[t]) for t in range(DAYS)] == [
        pytest.approx(recorded[t], abs=1e-12) for t in range(DAYS)
    ]
    panel_path = tmp_path / "export.csv"
    exported.to_csv(panel_path, index=False)
    res = CliRunner().invoke(
        app,
        ["analyze", str(panel_path), "--unit", "product", "--time", "period", "--arm", "arm",
         "--control", names[0], "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    offline = [json.loads(line) for line in res.stdout.splitlines()]
    finals = {(d["metric"], d["arm"]): d for d in estimates if d["n_periods"] == DAYS}
    rows = [r for r in offline if r.get("kind") != "adaptive"]
    assert {(r["metric"], r["arm"]) for r in rows} == set(finals)
    for r in rows:
        live = finals[(r["metric"], r["arm"])]
        assert r["effect"] == pytest.approx(live["effect"], rel=1e-9, abs=1e-9)
        assert (r["cs_low"], r["cs_high"]) == pytest.approx(
            (live["cs_low"], live["cs_high"]), rel=1e-9, abs=1e-9
        )
