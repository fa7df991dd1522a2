"""The second terminal: a shell that does not say which clock the stack runs on.

The stack runs in simulated time (a driver moves the clock in Redis); the controller worker
records at start which clock it runs on. A CLI process started without ``PRICELAB_CLOCK``
must read "now" on that clock, so ``pricelab panel export`` and ``pricelab report`` give the
same answers as in the shell that set it. An export with no completed period exits 2 and says
why; an explicit ``PRICELAB_CLOCK`` that contradicts the stack is one sentence, exit 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.periods import period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import JsonPublisher, ensure_topics
from streams.worker.schemas import Sale
from tests.integration.conftest import cli_env, command_ok, make_settings, run_pricelab, wait_until

pytestmark = pytest.mark.integration

PRODUCTS = [f"st{i:02d}" for i in range(6)]


def _spec(exp_id: str, products: list[str], start: str, end: str, zone: str) -> ExperimentSpec:
    return load_spec(
        {
            "id": exp_id,
            "design": "random-days",
            "products": products,
            "treatment_policy": "promo",
            "control_policy": "list",
            "start": start,
            "end": end,
            "timezone": zone,
            "seed": 3,
        }
    )


#: the experiment's calendar lies years after today's wall clock: on the wall clock none of
#: its periods has begun; on the stack's simulated clock two are complete
SPEC = _spec(
    "second",
    PRODUCTS,
    "2031-03-03T00:00:00+01:00",
    "2031-03-08T00:00:00+01:00",
    "Europe/Berlin",
)


async def _play(settings: Settings, periods: int) -> datetime:
    """Through a real controller worker on simulated time: create SPEC through the commands
    topic, then for each of ``periods`` periods move the clock to its start, wait for the
    flip, send each product's sales and wait until the controller has counted them. The
    clock is left 2 ms before the end of the last period played (that one is not complete);
    returns that instant."""
    await ensure_topics(settings)
    redis = make_redis(settings)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    store = Store(redis, settings.key_prefix)
    pub = JsonPublisher(settings, topics=[settings.topics.sales])
    await clock.set(SPEC.start - timedelta(hours=1))
    worker = WorkerProcess(settings.model_copy(update={"tick_interval": 0.1})).start()
    await pub.start()
    try:
        command_ok(
            await send_command_async(settings, "create", 60.0, spec=SPEC.model_dump(mode="json"))
        )
        sent = 0
        for d in range(periods):
            p_start, p_end = period_bounds(SPEC, d)
            await clock.set(p_start)

            async def flipped(d: int = d) -> bool:
                return (await store.get_experiment(SPEC.id)).flipped_period >= d

            await wait_until(flipped, 30, f"the flip of period {d}")
            await clock.set(p_end - timedelta(milliseconds=2))
            for i, product in enumerate(PRODUCTS):
                units = 1 + (i + d) % 4
                sale = Sale(
                    event_id=f"s{d}-{i}",
                    product=product,
                    units=units,
                    revenue=units * 10.0,
                    unit_price=10.0,
                    occurred_at=p_start + timedelta(hours=1 + i),
                )
                await pub.send(settings.topics.sales, sale, product)
                sent += units
            await pub.flush()

            async def counted(sent: int = sent) -> bool:
                totals = await store.totals(SPEC.id)
                return sum(v for k, v in totals.items() if k.startswith("units:")) >= sent

            await wait_until(counted, 30, f"the sales of period {d} counted")
        return p_end - timedelta(milliseconds=2)
    finally:
        await pub.stop()
        worker.stop()
        await redis.aclose()


def _one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


async def test_a_shell_without_pricelab_clock_reads_the_stacks_clock(stack, tmp_path) -> None:
    settings = make_settings(stack)
    stood = await _play(settings, 3)  # periods 0 and 1 complete, the experiment running

    first = cli_env(settings)  # the shell that exported PRICELAB_CLOCK=simulated
    assert first["PRICELAB_CLOCK"] == "simulated"
    second = {k: v for k, v in first.items() if k != "PRICELAB_CLOCK"}

    a, b = tmp_path / "first.csv", tmp_path / "second.csv"
    one = run_pricelab(first, "panel", "export", SPEC.id, "--out", str(a))
    assert one.returncode == 0, one.stderr
    assert f"wrote {6 * 2} cells (2 completed periods)" in one.stdout, one.stdout
    two = run_pricelab(second, "panel", "export", SPEC.id, "--out", str(b))
    assert two.returncode == 0, two.stderr
    assert two.stdout.replace(str(b), str(a)) == one.stdout
    assert b.read_bytes() == a.read_bytes()

    # the assignment in force, from either shell: period 2 (the clock stands in it), its
    # times in the experiment's time zone, with their offset
    shown = [run_pricelab(env, "assignments", "st01") for env in (first, second)]
    assert [s.returncode for s in shown] == [0, 0], shown[1].stderr
    assert shown[0].stdout == shown[1].stdout
    doc = json.loads(shown[1].stdout)
    assert (doc["status"], doc["period"], doc["timezone"]) == ("running", 2, "Europe/Berlin")
    assert (doc["period_start"], doc["period_end"]) == (
        "2031-03-05T00:00:00+01:00",
        "2031-03-06T00:00:00+01:00",
    )

    # the report of the live experiment, from the second shell too
    page = run_pricelab(second, "report", SPEC.id, "--out", str(tmp_path / "report"))
    assert page.returncode == 0, page.stderr
    assert Path(page.stdout.split("wrote ", 1)[1].strip()).is_file()

    # an explicit clock that contradicts the stack: one sentence naming the way out
    wall = run_pricelab(first | {"PRICELAB_CLOCK": "wall"}, "panel", "export", SPEC.id,
                        "--out", str(tmp_path / "wall.csv"))  # fmt: skip
    assert wall.returncode == 2
    said = _one_sentence(wall.stderr)
    assert "PRICELAB_CLOCK=wall contradicts the stack" in said
    assert "simulated clock" in said and "unset PRICELAB_CLOCK" in said
    assert not (tmp_path / "wall.csv").exists()

    # an experiment whose first period has not ended on the stack's clock: exit 2, why, and
    # no file. It is created in the store as the controller creates one (the worker is gone)
    redis = make_redis(settings)
    try:
        store = Store(redis, settings.key_prefix)
        later = _spec(
            "later",
            ["lt01", "lt02"],
            "2031-04-07T00:00:00+02:00",
            "2031-04-14T00:00:00+02:00",
            "Europe/Berlin",
        )
        await store.create_experiment(later, datetime(2031, 3, 5, tzinfo=UTC), lease_ms=30_000)
    finally:
        await redis.aclose()
    for env in (first, second):
        empty = run_pricelab(env, "panel", "export", "later", "--out", str(tmp_path / "l.csv"))
        assert empty.returncode == 2, empty.stdout + empty.stderr
        said = _one_sentence(empty.stderr)
        # the stack's time (2 ms before the end of period 2, 2031-03-06 00:00 in Berlin) in
        # the experiment's zone, on which clock, and when its first period ends
        assert stood == datetime(2031, 3, 5, 22, 59, 59, 998000, tzinfo=UTC)
        assert said == (
            "error: experiment 'later' has no completed period as of "
            "2031-03-05T23:59:59.998000+01:00 on the stack's simulated clock: its first period "
            "ends at 2031-04-08T00:00:00+02:00"
        )
        assert not (tmp_path / "l.csv").exists() and empty.stdout == ""
    # the live report says the same, and exits 2 (it said "no completed periods", exit 1)
    report = run_pricelab(second, "report", "later", "--out", str(tmp_path / "lr"))
    assert report.returncode == 2, report.stdout + report.stderr
    assert _one_sentence(report.stderr) == said
    unknown = run_pricelab(second, "panel", "export", "ghost", "--out", str(tmp_path / "g.csv"))
    assert unknown.returncode == 2
    assert "no experiment 'ghost'" in _one_sentence(unknown.stderr)


async def test_the_clock_a_command_reads(settings: Settings) -> None:
    """stack_clock on real Redis: with no record the settings decide (a stack whose controller
    has not started since the upgrade); with one, the record, unless PRICELAB_CLOCK was given
    and says otherwise."""
    from controller.clock import WallClock
    from controller.errors import ConfigurationError
    from controller.store.clock import record_clock_mode
    from controller.store.keys import clock_mode
    from streams.client.stack_clock import stack_clock

    unset = Settings(**settings.model_dump(exclude={"clock"}))  # as a shell without it
    assert "clock" not in unset.model_fields_set and unset.clock == "wall"
    redis = make_redis(settings)
    try:
        store = Store(redis, settings.key_prefix)
        assert isinstance(await stack_clock(unset, store), WallClock)  # no record: wall
        at = datetime(2031, 1, 1, 12, tzinfo=UTC)
        await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(at)
        await record_clock_mode(redis, clock_mode(settings.key_prefix), "simulated")
        assert (await stack_clock(unset, store)).now() == at
        assert (await stack_clock(settings, store)).now() == at  # explicit and the same
        wall = settings.model_copy(update={"clock": "wall"})
        with pytest.raises(ConfigurationError, match="^PRICELAB_CLOCK=wall contradicts"):
            await stack_clock(wall, store)
        await record_clock_mode(redis, clock_mode(settings.key_prefix), "wall")
        assert isinstance(await stack_clock(unset, store), WallClock)
    finally:
        await redis.aclose()
