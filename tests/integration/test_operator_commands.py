"""The operator commands against real services: ``pricelab topics``, ``pricelab estimates``
(with ``--follow``), and ``pricelab panel export`` followed by ``pricelab analyze``.

The estimates come from a real analysis worker (a live run on the embedded stack); what the
commands print is compared with what an independent reader of the topic saw
(``streams.live.driver.LiveDriver``), and the exported panel, analysed offline, must give the
estimate the worker published from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.worker.kafka import JsonPublisher, ensure_topics
from streams.worker.schemas import EstimateMessage
from tests.integration.conftest import cli_env, make_settings, pricelab, wait_until
from tests.integration.live import drive, live_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_topics_creates_every_topic_once(stack) -> None:
    settings = make_settings(stack)  # its topics do not exist yet
    names = sorted(settings.topics.all())
    first = pricelab(settings, "topics")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert sorted(line.split()[1] for line in lines) == names
    assert all(line.startswith("created") for line in lines), first.stdout
    assert all(f"({settings.kafka.partitions} partitions;" in line for line in lines), lines
    compacted = [ln for ln in lines if "cleanup.policy=compact" in ln]
    assert [ln.split()[1] for ln in compacted] == [settings.topics.assignments]
    again = pricelab(settings, "topics")
    assert again.returncode == 0, again.stderr
    assert all(line.startswith("exists") for line in again.stdout.splitlines()), again.stdout
    assert again.stderr == ""

    async def described() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            meta = await admin.describe_topics(names)
            return {m["topic"]: len(m["partitions"]) for m in meta}
        finally:
            await admin.close()

    assert asyncio.run(described()) == {n: settings.kafka.partitions for n in names}

    # asking for more partitions than the topics have: said, not silently claimed
    more = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": 8})}
    )
    shown = pricelab(more, "topics")
    assert shown.returncode == 0, shown.stderr
    assert all(
        f"({settings.kafka.partitions} partitions;" in ln for ln in shown.stdout.splitlines()
    )
    assert "fewer partitions than PRICELAB_KAFKA__PARTITIONS=8" in shown.stderr


async def test_estimates_and_panel_export_show_what_the_worker_analysed(stack, tmp_path) -> None:
    settings = make_settings(stack)
    run = live_run("random-days", 16, 5, 4, "op")
    await drive(settings, [run])
    assert run.estimates, "the analysis worker published nothing"
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in run.estimates:  # as the driver read them from the topic, in order
        latest[(e["metric"], e["estimator"])] = {
            k: v for k, v in e.items() if not k.startswith("_")
        }
    # every metric (the spec gives the market's unit costs), each by the design's estimators
    assert {m for m, _ in latest} == {"units", "revenue", "profit", "price", "elasticity"}

    every = ("--all-estimators", "--idle", "1")
    shown = pricelab(settings, "estimates", run.id, "--json", *every)
    assert shown.returncode == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {(r["metric"], r["estimator"]): r for r in rows} == latest

    table = pricelab(settings, "estimates", run.id, *every)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    for metric, name in latest:  # one row per metric and estimator
        assert sum(ln.split()[:2] == [metric, name] for ln in lines) == 1, (metric, name)
    # without --all-estimators: each metric's primary estimate (the first the worker
    # published at the last look, as the report's scorecard), the decision metric first
    primary_only = pricelab(settings, "estimates", run.id, "--json", "--idle", "1")
    assert primary_only.returncode == 0, primary_only.stderr
    docs = [json.loads(line) for line in primary_only.stdout.splitlines()]
    verdict_doc, *estimate_docs = docs
    assert verdict_doc["kind"] == "verdict"
    last = max(e["as_of"] for e in run.estimates)
    first_at_last: dict[str, str] = {}
    for e in run.estimates:
        said = e.get("identified") is False and e["metric"] != "elasticity"
        if e["as_of"] == last and e.get("segment") is None and not said:
            first_at_last.setdefault(e["metric"], e["estimator"])
    whole = [r for r in estimate_docs if not r.get("segment")]
    assert whole[0]["metric"] == verdict_doc["metric"]
    assert {r["metric"]: r["estimator"] for r in whole} == first_at_last
    assert len(whole) == len(first_at_last)  # one row a metric

    # the panel as the worker reads it, analysed offline, gives the worker's last estimate
    out = tmp_path / "panel.csv"
    exported = pricelab(settings, "panel", "export", run.id, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    dm = latest[("units", "dm")]
    command = exported.stdout.splitlines()[-1].split("pricelab ", 1)[1].split()
    assert command[:2] == ["analyze", str(out)]
    offline = pricelab(settings, *command, "--json")
    assert offline.returncode == 0, offline.stderr
    got = json.loads(offline.stdout)
    assert got["n_periods"] == dm["n_periods"]
    assert got["effect"] == pytest.approx(dm["effect"], rel=1e-9, abs=1e-12)
    assert got["se"] == pytest.approx(dm["se"], rel=1e-9, abs=1e-12)

    # the analyst report of the live experiment (what `pricelab demo --report` writes): its
    # scorecard is the worker's final look, a relative bar per metric
    from streams.client.report import live_report

    page = (await live_report(settings, run.id, tmp_path / "live")).read_text()
    final = max(e["as_of"] for e in run.estimates)
    primary = {}
    for e in run.estimates:
        if e["as_of"] == final and e.get("segment") is None:
            primary.setdefault(e["metric"], e)
    assert page.count("<svg") == 4, page[page.index("Scorecard") :][:2000]
    for metric in ("units", "revenue", "profit", "price"):
        assert f"<td>{metric}</td><td>{primary[metric]['effect']:+.3f}</td>" in page, metric
    assert "replayed" not in page
    # with nothing on its estimates topic (retention, a new topic) the report replays the
    # worker's estimators on the panel: it once crashed here (asyncio.run inside the loop)
    empty = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"estimates": f"{run.id}-none"})}
    )
    await ensure_topics(empty)
    replayed = (await live_report(empty, run.id, tmp_path / "replayed")).read_text()
    assert "Running estimates replayed with the analysis worker" in replayed
    assert replayed.count("<svg") == 4, replayed[replayed.index("Scorecard") :][:2000]
    for metric in ("units", "revenue", "profit", "price"):  # the same panel, the same estimators
        assert f"<td>{metric}</td><td>{primary[metric]['effect']:+.3f}</td>" in replayed, metric


def _estimate(effect: float, experiment: str = "fol") -> EstimateMessage:
    return EstimateMessage(
        experiment=experiment,
        estimator="dm",
        metric="units",
        effect=effect,
        se=0.5,
        ci_low=effect - 1,
        ci_high=effect + 1,
        n_units=16,
        n_periods=2,
        as_of=datetime(2026, 6, 2, tzinfo=UTC),
    )


async def test_estimates_returns_while_a_worker_keeps_publishing(settings) -> None:
    """A running analysis worker publishes every cycle, so the topic never falls quiet; the
    command must still return, with everything published before it started (the demo's report
    once waited for silence and hung)."""
    pub = JsonPublisher(settings)
    await pub.start()
    sent: list[float] = []
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        while not stop.is_set():
            effect = float(len(sent))
            await pub.send(settings.topics.estimates, _estimate(effect, "busy"), "busy")
            await pub.flush()
            sent.append(effect)
            with contextlib.suppress(TimeoutError):  # publish every 0.2 s, as a worker cycle
                await asyncio.wait_for(stop.wait(), 0.2)

    task = asyncio.create_task(keep_publishing())
    try:
        await wait_until(lambda: len(sent) >= 5, 30, "five estimates published")
        before = len(sent)
        shown = await asyncio.to_thread(
            pricelab, settings, "estimates", "busy", "--json", "--idle", "2", timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        [row] = [json.loads(line) for line in shown.stdout.splitlines()]
        assert row["effect"] >= before - 1  # the latest it saw is at least what was sent first
        assert len(sent) > before  # the worker was still publishing while the command ran
    finally:
        stop.set()
        await task
        await pub.stop()


async def test_estimates_follow_prints_new_estimates_until_interrupted(settings) -> None:
    pub = JsonPublisher(settings)
    await pub.start()

    lines: list[dict[str, Any]] = []
    proc: subprocess.Popen[str] | None = None
    try:
        await pub.send(settings.topics.estimates, _estimate(1.0), "fol")
        await pub.flush()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "estimates",
                "fol",
                "--follow",
                "--json",
                "--idle",
                "1",
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=cli_env(settings),
        )
        assert proc.stdout is not None
        reader = threading.Thread(
            target=lambda: lines.extend(json.loads(x) for x in proc.stdout),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        await wait_until(lambda: len(lines) == 1, 60, "the latest estimate")
        assert lines[0]["effect"] == 1.0
        await pub.send(settings.topics.estimates, _estimate(2.0), "fol")
        await pub.flush()
        await wait_until(lambda: len(lines) == 2, 60, "the new estimate")
        assert lines[1]["effect"] == 2.0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        reader.join(5)
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err, err
        assert len(lines) == 2  # nothing shown twice
    finally:
        await pub.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_that_cannot_reach_redis_names_the_setting_and_exits_2(stack) -> None:
    import socket

    from pydantic import SecretStr

    from controller.settings import RedisSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])  # closed again: nothing listens there
    settings = make_settings(
        stack,
        redis=RedisSettings(url=SecretStr(f"redis://127.0.0.1:{dead}/0")),
        start_timeout=timedelta(seconds=1),  # how long it asks before it gives up
    )
    for role in ("controller", "analysis"):
        r = pricelab(settings, "worker", "--role", role, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = (r.stdout + r.stderr).strip().splitlines()
        assert len(lines) == 1 and "PRICELAB_REDIS__URL" in lines[0], lines
        assert f"127.0.0.1:{dead}" in lines[0]


class _CountingConsumer:
    """A real aiokafka consumer whose ``getmany`` calls are counted (the reader's waits)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer, self.waits = consumer, 0

    async def getmany(self, *args: Any, **kwargs: Any) -> Any:
        self.waits += 1
        return await self.consumer.getmany(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


async def test_estimates_reader_waits_for_fetch_answers_not_for_its_own_timeouts(
    settings,
) -> None:
    """On a loaded machine the broker can take longer than ``--idle`` to answer a fetch; the
    reader once counted its own empty waits as the partition being quiet and returned without
    the latest estimates (the demo's report then showed an early look: CI, 2026-11-25). It
    must end a partition only after the broker has answered for ``idle`` seconds with
    nothing new; fetching is held back here by pausing the partitions on a real consumer."""
    from streams.client.estimates import _consumer, _read_until_caught_up
    from streams.errors import ServiceUnavailable

    pub = JsonPublisher(settings)
    await pub.start()
    try:
        for i in range(20):
            await pub.send(settings.topics.estimates, _estimate(float(i), "held"), "held")
        await pub.flush()
    finally:
        await pub.stop()

    consumer = await _consumer(settings)
    try:
        parts = consumer.assignment()
        consumer.pause(*parts)
        spy = _CountingConsumer(consumer)
        out: list[dict[str, Any]] = []
        reader = asyncio.create_task(_read_until_caught_up(spy, "held", 1.0, out, stall=60))
        # 0.5 s per empty wait: eight waits are four times the idle second
        await wait_until(lambda: spy.waits >= 8 or reader.done(), 60, "eight empty waits")
        assert not reader.done(), f"returned with {len(out)} of 20 while no fetch was answered"
        assert out == []  # the pause held: nothing was delivered
        consumer.resume(*parts)
        await asyncio.wait_for(reader, 60)
        assert sorted(d["effect"] for d in out) == [float(i) for i in range(20)]

        # a broker that answers no fetch for `stall` seconds is said to, in one sentence
        consumer.pause(*parts)
        await consumer.seek_to_beginning(*parts)
        spy.waits, again = 0, []
        with pytest.raises(ServiceUnavailable, match=r"answered no fetch of the estimates topic"):
            await asyncio.wait_for(
                _read_until_caught_up(spy, "held", 1.0, again, stall=2, broker="b:1"), 60
            )
        assert spy.waits >= 4 and again == []
    finally:
        await consumer.stop()


async def test_estimates_of_a_topic_that_does_not_exist_yet_are_none(settings) -> None:
    """No estimates topic yet (no worker has published): nothing, and one sentence from the
    command. The embedded broker answers fetches of a topic it has not created, so here this
    held before the reader checked the topic's partitions too; that check is for Apache Kafka
    with topic auto-creation off (docker-compose.yml), where no leader would ever answer and
    the stall rule would blame the broker after 30 s."""
    from streams.client.estimates import all_estimates

    missing = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"estimates": "never-created"})}
    )
    # the stall rule would raise after 30 s: well inside that, it returns an empty list
    assert await asyncio.wait_for(all_estimates(missing, "x", idle=1.0), 20) == []
    # nothing on the topic of an id no experiment has: that id is refused (issue #54: it read
    # as "no estimate ... yet", as if the experiment existed)
    shown = await asyncio.to_thread(pricelab, missing, "estimates", "x", "--idle", "1")
    assert shown.returncode == 2 and "there is no experiment 'x'" in shown.stderr
    assert "Traceback" not in shown.stderr
    # of an experiment that exists: no estimate yet, exit 1
    from controller.spec import load_spec
    from controller.store import Store, make_redis

    start = datetime(2031, 1, 5, tzinfo=UTC)
    spec = load_spec(
        {"id": "x", "products": ["x1", "x2"], "treatment_policy": "a", "control_policy": "b",
         "start": start.isoformat(), "end": (start + timedelta(days=4)).isoformat()}
    )  # fmt: skip
    redis = make_redis(settings)
    try:
        await Store(redis, settings.key_prefix).create_experiment(spec, start)
    finally:
        await redis.aclose()
    shown = await asyncio.to_thread(pricelab, missing, "estimates", "x", "--idle", "1")
    assert shown.returncode == 1 and "no estimate of x on never-created yet" in shown.stderr
    assert "Traceback" not in shown.stderr
