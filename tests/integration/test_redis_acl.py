"""Least privilege enforced by Redis (issue #28): the users `pricelab acl` prints, loaded into a
real Debian redis-server 7, carry each role's real code path, and refuse with NOPERM what the
role must not do.

The controller (a Runtime logged in as pricelab-controller) creates an experiment (product
claims), pauses and resumes it, flips it (its turn, decision and assignment records) and
ingests sales; the analysis worker (a Runtime logged in as pricelab-analysis) runs a cycle:
it reads the panel, compacts the closed periods and fixes its sequence targets; the operator
runs the real CLI's read-only views as pricelab-operator. The test itself is the driver of the
simulated clock, as the demo is, with a user of its own.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from controller.designs import period_assignments
from controller.drafts import DraftBook
from controller.panel_source import RedisAdaptiveLooks, RedisPanelSource
from controller.settings import RedisSettings, Settings
from controller.spec import load_spec
from controller.store import Store, keys
from controller.store.chunks import ProductNames
from controller.store.clock import SharedSimulatedClock
from controller.store.columns import NO_RECORD
from controller.store.panel import ReplicaWait, WriteLost
from core.ports import AdaptiveLook
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port
from streams.worker.handlers import RawEvent
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime
from tests.integration.conftest import make_settings, pricelab
from tests.integration.test_sales_path import sale

pytestmark = pytest.mark.integration

REDIS_7 = Path("/usr/bin/redis-server")
PASSWORDS = {"controller": "c-secret-1", "analysis": "a-secret-2", "operator": "o-secret-3"}
DRIVER = "driver-secret-4"
START = datetime(2026, 6, 1, tzinfo=UTC)


def _redis_7() -> Path:
    """Debian's redis-server 7, or fail saying what to install (never skip)."""
    if not REDIS_7.is_file():
        pytest.fail(
            f"{REDIS_7} not found: this test needs Redis 7's ACL key permissions; "
            "install Debian's redis-server (apt-get install -y redis-server)"
        )
    out = subprocess.run([str(REDIS_7), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", out)
    if found is None or int(found.group(1)) < 7:
        pytest.fail(
            f"{REDIS_7} is not Redis 7 or later ({out.strip()!r}): apt-get install redis-server"
        )
    return REDIS_7


@pytest.fixture
def base(stack: EmbeddedStack) -> Settings:
    return make_settings(stack, allowed_lateness=timedelta(hours=1))


@pytest.fixture
def acl_redis(base: Settings, tmp_path: Path) -> Iterator[int]:
    """redis-server 7 with the users of `pricelab acl` (for ``base``'s key prefix), the
    driver's own user, and the default user off; stopped at the end."""
    printed = pricelab(base.model_copy(update={"acl_password_controller": None}), "acl")
    assert printed.returncode == 2  # the controller's password is not set (cli_env drops it)
    assert printed.stderr.count("\n") == 1 and "PRICELAB_ACL_PASSWORD_CONTROLLER" in printed.stderr
    settings = base.model_copy(
        update={f"acl_password_{r}": SecretStr(p) for r, p in PASSWORDS.items()}
    )
    printed = pricelab(settings, "acl")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "pricelab-controller",
        "pricelab-analysis",
        "pricelab-operator",
    ]
    assert not any(p in printed.stdout for p in PASSWORDS.values())
    with _redis_with_users(lines, tmp_path) as port:
        yield port


def _acl_lines(base: Settings) -> list[str]:
    settings = base.model_copy(
        update={f"acl_password_{r}": SecretStr(p) for r, p in PASSWORDS.items()}
    )
    printed = pricelab(settings, "acl")
    assert printed.returncode == 0, printed.stderr
    return printed.stdout.splitlines()


@contextlib.contextmanager
def _redis_with_users(lines: list[str], tmp_path: Path) -> Iterator[int]:
    """redis-server 7 with these ``user`` lines, the driver's own user and the default user
    off, from an ACL file; stopped at the end."""
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(
        "\n".join([*lines, f"user driver on >{DRIVER} ~* +@all", "user default off"]) + "\n"
    )
    port = free_port()
    server = ManagedProcess(
        "redis 7",
        [str(_redis_7()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--aclfile", str(aclfile)],
        "127.0.0.1",
        port,
        tmp_path / "redis.log",
    )  # fmt: skip
    server.start()
    try:
        yield port
    finally:
        server.stop()


def _as(base: Settings, port: int, user: str, password: str) -> Settings:
    redis = RedisSettings(
        url=SecretStr(f"redis://127.0.0.1:{port}/0"), username=user, password=SecretStr(password)
    )
    return base.model_copy(update={"redis": redis})


def _role(base: Settings, port: int, role: str) -> Settings:
    return _as(base, port, f"pricelab-{role}", PASSWORDS[role])


def _spec() -> Any:
    return load_spec(
        {
            "id": "acl-exp",
            "products": ["A", "B", "C", "D"],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=5)).isoformat(),
            "timezone": "UTC",
            "washout": "PT2H",
            "seed": 11,
        }
    )


async def _adaptive_ladder_under_acl(
    controller: Any, analysis: Any, driver: Redis, clock: SharedSimulatedClock, p: str
) -> None:
    """An adaptive ladder (#57): the controller records each period's probabilities and
    reads the latest look, the analysis worker leaves the look and reads the probabilities;
    neither writes the other's."""
    arms = [
        {"name": "list", "policy": "old", "allocation": 0.5, "control": True},
        {"name": "low", "policy": "low", "allocation": 0.25},
        {"name": "high", "policy": "high", "allocation": 0.25},
    ]
    ladder = load_spec(
        {"id": "acl-ladder", "products": [*"EFGHIJKLM"], "arms": arms,  # 9: a held cell a period
         "start": START.isoformat(), "end": (START + timedelta(days=5)).isoformat(),
         "timezone": "UTC", "seed": 2, "adaptive": {"warmup": 3}}
    )  # fmt: skip
    assert (await controller.flipper.create(ladder, backfill=True)).state == "running"
    looks = RedisAdaptiveLooks(analysis.store)
    cov = ((1e-8, 0.0, 0.0), (0.0, 1e-8, 0.0), (0.0, 0.0, 1e-8))
    await looks.put_look(AdaptiveLook(ladder.id, 3, "revenue", (0.0, 0.0, 9.0), cov, START))
    await clock.set(START + timedelta(days=3, hours=12))
    assert await controller.flipper.tick() == 2  # both experiments into period 3
    got = await RedisPanelSource(analysis.store, clock).allocations(ladder.id)
    assert list(got) == [2, 3] and got[2] == (0.5, 0.25, 0.25)
    assert got[3][2] > 0.5  # the look steered period 3 toward 'high'
    e = keys.experiment(p, ladder.id)
    refusals = [
        await _refused(analysis.store.record_allocation(ladder.id, 4, (1.0, 0.0, 0.0)), "alloc"),
        await _refused(controller.store.put_adaptive_look(AdaptiveLook(
            ladder.id, 9, "revenue", (0.0, 0.0, 0.0), cov, START)), "controller look"),
    ]  # fmt: skip
    assert all(r.startswith("NOPERM") or "can't access" in r for r in refusals), refusals
    assert await driver.hget(f"{e}:alloc", "4") is None
    assert await driver.hget(f"{e}:look", "periods") == "3"


async def _refused(call: Any, what: str) -> str:
    """The error Redis answered ``call`` with: NOPERM (a script's own calls are refused with
    Redis 7.0's script error); anything else fails the test."""
    try:
        await call
    except NoPermissionError as e:
        return f"NOPERM {e}"
    except ResponseError as e:
        assert "can't access" in str(e) or "no permissions" in str(e), f"{what}: {e}"
        return str(e)
    raise AssertionError(f"{what} was allowed")


async def test_each_role_runs_its_path_under_its_acl_user_and_nothing_more(
    base: Settings, acl_redis: int, tmp_path: Path
) -> None:
    port = acl_redis
    await ensure_topics(base)
    spec = _spec()
    p = base.key_prefix
    driver = Redis.from_url(
        f"redis://127.0.0.1:{port}/0", username="driver", password=DRIVER, decode_responses=True
    )
    clock = SharedSimulatedClock(driver, keys.clock(p))
    admin = Store(driver, p)
    controller = await Runtime(_role(base, port, "controller")).ensure_started()
    analysis = await Runtime(_role(base, port, "analysis")).ensure_started()
    try:
        # the controller: create (claims), pause and resume (windows, decisions), flips
        # (turn, decision, records) and sales
        await clock.set(START + timedelta(hours=12))
        assert (await controller.flipper.create(spec, backfill=True)).state == "running"
        assert (await controller.flipper.pause(spec.id)).state == "paused"
        assert (await controller.flipper.resume(spec.id)).state == "running"
        day0 = [RawEvent(sale(f"d0-{x}", x, START + timedelta(hours=11))) for x in "ABCD"]
        assert await controller.sales.handle(day0) == {"ok": 4}
        await clock.set(START + timedelta(days=1, hours=12))
        assert await controller.flipper.tick() == 1
        day1 = [RawEvent(sale(f"d1-{x}", x, START + timedelta(days=1, hours=11), 3)) for x in "AB"]
        assert await controller.sales.handle(day1 + day1[:1]) == {"ok": 2, "dup": 1}
        await clock.set(START + timedelta(days=2, hours=12))
        assert await controller.flipper.tick() == 1
        state = await admin.get_experiment(spec.id)
        assert (state.status, state.flipped_period) == ("running", 2)

        # the analysis worker: one cycle reads the panel and compacts the closed periods
        # (0 and 1: their end plus the hour of lateness has passed)
        assert await analysis.analysis.run_once()  # estimates, each with its sequence target
        assert (await admin.get_experiment(spec.id)).compacted == 2
        assert await driver.hlen(f"{keys.experiment(p, spec.id)}:cs") > 0
        panel = await analysis.analysis.source.panel(spec.id, clock.now())
        assert int(panel["units"].sum()) == 4 * 2 + 2 * 3
        # an experiment read in chunks: an open period's records of some products, in their
        # order, by a read-only script (EVALSHA_RO: HMGET and HLEN of the records hash)
        e2 = f"{keys.experiment(p, spec.id)}:a:2"
        (span,) = await analysis.store.live_records_span(
            spec.id, [2], ProductNames.of(["D", "A", "Z"])
        )
        held = await driver.hgetall(e2)
        texts = [None if c == NO_RECORD else span.records.templates[c] for c in span.records.codes]
        assert texts == [held["D"], held["A"], None]
        assert span.held == len(held) == 4

        # the operator: the CLI's read-only views
        operator = _role(base, port, "operator")
        listed = pricelab(operator, "experiment", "list")
        assert listed.returncode == 0, listed.stderr
        assert "acl-exp" in listed.stdout and "period    2" in listed.stdout
        shown = pricelab(operator, "assignments", "A")
        assert shown.returncode == 0, shown.stderr
        assert '"experiment": "acl-exp"' in shown.stdout
        freezes = pricelab(operator, "experiment", "freezes")
        assert freezes.returncode == 0, freezes.stderr
        out = tmp_path / "panel.csv"
        exported = pricelab(operator, "panel", "export", "acl-exp", "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        with out.open() as f:
            assert sum(float(row["units"]) for row in csv.DictReader(f)) == 14
        # the health checks (pricelab health): the console's document, read as the operator
        # (the panel, the sales totals, the windows and freezes; the trail, the estimates and
        # the dead letters on the broker)
        health = pricelab(operator, "health", "acl-exp", "--json", "--idle", "0.5")
        assert health.returncode in (0, 1), health.stderr
        doc = json.loads(health.stdout)
        checks = {c["key"]: c for c in doc["checks"]}
        assert doc["experiment"] == "acl-exp" and len(checks) == 7
        assert health.returncode == (1 if doc["flag"] == "problem" else 0), doc["flag"]
        assert sum(checks["sales"]["detail"]["units_by_period"].values()) == 14
        # the sales counted by status (the totals): four on day 0, two on day 1
        assert "6 sale(s) counted so far (6 ok)" in checks["sales"]["sentence"]
        assert checks["freshness"]["detail"]["as_of"] is not None  # the cycle's look
        # drafts (controller.drafts): saved and discarded by the controller's user (the
        # create above deleted no draft of its id under it too), read by the operator's
        book = DraftBook(controller.store, clock)
        doc = spec.model_dump(mode="json")
        await book.save(doc | {"id": "acl-draft"}, "ann")
        await book.save(doc | {"id": "acl-gone"}, "ann")
        await book.discard("acl-gone", "ann", "not needed")
        drafts = pricelab(operator, "experiment", "drafts", "--json")
        assert drafts.returncode == 0, drafts.stderr
        assert [d["id"] for d in json.loads(drafts.stdout)] == ["acl-draft"]

        # the barriers before a WAIT (PRICELAB_REDIS__WAIT_REPLICAS), as the controller's
        # user (WAIT 0: no replica here): each guard's read is answered, none refused
        # (NOPERM); an entry that is there passes, one nobody wrote is WriteLost
        s, none = controller.store, ReplicaWait(0, 100)
        kept = await s.draft("acl-draft")
        assert kept is not None
        await s.replicated(none, "a draft", s.draft_guard(kept))
        freeze = "acl-freeze"
        assert await s.add_freeze(freeze, {"start_ms": 0, "end_ms": 1, "experiments": None})
        await s.replicated(none, "a freeze", s.freeze_guard(freeze))
        await s.cancel_freeze(freeze, None)
        await s.replicated(none, "a freeze's cancel", s.freeze_guard(freeze, cancelled=True))
        # a trigger save given a mark (a running experiment: the script writes it)
        v = await s.trigger_state_version(spec.id)
        saved = await s.save_trigger_state(spec.id, v, {"stale": 0}, {}, {}, {}, mark="m1")
        assert saved.guard == s.trigger_mark_guard(spec.id, "m1")
        await s.replicated(none, "a trigger save", saved.guard)
        await s.forget_trigger_marks([saved.guard])
        for guard in (
            s.trigger_mark_guard(spec.id, "m1"),  # forgotten
            s.freeze_guard("no-such-freeze"),
            s.draft_guard(replace(kept, updated_by="someone else")),
        ):
            with pytest.raises(WriteLost):
                await s.replicated(none, "an entry not there", guard)

        # refused: the analysis user writing an assignment record or taking a flip's turn
        e = keys.experiment(p, spec.id)
        a_store = analysis.store
        refusals = [
            await _refused(a_store.redis.hset(f"{e}:a:2", "A", "T|1||"), "analysis HSET a record"),
            await _refused(
                a_store.write_assignments(spec.id, 3, period_assignments(spec, 3)),
                "analysis writing a period's records",
            ),
            await _refused(a_store.take_turn(spec.id, "intruder", 30_000), "analysis flip claim"),
            await _refused(a_store.redis.set(f"{e}:turn", "intruder"), "analysis SET the turn"),
        ]
        # refused: the operator writing anything, even on keys it reads
        o_redis = Redis.from_url(
            f"redis://127.0.0.1:{port}/0",
            username="pricelab-operator",
            password=PASSWORDS["operator"],
            decode_responses=True,
        )
        o_store = Store(o_redis, p)
        try:
            refusals += [
                await _refused(o_redis.hset(f"{e}:state", "status", "stopped"), "operator HSET"),
                await _refused(o_redis.set(keys.clock(p), "0"), "operator SET the clock"),
                await _refused(o_redis.delete(f"{e}:spec"), "operator DEL"),
                await _refused(o_redis.incr(keys.catalog(p, "version")), "operator INCR"),
                await _refused(o_store.open_window(spec.id, "w", clock.now(), "x"), "window"),
                await _refused(o_store.take_turn(spec.id, "intruder", 30_000), "flip claim"),
                await _refused(o_store.set_status(spec.id, "stopped"), "operator status"),
                await _refused(o_redis.hdel(keys.drafts(p), "acl-draft"), "operator drafts"),
            ]
        finally:
            await o_redis.aclose()
        # refused: the controller storing compacted periods or sequence targets (the analysis
        # worker's), or moving the simulated clock (the driver's). Its own state hash it may
        # write whole: Redis permissions stop at the key, not the field
        refusals += [
            await _refused(controller.store.redis.set(f"{e}:col:5", "x"), "controller SET col"),
            await _refused(
                controller.store.fix_sequence_target(spec.id, "k", 1.0), "controller targets"
            ),
            await _refused(controller.store.redis.set(keys.clock(p), "0"), "controller clock"),
        ]
        assert all(r.startswith("NOPERM") or "can't access" in r for r in refusals), refusals
        # nothing the refused calls tried reached Redis
        state = await admin.get_experiment(spec.id)
        assert (state.status, state.flipped_period, state.closed) == ("running", 2, 2)
        assert await driver.get(f"{e}:turn") is None
        assert await driver.exists(f"{e}:a:3", f"{e}:col:5") == 0
        assert "w" not in await driver.hgetall(f"{e}:windows")
        assert await driver.hget(f"{e}:cs", "k") is None
        assert int(await driver.get(keys.clock(p))) > 0
        await _adaptive_ladder_under_acl(controller, analysis, driver, clock, p)
        # the operator sees the period's probabilities with the product's assignment
        shown = pricelab(operator, "assignments", "E")
        assert shown.returncode == 0, shown.stderr
        assert '"probabilities": {' in shown.stdout and '"high": 0.' in shown.stdout
    finally:
        await controller.stop()
        await analysis.stop()
        await driver.aclose()


async def test_a_role_user_without_a_permission_it_needs_is_one_sentence_and_exit_2(
    base: Settings, tmp_path: Path
) -> None:
    """The users `pricelab acl` prints, each with one permission taken away: the operator
    may not run SMEMBERS at all (Redis names the command), the analysis worker may not GET
    the simulated clock (Redis names no key: the worker's start-up check finds it)."""
    await ensure_topics(base)
    p = base.key_prefix
    lines = _acl_lines(base)
    users = {line.split()[1]: line for line in lines}
    operator = users["pricelab-operator"]
    smembers = re.search(r" \(\+smembers [^)]*\)", operator)
    assert smembers is not None
    users["pricelab-operator"] = operator.replace(smembers.group(0), "")
    clock = f" %R~{keys.clock(p)}"
    analysis = users["pricelab-analysis"]
    get = re.search(r"\(\+get [^)]*\)", analysis)
    assert get is not None and clock in get.group(0)
    users["pricelab-analysis"] = analysis.replace(get.group(0), get.group(0).replace(clock, ""))
    assert users["pricelab-analysis"] != analysis

    with _redis_with_users(list(users.values()), tmp_path) as port:
        # the CLI's read: Redis's NOPERM names the command
        listed = pricelab(_role(base, port, "operator"), "experiment", "list")
        assert listed.returncode == 2, listed.stderr
        assert listed.stdout == "" and listed.stderr.count("\n") == 1, listed.stderr
        assert "Traceback" not in listed.stderr
        assert listed.stderr.startswith(
            "error: Redis refused the operator role (Redis user pricelab-operator) a permission "
            "it needs: SMEMBERS (NOPERM)"
        ), listed.stderr
        # a worker's start: its check of the role's reads names the key pattern refused
        started = pricelab(_role(base, port, "analysis"), "worker", "--role", "analysis")
        assert started.returncode == 2, started.stderr
        assert started.stderr.count("\n") == 1 and "Traceback" not in started.stderr
        assert started.stderr.startswith(
            "error: Redis refused the analysis role (Redis user pricelab-analysis) a permission "
            f"it needs: GET on {keys.clock(p)} (NOPERM)"
        ), started.stderr
        # the permissions taken away are the only ones: with them, both run
        driver = Redis.from_url(
            f"redis://127.0.0.1:{port}/0", username="driver", password=DRIVER
        )
        try:
            for user in ("pricelab-operator", "pricelab-analysis"):
                line = next(x for x in lines if x.split()[1] == user)
                await driver.execute_command("ACL", "SETUSER", *line.split()[1:])
        finally:
            await driver.aclose()
        listed = pricelab(_role(base, port, "operator"), "experiment", "list")
        assert listed.returncode == 0, listed.stderr
