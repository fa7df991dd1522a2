"""Creating an experiment on real Redis: products claimed chunk by chunk, yet a product is
never in two running experiments, racing creations have one winner, and a creation cut off
mid-way (refused, lease lost, worker killed) leaves nothing that blocks later ones."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from controller.errors import ConflictError, StoreError
from controller.spec import load_spec
from controller.store import Store, keys
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)
ODD = ["ünïcødé-€", "with space", "crlf\r\ninside", "$3\r\nfoo", "*1", "日本語", "x" * 300]
ROOT = Path(__file__).resolve().parents[2]


def _spec(exp_id: str, products: list[str]):  # type: ignore[no-untyped-def]
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": T0.isoformat(),
            "end": (T0 + timedelta(days=3)).isoformat(),
            "period": "PT1H",
        }
    )


def _redis(settings) -> Redis:  # type: ignore[no-untyped-def]
    return Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)


async def _owners(store: Store, products: list[str]) -> dict[str, str | None]:
    return {p: await store.experiment_of(p) for p in products}


async def test_an_overlap_says_the_holders_state_and_how_many_products_overlap(settings) -> None:
    """The walkthrough's spec created twice under two ids: every one of its 40 products is
    in the first, which has not started. The refusal says so: its real state, the count and
    the first few products, not one of them as if it were the only one."""
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        products = [f"P{i:04d}" for i in range(1, 41)]
        await store.create_experiment(_spec("walk1", products), T0)
        with pytest.raises(ConflictError) as refused:
            await store.create_experiment(_spec("walk2", [*products, "Q0001"]), T0, chunk=7)
        assert str(refused.value) == (
            "40 of its products ('P0001', 'P0002', 'P0003', ...) are already in experiment "
            "'walk1', which is created (its start is ahead); a product can be in at most one "
            "experiment that has not stopped or ended"
        )
        assert await store.experiment_of("Q0001") is None  # what it claimed is released
        await redis.hset(f"{keys.experiment(settings.key_prefix, 'walk1')}:state",
                         mapping={"status": "paused", "flipped_period": 2})  # fmt: skip
        with pytest.raises(ConflictError, match=r"^2 of its products \('P0039', 'P0040'\) are "
                           r"already in experiment 'walk1', which is paused;"):  # fmt: skip
            await store.create_experiment(_spec("walk3", ["P0039", "P0040", "Q0002"]), T0)
    finally:
        await redis.aclose()


async def test_who_created_it_is_kept_with_its_state(settings) -> None:
    """The create command's actor is kept with the experiment (the console's list reads it
    from the state, not from the audit trail); one created without it has none."""
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("made-by", ["M1", "M2"]), T0, created_by="olga")
        await store.create_experiment(_spec("made-anon", ["M3"]), T0)
        assert (await store.get_experiment("made-by")).created_by == "olga"
        assert (await store.get_experiment("made-anon")).created_by is None
    finally:
        await redis.aclose()


async def test_an_overlapping_creation_is_refused_and_frees_what_it_claimed(settings) -> None:
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        mine = ODD + [f"a{i}" for i in range(10)] + ["zz-shared"]
        await store.create_experiment(_spec("A", mine), T0, chunk=2)
        assert set((await _owners(store, mine)).values()) == {"A"}
        with pytest.raises(ConflictError, match="already exists"):
            await store.create_experiment(_spec("A", ["z"]), T0)
        # sorted, b0..b5 come before the contested product: they are claimed, then released
        other = [f"b{i}" for i in range(6)] + ["zz-shared"]
        with pytest.raises(
            ConflictError,
            match=r"^product 'zz-shared' is already in experiment 'A', which is created \(its start is ahead\);",
        ):
            await store.create_experiment(_spec("B", other), T0, chunk=2)
        assert await store.experiment_ids() == ["A"]
        for p in other[:6]:
            assert await redis.get(keys.product(settings.key_prefix, p)) is None
        assert await redis.get(keys.creating(settings.key_prefix, "B")) is None
        # the refused id and its free products can be used at once
        await store.create_experiment(_spec("B", other[:6]), T0, chunk=4)
        assert set((await _owners(store, other[:6])).values()) == {"B"}
        # stopping releases: the products can go to a new experiment
        await store.set_status("A", "stopped")  # the claims die with the status
        assert set((await _owners(store, mine)).values()) == {None}
        await store.create_experiment(_spec("C", mine[:3]), T0)  # stale keys taken over
        assert await store.release_products("A") == len(mine) - 3  # C's keys are kept
        for p in mine[3:]:
            assert await redis.get(keys.product(settings.key_prefix, p)) is None
        await store.create_experiment(_spec("D", mine[3:]), T0)
        assert set((await _owners(store, mine)).values()) == {"C", "D"}
    finally:
        await redis.aclose()


@pytest.mark.parametrize("seed", range(6))
async def test_racing_creations_have_exactly_one_winner(settings, seed: int) -> None:
    rng = random.Random(seed)
    pool = [f"p{i:03d}" for i in range(120)]
    common = rng.sample(pool, 5)
    rest = [p for p in pool if p not in common]
    rng.shuffle(rest)
    products = {"R1": common + rest[:50], "R2": common + rest[50:100]}
    clients = [_redis(settings) for _ in products]
    stores = [Store(c, settings.key_prefix) for c in clients]
    try:
        results = await asyncio.gather(
            *(
                s.create_experiment(_spec(f"{x}-{seed}", ps), T0, chunk=3)
                for s, (x, ps) in zip(stores, products.items(), strict=True)
            ),
            return_exceptions=True,
        )
        ok = [i for i, r in enumerate(results) if r is None]
        assert len(ok) == 1, results  # never both; and ordered claims leave no mutual refusal
        lost = 1 - ok[0]
        assert isinstance(results[lost], ConflictError)
        winner, loser = list(products)[ok[0]], list(products)[lost]
        owners = await _owners(stores[0], products[winner] + products[loser])
        assert all(owners[p] == f"{winner}-{seed}" for p in products[winner])
        assert all(owners[p] is None for p in products[loser] if p not in common)
        assert await stores[0].experiment_ids() == [f"{winner}-{seed}"]
    finally:
        for c in clients:
            await c.aclose()


async def test_a_creation_that_lost_its_lease_cannot_finish(settings) -> None:
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    marker = keys.creating(settings.key_prefix, "slow")
    products = [f"s{i:04d}" for i in range(3000)]
    try:
        task = asyncio.create_task(
            store.create_experiment(_spec("slow", products), T0, lease_ms=60_000, chunk=1)
        )

        async def claiming() -> bool:
            return await redis.get(keys.product(settings.key_prefix, products[10])) is not None

        await wait_until(claiming, 30, "the creation to claim products", every=0.005)
        await redis.delete(marker)  # as if the lease had run out while the worker stalled
        with pytest.raises(StoreError, match="lease lost"):
            await task
        assert await store.experiment_ids() == []
        assert set((await _owners(store, products)).values()) == {None}
        assert await redis.keys(keys.product(settings.key_prefix, "*")) == []  # released
    finally:
        await redis.aclose()


_CREATOR = """
import asyncio, sys
from datetime import UTC, datetime
from redis.asyncio import Redis
from controller.spec import load_spec
from controller.store import Store

