"""A sales batch waits for its replicas (``PRICELAB_REDIS__WAIT_REPLICAS``): each ingest
script is followed, in one pipeline on its connection, by a barrier write and ``WAIT``; fewer
replicas than asked is an outage the caller retries (controller/store/panel.py)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import NoScriptError

from controller.store.base import UNAVAILABLE
from controller.store.panel import (
    PanelStore,
    ReplicasBehind,
    ReplicaWait,
    WriteLost,
    replicated_enough,
)


@pytest.mark.parametrize(
    ("acknowledged", "wanted", "enough"),
    [(0, 1, False), (1, 1, True), (2, 1, True), (1, 2, False), (0, 0, True), (3, 3, True)],
)
def test_enough_replicas(acknowledged: int, wanted: int, enough: bool) -> None:
    assert replicated_enough(acknowledged, wanted) is enough


def test_too_few_replicas_is_an_outage_the_callers_retry() -> None:
    assert isinstance(ReplicasBehind("x"), UNAVAILABLE)


class _Pipe:
    """Records the commands queued on it; execute() answers them from ``answers``."""

    def __init__(self, owner: _Redis) -> None:
        self.owner = owner
        self.queued: list[tuple[Any, ...]] = []

    def evalsha(self, *args: Any) -> None:
        self.queued.append(("EVALSHA", *args))

    def incr(self, key: str) -> None:
        self.queued.append(("INCR", key))

    def wait(self, replicas: int, timeout: int) -> None:
        self.queued.append(("WAIT", replicas, timeout))

    def hmget(self, key: str, fields: list[str]) -> None:
        self.queued.append(("HMGET", key, *fields))

    async def execute(self) -> list[Any]:
        self.owner.sent.append(self.queued)
        answer = self.owner.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


class _Redis:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[list[tuple[Any, ...]]] = []
        self.loaded: list[str] = []

    def register_script(self, text: str) -> Any:
        class _Script:
            sha = "sha-of-ingest"
            script = text

            async def __call__(self, **kw: Any) -> Any:
                raise AssertionError("with WAIT, the script goes through the pipeline")

        return _Script()

    def pipeline(self, transaction: bool) -> _Pipe:
        assert transaction is False  # a MULTI would hold the script's effects to EXEC
        return _Pipe(self)

    async def script_load(self, text: str) -> str:
        self.loaded.append(text)
        return "sha-of-ingest"


WAIT = ReplicaWait(replicas=1, timeout_ms=250)


def _store(answers: list[Any]) -> tuple[PanelStore, _Redis]:
    redis = _Redis(answers)
    return PanelStore(redis, "pl"), redis  # type: ignore[arg-type]


async def test_the_script_the_barrier_and_wait_go_in_one_pipeline() -> None:
    store, redis = _store([["ok,dup", 7, 1]])
    got = await store._ingest_one("e1", [b"head", b"records"], WAIT)
    assert got == ["ok", "dup"]
    assert redis.sent == [
        [
            (
                "EVALSHA",
                "sha-of-ingest",
                1,
                "pl:exp:{e1}:state",
                "pl:exp:{e1}",
                b"head",
                b"records",
            ),
            ("INCR", "{pl}:replicated"),
            ("WAIT", 1, 250),
        ]
    ]


async def test_fewer_replicas_than_asked_raise_and_say_so() -> None:
    store, _ = _store([["ok", 8, 0]])
    with pytest.raises(ReplicasBehind) as got:
        await store._ingest_one("e1", [b"h", b"r"], ReplicaWait(2, 1000))
    said = str(got.value)
    assert said.startswith("0 of the 2 Redis replicas") and "PRICELAB_REDIS__WAIT_REPLICAS" in said
    assert "1000 ms" in said


async def test_a_script_the_server_forgot_is_loaded_once_and_sent_again() -> None:
    store, redis = _store([NoScriptError("NOSCRIPT No matching script"), ["ok", 9, 1]])
    assert await store._ingest_one("e1", [b"h", b"r"], WAIT) == ["ok"]
    assert len(redis.loaded) == 1 and "ingest" in redis.loaded[0].lower()
    assert len(redis.sent) == 2 and redis.sent[0] == redis.sent[1]


async def test_a_script_still_missing_after_its_load_is_not_retried_for_ever() -> None:
    store, redis = _store([NoScriptError("NOSCRIPT"), NoScriptError("NOSCRIPT")])
    with pytest.raises(NoScriptError):
        await store._ingest_one("e1", [b"h", b"r"], WAIT)
    assert len(redis.sent) == 2


async def test_the_barrier_alone_for_a_batch_without_a_script() -> None:
    store, redis = _store([[10, 1], [11, 0]])
    await store.replicated(WAIT)
    assert redis.sent == [[("INCR", "{pl}:replicated"), ("WAIT", 1, 250)]]
    with pytest.raises(ReplicasBehind):
        await store.replicated(WAIT)


async def test_a_guarded_barrier_reads_what_the_write_left_in_the_same_pipeline() -> None:
    """A decision's barrier reads its ``seq`` (and a creation its state) on the server the
    barrier reaches: redis-py sends a pipeline cut by a lost connection again, to whichever
    primary the sentinels name, where WAIT alone would pass without the write."""
    store, redis = _store([[["5", "paused"], 12, 1]])
    await store.replicated(WAIT, "d", ("pl:exp:{e1}:state", {"seq": "5", "status": None}))
    assert redis.sent == [
        [
            ("HMGET", "pl:exp:{e1}:state", "seq", "status"),
            ("INCR", "{pl}:replicated"),
            ("WAIT", 1, 250),
        ]
    ]


@pytest.mark.parametrize("held", [[None, "running"], ["4", "running"], ["5", None]])
async def test_a_primary_without_the_guarded_write_is_a_lost_write(held: list[Any]) -> None:
    store, _ = _store([[held, 12, 1]])
    guard = ("pl:exp:{e1}:state", {"seq": "5", "status": None})
    with pytest.raises(WriteLost) as got:
        await store.replicated(WAIT, "experiment e1's decision 5", guard)
    assert "lacks experiment e1's decision 5" in str(got.value)
    assert isinstance(got.value, UNAVAILABLE)  # an outage: the command is tried again whole


async def test_a_lost_write_is_said_before_too_few_replicas() -> None:
    store, _ = _store([[[None], 12, 0]])
    with pytest.raises(WriteLost):
        await store.replicated(WAIT, "x", ("k", {"seq": "5"}))


def test_only_the_controller_may_wait_and_bump_the_barrier() -> None:
    from controller.store.acl import acl_lines

    lines = acl_lines("pl", {"controller": "a", "analysis": "b", "operator": "c"})
    users = {line.split()[1]: line for line in lines}
    controller = users.pop("pricelab-controller")
    assert " +wait " in controller
    incrby = next(w for w in controller.split("(") if w.startswith("+incrby "))
    assert "%RW~{pl}:replicated" in incrby
    for line in users.values():
        assert "+wait" not in line and "{pl}:replicated" not in line
