"""The audit trail in the order things happened, on a clock that stands still.

Two controller workers share the commands topic (each holds one partition, so each handles
the commands of one of two experiments) and both tick. The simulated clock never moves: every
record of the test carries the same timestamp. An operator interleaves commands on both
experiments and on all of them (a freeze of every experiment, its cancel, which are recorded
under ``_all`` on a partition of their own). ``pricelab experiment history`` must list each
experiment's trail as it happened: each command before its effects, the fleet's commands in
their place, whichever worker decided.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from controller.settings import Settings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.live.launcher import WorkerProcess, http_ok
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import cli_env, make_settings, run_pricelab, wait_until

pytestmark = pytest.mark.integration

#: the instant the clock stands at for the whole test
T0 = datetime(2031, 6, 2, tzinfo=UTC)  # a period boundary: no backfill


def _ids_on_two_partitions(partitions: int) -> tuple[str, str]:
    """Two experiment ids whose commands go to different partitions of the commands topic
    (the producer's default partitioner: murmur2 of the key), so that each of two workers
    handles one experiment's commands."""
    part = DefaultPartitioner()
    ps = list(range(partitions))
    by: dict[int, str] = {}
    for i in range(100):
        exp_id = f"order-{i}"
        by.setdefault(part(exp_id.encode(), ps, ps), exp_id)
        if len(by) == 2:
            return by[0], by[1]
    raise AssertionError("no two ids on two partitions")


def _spec(exp_id: str, products: list[str]) -> dict[str, Any]:
    return {
        "id": exp_id,
        "design": "random-days",
        "products": products,
        "treatment_policy": "promo",
        "control_policy": "list",
        "start": T0.isoformat(),  # now: the create's tick starts it
        "end": (T0 + timedelta(days=7)).isoformat(),
        "timezone": "UTC",
        "seed": 5,
    }


async def _state(settings: Settings, exp_id: str) -> tuple[str, bool]:
    redis = make_redis(settings)
    try:
        st = await Store(redis, settings.key_prefix).get_experiment(exp_id)
        return st.phase, st.frozen
    finally:
        await redis.aclose()


async def test_the_history_keeps_the_order_of_commands_and_decisions_of_two_workers(
    stack, tmp_path
) -> None:
    settings = make_settings(stack).model_copy(update={"tick_interval": 0.2})
    await ensure_topics(settings)
    redis = make_redis(settings)
    try:
        await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(T0)
    finally:
        await redis.aclose()
    e1, e2 = _ids_on_two_partitions(settings.kafka.partitions)
    env = cli_env(settings) | {"PRICELAB_ACTOR": "ann@ops-desk"}
    workers = [WorkerProcess(settings).launch(), WorkerProcess(settings).launch()]
    try:
        for w in workers:
            w.wait_healthy()
        # each worker holds a partition of the commands topic (its consumer group assigned)
        await wait_until(
            lambda: all(http_ok(w.web_port, "/ready") for w in workers), 60, "both workers ready"
        )

        async def run(*args: str) -> dict[str, Any]:
            done = await asyncio.to_thread(run_pricelab, env, *args)
            assert done.returncode == 0, f"pricelab {' '.join(args)}: {done.stderr}"
            return json.loads(done.stdout)  # type: ignore[no-any-return]

        async def until(exp_id: str, phase: str, frozen: bool) -> None:
            """Every effect of the last command decided (the state moves with the decision)."""

            async def there() -> bool:
                return await _state(settings, exp_id) == (phase, frozen)

            await wait_until(there, 30, f"{exp_id} {phase} frozen={frozen}")

        for exp_id, products in ((e1, ["o1", "o2"]), (e2, ["o3", "o4"])):
            path = tmp_path / f"{exp_id}.json"
            path.write_text(json.dumps(_spec(exp_id, products)))
            await run("experiment", "create", str(path))
            await until(exp_id, "running", False)
        await run("experiment", "pause", e1, "--reason", "price check")
        await run("experiment", "pause", e2, "--reason", "stock check")
        await run("experiment", "resume", e1)
        await run("experiment", "freeze", "--all", "--id", "hold", "--start", "now", "--end", "+P1D",
                  "--reason", "audit")  # fmt: skip
        await until(e1, "running", True)
        await until(e2, "paused", True)
        await run("experiment", "resume", e2)
        await until(e2, "running", True)
        await run("experiment", "unfreeze", "hold")
        await until(e1, "running", False)
        await until(e2, "running", False)
        await run("experiment", "stop", e1, "--reason", "done")
        await run("experiment", "stop", e2, "--reason", "done")
    finally:
        for w in workers:
            w.stop()

    def trail(exp_id: str) -> list[dict[str, Any]]:
        shown = run_pricelab(env, "experiment", "history", exp_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["records"]  # type: ignore[no-any-return]

    def steps(records: list[dict[str, Any]]) -> list[str]:
        return [
            f"{r['detail']['command']} accepted" if r["kind"] == "command" else r["kind"]
            for r in records
        ]

    first, second = trail(e1), trail(e2)
    # the clock stood still: the timestamps cannot order them
    assert {datetime.fromisoformat(r["at"]) for r in first + second} == {T0}
    assert steps(first) == [
        "create accepted", "created", "started",
        "pause accepted", "paused",
        "resume accepted", "resumed",
        "freeze accepted", "frozen",  # the freeze of every experiment: under _all
        "unfreeze accepted", "unfrozen",
        "stop accepted", "stopped",
    ], steps(first)  # fmt: skip
    assert steps(second) == [
        "create accepted", "created", "started",
        "pause accepted", "paused",
        "freeze accepted",  # paused: the overlay moves under the pause, nothing announced
        "resume accepted", "resumed",
        "unfreeze accepted", "unfrozen",
        "stop accepted", "stopped",
    ], steps(second)  # fmt: skip
    fleet = [r for r in first if r["experiment"] == "_all"]
    assert [r["detail"]["command"] for r in fleet] == ["freeze", "unfreeze"]
    # each experiment's commands were handled, and their decisions taken, by its own worker:
    # two workers' decisions are interleaved in the fleet's commands' order
    decided = {
        exp: {r["detail"]["worker"] for r in rs if r["kind"] in ("paused", "stopped")}
        for exp, rs in ((e1, first), (e2, second))
    }
    assert len(decided[e1]) == len(decided[e2]) == 1 and decided[e1] != decided[e2], decided
    # the text the operator reads is in the same order
    text = run_pricelab(env, "experiment", "history", e1)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()[1:]
    assert [ln.split()[1] for ln in lines] == [
        "command", "created", "started", "command", "paused", "command", "resumed",
        "command", "frozen", "command", "unfrozen", "command", "stopped",
    ]  # fmt: skip