url, prefix = sys.argv[1], sys.argv[2]
spec = load_spec({"id": "dead", "products": [f"d{i:06d}" for i in range(200_000)],
                  "treatment_policy": "new", "control_policy": "old",
                  "start": "2026-06-01T00:00:00+00:00", "end": "2026-06-04T00:00:00+00:00",
                  "period": "PT1H"})
store = Store(Redis.from_url(url, decode_responses=True), prefix)
asyncio.run(store.create_experiment(spec, datetime(2026, 6, 1, tzinfo=UTC),
                                    lease_ms=2000, chunk=5))
"""


async def test_a_worker_killed_mid_create_blocks_nothing_once_its_lease_expires(settings) -> None:
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    p = settings.key_prefix
    proc = subprocess.Popen(
        [sys.executable, "-c", _CREATOR, settings.redis.url.get_secret_value(), p],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:

        async def hundred_chunks_in() -> bool:
            assert proc.poll() is None, "the creating process exited"
            return await redis.get(keys.product(p, "d000500")) is not None

        await wait_until(hundred_chunks_in, 60, "a hundred chunks of the creation", every=0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        held = [f"d{i:06d}" for i in range(0, 501, 50)]
        assert await store.experiment_ids() == []  # nothing half-created is visible
        assert set((await _owners(store, held)).values()) == {None}
        # within the lease the dead creation still counts (it might be alive and slow)
        with pytest.raises(ConflictError, match="creation is in progress"):
            await store.create_experiment(_spec("early", held), T0)

        async def lease_expired() -> bool:
            return not await redis.exists(keys.creating(p, "dead"))

        await wait_until(lease_expired, 10, "the dead creation's lease (2 s) to expire")
        await store.create_experiment(_spec("later", held), T0)
        assert set((await _owners(store, held)).values()) == {"later"}
        # the dead id can be created again; its old claims elsewhere do not count for it
        await store.create_experiment(_spec("dead", ["d000001"]), T0)
        assert await store.experiment_of("d000001") == "dead"
        assert await store.experiment_of("d000002") is None
        await store.create_experiment(_spec("after", ["d000002", "d000003"]), T0)
        assert await store.experiment_of("d000002") == "after"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await redis.aclose()


async def test_claims_written_before_gens_still_count(settings) -> None:
    # keys of experiments created before gens hold the bare id; no state 'claim', and the
    # holders hash has no gen
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    p = settings.key_prefix
    try:
        spec = _spec("old", ["o1", "o2"])
        await redis.sadd(keys.catalog(p, "exp:index"), "old")
        await redis.hset(keys.catalog(p, "holders"), "old", "running|")
        await redis.set(f"{keys.experiment(p, 'old')}:spec", spec.to_json())
        await redis.hset(
            f"{keys.experiment(p, 'old')}:state",
            mapping={"status": "running", "flipped_period": -1},
        )
        await redis.mset({keys.product(p, "o1"): "old", keys.product(p, "o2"): "old"})
        assert await store.experiment_of("o2") == "old"
        with pytest.raises(
            ConflictError,
            match=r"^product 'o2' is already in experiment 'old', which is created \(",
        ):
            await store.create_experiment(_spec("new", ["n1", "o2"]), T0)
        await store.set_status("old", "ended")
        assert await store.release_products("old") == 2
        assert await redis.get(keys.product(p, "o1")) is None
        await store.create_experiment(_spec("new", ["n1", "o2"]), T0)
        assert await store.experiment_of("o2") == "new"
    finally:
        await redis.aclose()


async def test_a_creation_in_progress_blocks_its_own_id(settings) -> None:
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await redis.set(keys.creating(settings.key_prefix, "busy"), "someone", px=60_000)
        with pytest.raises(ConflictError, match="being created"):
            await store.create_experiment(_spec("busy", ["q1"]), T0)
        assert await redis.get(keys.creating(settings.key_prefix, "busy")) == "someone"
    finally:
        await redis.aclose()


async def test_the_cross_slot_steps_a_dead_process_left_half_done_are_finished(settings) -> None:
    """Creation and status changes write the experiment's slot and the catalog's in turn (two
    nodes on a cluster). What a process that died between the steps leaves is repaired by the
    flip tick's reconcile, and an abort never drops an experiment that was committed."""
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    p = settings.key_prefix
    state = f"{keys.experiment(p, 'half')}:state"
    try:
        await store.create_experiment(_spec("half", ["h1", "h2"]), T0)
        gen = await redis.hget(state, "claim")
        # committed, then paused, and only then the creator learns of it (its reply was lost):
        # the abort must see the commit and leave spec and state alone
        await store.set_status("half", "paused")
        abort = store._script("create_abort")
        got = await abort(keys=[keys.creating(p, "half"), keys.catalog(p, "holders")],
                          args=["half", gen])  # fmt: skip
        assert got == "committed"
        assert (await store.get_experiment("half")).status == "paused"

        # died between the commit and opening it: indexed, still 'creating'
        await redis.hset(state, "status", "creating")
        version = await store.version()
        assert await store.reconcile(await store.experiments()) == 1
        assert (await store.get_experiment("half")).status == "running"
        # and the version moves: readers that cache the running experiments by it (trigger
        # routes) would otherwise keep an empty route for it
        assert await store.version() > version

        # died between a stop's two steps: the state says ended, the catalog still running,
        # so the products still count as claimed
        await redis.hset(state, "status", "ended")
        with pytest.raises(
            ConflictError,
            match=r"^product 'h1' is already in experiment 'half', which is ended \(its products are being released\)",
        ):
            await store.create_experiment(_spec("next", ["h1"]), T0)
        version = await store.version()
        assert await store.reconcile(await store.experiments()) == 1
        assert await redis.hget(keys.catalog(p, "holders"), "half") == f"ended|{gen}"
        assert await store.version() > version
        assert await store.experiment_of("h1") is None
        await store.create_experiment(_spec("next", ["h1"]), T0)
        assert await store.experiment_of("h1") == "next"
        assert await store.reconcile(await store.experiments()) == 0  # nothing left to do
    finally:
        await redis.aclose()


