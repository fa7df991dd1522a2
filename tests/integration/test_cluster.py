"""pricelab on a real Redis Cluster: three masters on loopback from the embedded redis-server
binary (``streams.live.embedded.LocalRedisCluster``), selected by a ``redis+cluster://`` URL.

Two experiments whose keys hash to different masters (and the catalog to the third) run
through a real controller worker and analysis worker, driven period by period: sales with
duplicates and malformed events, flips, looks with estimates and compaction of closed
periods. Mid-run, one experiment's master is killed with SIGKILL and started again from its
append-only file. The fault must show (the controller retried while the node was down), and
nothing may be lost or counted twice: every estimate published is the one the same runs give
on a single Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr
from redis import Redis
from redis.crc import key_slot

import controller.store.keys as keys
from controller.settings import RedisSettings
from controller.store import Store
from streams.live.driver import DriverConfig, LiveDriver
from streams.live.embedded import EmbeddedStack, LocalRedisCluster
from streams.live.launcher import WorkerProcess, metric_value
from tests.integration.conftest import make_settings, wait_until
from tests.integration.live import drive, live_run

pytestmark = pytest.mark.integration

DAYS = 6


def _prefix_on(cluster: LocalRedisCluster, node: int, stem: str, design: str) -> str:
    """A run prefix whose experiment id (``<prefix>-<design>``) hashes to master ``node``."""
    for j in range(10_000):
        prefix = f"{stem}{j}"
        if cluster.node_of_slot(key_slot(f"{prefix}-{design}".encode())) == node:
            return prefix
    raise AssertionError("no id found")  # pragma: no cover - 10,000 draws over 3 nodes


def _retries(w: WorkerProcess) -> float:
    return metric_value(w.metrics(), "pricelab_redis_retries_total")


async def test_the_live_path_on_a_three_master_cluster_survives_a_master_restart(
    stack: EmbeddedStack,
) -> None:
    with LocalRedisCluster(3) as cluster:
        settings = make_settings(stack, redis=RedisSettings(url=SecretStr(cluster.url)))
        catalog = cluster.node_of_slot(key_slot(settings.key_prefix.encode()))
        victim, other = (catalog + 1) % 3, (catalog + 2) % 3
        pa = _prefix_on(cluster, victim, "ca", "random-days")
        pb = _prefix_on(cluster, other, "cb", "crossover")
        a = live_run("random-days", 16, DAYS, 1, pa)
        b = live_run("crossover", 16, DAYS, 2, pb)
        fault: dict[str, Any] = {}

        def outage(driver: LiveDriver, used: dict[str, Any]):  # type: ignore[no-untyped-def]
            async def hook(d: int) -> None:
                if d != 2:
                    return
                w = driver.controller[0]
                before = _retries(w)
                old_pid = cluster.nodes[victim].proc.pid  # type: ignore[union-attr]
                cluster.kill(victim)
                # the controller's flip tick reads a's state on the dead node every 0.1 s
                await wait_until(
                    lambda: _retries(w) > before,
                    60,
                    "the controller to retry while a's master is down",
                )
                fault["retried"] = _retries(w) - before
                await asyncio.get_running_loop().run_in_executor(None, cluster.start_node, victim)
                fault["new_pid"] = cluster.nodes[victim].proc.pid  # type: ignore[union-attr]
                fault["old_pid"] = old_pid

            return hook

        cfg = DriverConfig(duplicates_per_day=5, malformed_per_day=2)
        used = await drive(settings, [a, b], cfg, before_look=outage)

        # the fault happened, on the node that holds a's keys and nothing else of the test's
        assert fault["retried"] > 0 and fault["new_pid"] != fault["old_pid"]
        for run, node in ((a, victim), (b, other)):
            with Redis(host=cluster.host, port=cluster.ports[node]) as direct:
                assert direct.exists(f"{keys.experiment(settings.key_prefix, run.id)}:state")
        with Redis(host=cluster.host, port=cluster.ports[catalog]) as direct:
            assert direct.scard(keys.catalog(settings.key_prefix, "exp:index")) == 2

        store: Store = used["store"]
        assert store.is_cluster
        for run in (a, b):
            # every sale counted once (the duplicates were sent and refused), none lost
            totals = used["totals"][run.id]
            assert sum(v for k, v in totals.items() if k.startswith("units:")) == run.units_sent
            assert sum(v for k, v in totals.items() if k.startswith("events:")) == run.events_sent
            # closed periods were compacted on the cluster (days past the 2-day lateness)
            assert used["compacted"][run.id] >= DAYS - 3

    # the same runs on the embedded stack's single Redis publish the same estimates
    single = [live_run("random-days", 16, DAYS, 1, pa), live_run("crossover", 16, DAYS, 2, pb)]
    await drive(make_settings(stack), single, cfg)
    for on_cluster, on_single in zip((a, b), single, strict=True):
        assert on_cluster.estimates, f"{on_cluster.id}: nothing published"
        assert _published(on_cluster) == _published(on_single)
    assert list(a.looks("dm")) == list(range(2, DAYS + 1))  # the restart's look included


def _published(run: Any) -> list[tuple[Any, ...]]:
    """What a run's looks published (estimator, segment, look, the numbers), each once;
    cycles between looks saw whatever part of a period had arrived, and are left out. A look
    can be published twice with the same numbers: the analysis timer runs a cycle every
    interval, and one that starts before the driver has moved the simulated clock on repeats
    the look as of the same instant (CI's loaded machine did, once)."""
    fields = ("effect", "se", "df", "ci_low", "ci_high", "cs_low", "cs_high", "n_units")
    return sorted(
        {
            (e["estimator"], e.get("segment") or "", e["_look"], *(e.get(f) for f in fields))
            for e in run.estimates
            if e["_look"] is not None
        }
    )
