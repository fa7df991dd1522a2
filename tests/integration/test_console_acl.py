"""The console runs as its own Redis ACL user, the one ``pricelab acl`` prints when
PRICELAB_ACL_PASSWORD_CONSOLE is set, on Redis 7 with the default user off: its API lists and
shows an experiment the controller created, and every write it tries is refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.testclient import TestClient

from controller.drafts import DraftBook
from controller.settings import Settings
from controller.store import Store, keys
from controller.store.clock import SharedSimulatedClock
from streams.console import auth
from streams.console.app import make_console
from streams.console.server import build_console_app
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime
from tests.integration.conftest import make_settings, pricelab
from tests.integration.test_redis_acl import (
    DRIVER,
    PASSWORDS,
    START,
    _as,
    _redis_with_users,
    _refused,
    _spec,
)

pytestmark = pytest.mark.integration

CONSOLE_PASSWORD = "k-secret-5"


def _api(settings: Settings) -> dict[str, Any]:
    """The console's API, signed in as a viewer, over ``settings``'s Redis user."""
    users = auth.Users()
    password = users.add_one_time_admin()
    app = build_console_app(make_console(settings, users))  # every page in (the drafts)
    with TestClient(app) as client:
        r = client.post("/api/login", json={"user": "admin", "password": password})
        assert r.status_code == 200, r.text
        out = {
            "ready": client.get("/ready").json(),
            "list": client.get("/api/experiments").json(),
            "one": client.get("/api/experiments/acl-exp").json(),
            "typo": client.get("/api/experiments/acl-ex"),
            "health": client.get("/api/experiments/acl-exp/health"),
            # the charts: the series, the heatmap and a product's message in force
            "series": client.get("/api/experiments/acl-exp/series"),
            "heatmap": client.get("/api/experiments/acl-exp/assignments"),
            "product": client.get("/api/experiments/acl-exp/products/A"),
            # the drafts: the list and one with its spec
            "drafts": client.get("/api/drafts").json(),
            "draft": client.get("/api/drafts/acl-draft").json(),
        }
        return out


async def test_the_console_reads_as_its_own_redis_user_and_writes_nothing(
    stack: Any, tmp_path: Path
) -> None:
    base = make_settings(stack, allowed_lateness=timedelta(hours=1))
    await ensure_topics(base)
    passwords = PASSWORDS | {"console": CONSOLE_PASSWORD}
    printed = pricelab(
        base.model_copy(update={f"acl_password_{r}": SecretStr(p) for r, p in passwords.items()}),
        "acl",
    )
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert [line.split()[1] for line in lines][-1] == "pricelab-console"
    spec = _spec()
    p = base.key_prefix
    with _redis_with_users(lines, tmp_path) as port:
        driver = Redis.from_url(
            f"redis://127.0.0.1:{port}/0", username="driver", password=DRIVER, decode_responses=True
        )
        console = _as(base, port, "pricelab-console", CONSOLE_PASSWORD)
        controller = await Runtime(
            _as(base, port, "pricelab-controller", PASSWORDS["controller"])
        ).ensure_started()
        c_redis = Redis.from_url(
            f"redis://127.0.0.1:{port}/0",
            username="pricelab-console",
            password=CONSOLE_PASSWORD,
            decode_responses=True,
        )
        try:
            await SharedSimulatedClock(driver, keys.clock(p)).set(START + timedelta(hours=12))
            assert (await controller.flipper.create(spec, backfill=True)).state == "running"
            draft = spec.model_dump(mode="json") | {"id": "acl-draft"}
            await DraftBook(controller.store, controller.flipper.clock).save(draft, "ann")

            got = await asyncio.to_thread(_api, console)
            assert got["ready"] == {"ready": True}
            [row] = got["list"]["experiments"]
            assert (row["id"], row["state"], row["products"]) == ("acl-exp", "running", 4)
            assert got["one"]["overview"]["id"] == "acl-exp"
            assert got["typo"].status_code == 404 and "acl-exp" in got["typo"].json()["error"]
            assert got["series"].status_code == 200, got["series"].text
            assert got["heatmap"].status_code == 200, got["heatmap"].text
            assert got["heatmap"].json()["products"] == 4
            assert got["product"].status_code == 200, got["product"].text
            assert got["product"].json()["in_force"]["experiment"] == "acl-exp"
            assert [d["id"] for d in got["drafts"]["drafts"]] == ["acl-draft"]
            assert got["draft"]["spec"]["products"] == draft["products"]
            assert got["list"]["counts"]["drafts"] == 1

            e = keys.experiment(p, spec.id)
            store = Store(c_redis, p)
            refusals = [
                await _refused(c_redis.hset(f"{e}:state", "status", "stopped"), "console HSET"),
                await _refused(c_redis.set(keys.clock(p), "0"), "console SET the clock"),
                await _refused(c_redis.delete(f"{e}:spec"), "console DEL"),
                await _refused(store.set_status(spec.id, "stopped"), "console status"),
                await _refused(c_redis.hdel(keys.drafts(p), "acl-draft"), "console drafts"),
            ]
            assert all(refusals)
            # its Health section reads the panel and the sales totals, as the operator's
            # report does: read, never written
            health = got["health"]
            assert health.status_code == 200, health.text
            assert {c["key"] for c in health.json()["checks"]} == {
                "sample_ratio", "sales", "dead_letters", "flips", "freshness", "balance",
                "exposure",
            }  # fmt: skip
            sums = keys.pattern(p, "sums").replace("*", spec.id, 1).replace("*", "0")
            await c_redis.get(sums)  # allowed (NOPERM would raise)
            assert await _refused(c_redis.set(sums, b"x"), "console panel write")
            assert await _refused(c_redis.hincrby(f"{e}:totals", "events:ok", 1), "totals")
        finally:
            await c_redis.aclose()
            await driver.aclose()
            await controller.stop()