async def test_an_abort_sees_the_commit_of_an_experiment_stopped_and_releasing(settings) -> None:
    """A creation whose commit went through but whose reply was lost must not drop the
    experiment, also once the experiment is stopped with its last messages not out yet (the
    holders hash then reads ``stopped|gen|releasing``): the abort read the gen as
    ``gen|releasing``, answered 'aborted', and create_drop deleted the spec and state of a
    committed experiment."""
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    p = settings.key_prefix
    state = f"{keys.experiment(p, 'gone')}:state"
    try:
        await store.create_experiment(_spec("gone", ["g1"]), T0)
        gen = await redis.hget(state, "claim")
        # stopped, its stop decided (seq 1) and not out yet
        await redis.hset(state, mapping={"seq": 1, "published": 0})
        await store.set_status("gone", "stopped")
        assert await redis.hget(keys.catalog(p, "holders"), "gone") == f"stopped|{gen}|releasing"
        abort = store._script("create_abort")
        got = await abort(keys=[keys.creating(p, "gone"), keys.catalog(p, "holders")],
                          args=["gone", gen])  # fmt: skip
        assert got == "committed"
    finally:
        await redis.aclose()


async def test_an_experiment_from_before_published_was_kept_is_not_held_releasing(settings) -> None:
    """An experiment whose state has no 'published' (kept before #25) has nothing pending
    (ExperimentState.published defaults to seq). sync_holder read the missing field as 0 and
    marked it 'releasing' once stopped: its products stayed claimed for good (no tick redoes
    a decision that is not pending), and reconcile 'repaired' it on every tick, back to the
    same value."""
    redis = _redis(settings)
    store = Store(redis, settings.key_prefix)
    p = settings.key_prefix
    state = f"{keys.experiment(p, 'older')}:state"
    try:
        await store.create_experiment(_spec("older", ["r1"]), T0)
        gen = await redis.hget(state, "claim")
        await redis.hset(state, "seq", 3)
        await redis.hdel(state, "published")
        assert (await store.get_experiment("older")).published == 3  # nothing pending
        await store.set_status("older", "stopped")
        assert await redis.hget(keys.catalog(p, "holders"), "older") == f"stopped|{gen}"
        assert await store.reconcile(await store.experiments()) == 0
        await store.create_experiment(_spec("newer", ["r1"]), T0)  # its product is free
        assert await store.experiment_of("r1") == "newer"
    finally:
        await redis.aclose()
