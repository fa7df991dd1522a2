"""Identical concurrent list requests share one read, and none is served a read that began
before it arrived: a change is in the answer to the first request after it
(streams.console.shared; issue #55's open pages against the analysis cycle)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
import pytest

from streams.console.shared import RenderedOnce, SharedReads


class _Source:
    """A read whose value is ``state`` when it begins, held until ``release`` is set."""

    def __init__(self) -> None:
        self.state = 1
        self.began = asyncio.Event()
        self.release = asyncio.Event()
        self.keys: list[Any] = []

    async def read(self, key: Any) -> tuple[Any, int]:
        seen = self.state  # what the read reads, when it begins
        self.keys.append(key)
        self.began.set()
        await self.release.wait()
        return key, seen


async def _until_waiting(tasks: list[asyncio.Task[Any]]) -> None:
    """Let each task run up to where it waits (a loop turn per hop is enough)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)


async def test_identical_concurrent_requests_do_one_read() -> None:
    src = _Source()
    shared = SharedReads(src.read)
    tasks = [asyncio.create_task(shared.get("all")) for _ in range(10)]
    await src.began.wait()
    await _until_waiting(tasks)
    src.release.set()
    got = await asyncio.gather(*tasks)
    assert got == [("all", 1)] * 10
    assert src.keys == ["all"]
    assert shared.reads == 1


async def test_a_request_during_a_read_gets_the_next_read_shared_with_its_peers() -> None:
    """A read under way began before the change: the requests that came after the change
    wait for one read of their own, which sees it."""
    src = _Source()
    shared = SharedReads(src.read)
    first = asyncio.create_task(shared.get("all"))
    await src.began.wait()
    src.state = 2  # a change, after the first read began
    later = [asyncio.create_task(shared.get("all")) for _ in range(5)]
    await _until_waiting(later)
    assert src.keys == ["all"]  # nobody reads again while the first read runs
    src.release.set()
    assert await first == ("all", 1)
    assert await asyncio.gather(*later) == [("all", 2)] * 5
    assert shared.reads == 2


async def test_a_change_is_in_the_next_request_after_it() -> None:
    src = _Source()
    src.release.set()
    shared = SharedReads(src.read)
    assert await shared.get("all") == ("all", 1)
    src.state = 2
    assert await shared.get("all") == ("all", 2)
    assert shared.reads == 2


async def test_different_keys_do_not_share() -> None:
    src = _Source()
    shared = SharedReads(src.read)
    tasks = [asyncio.create_task(shared.get(k)) for k in ("all", ("running", ""), "all")]
    await _until_waiting(tasks)
    src.release.set()
    assert await asyncio.gather(*tasks) == [("all", 1), (("running", ""), 1), ("all", 1)]
    assert sorted(map(str, src.keys)) == ["('running', '')", "all"]


async def test_a_failed_read_raises_in_each_of_its_requests_and_the_next_reads_again() -> None:
    calls = 0
    gate = asyncio.Event()

    async def read(key: str) -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 1:
            raise OSError("redis went away")
        return calls

    shared = SharedReads(read)
    tasks = [asyncio.create_task(shared.get("all")) for _ in range(3)]
    await _until_waiting(tasks)
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["redis went away"] * 3
    assert await shared.get("all") == 2


async def test_a_request_that_goes_away_does_not_cancel_the_others_read() -> None:
    src = _Source()
    shared = SharedReads(src.read)
    gone, stays = (asyncio.create_task(shared.get("all")) for _ in range(2))
    await src.began.wait()
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    src.release.set()
    assert await stays == ("all", 1)
    assert shared.reads == 1


def test_a_document_is_rendered_once_and_another_anew() -> None:
    made: list[dict[str, Any]] = []

    def render(doc: Any) -> str:
        made.append(doc)
        return f"<p>{doc['n']}</p>"

    once = RenderedOnce(render, kept=2)
    doc = {"n": 1}
    assert [once(doc) for _ in range(5)] == ["<p>1</p>"] * 5
    equal = {"n": 1}  # an equal document of another read: rendered anew (it may differ)
    assert once(equal) == "<p>1</p>"
    doc["n"] = 2  # not done to a shared document; shown here: the first rendering is kept
    assert once(doc) == "<p>1</p>"
    assert len(made) == 2 and made[1] is equal
    third = {"n": 3}
    assert once(third) == "<p>3</p>"  # the oldest of the two kept goes
    assert once(doc) == "<p>2</p>"
    assert once.renders == 4


# ------------------------------------------------------------------ through the console's routes
class _Arrivals(SharedReads[Any, Any]):
    """Tells when ``n`` requests have come to the shared read."""

    def __init__(self, read: Any, n: int) -> None:
        super().__init__(read)
        self.n, self.all_in = n, asyncio.Event()

    async def get(self, key: Any) -> Any:
        self.n -= 1
        if self.n == 0:
            self.all_in.set()
        return await super().get(key)


@pytest.fixture
def users_file(tmp_path: Any) -> Any:
    from tests.unit.streams.console.test_console_app import hash_line

    path = tmp_path / "users"
    path.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    return path


async def test_open_list_pages_asking_at_once_share_the_store_reads(users_file: Any) -> None:
    """Ten list pages redrawing at once (as on a look): the first request's read, and at most
    one more that every request arriving after that read began shares; never one each. A
    status changed afterwards is in the next request's answer."""
    from controller.settings import ConsoleSettings, Settings
    from streams.console import auth
    from streams.console.app import _ENV, Console, build_app
    from tests.unit.streams.console.test_console_app import _Feed, _state, _Store

    class _Counted(_Store):
        def __init__(self, states: Any) -> None:
            super().__init__(states)
            self.reads = 0
            self.gate = asyncio.Event()

        async def listed_experiments(self) -> Any:  # type: ignore[override]
            self.reads += 1
            await self.gate.wait()
            return list(self.states.values())

    store = _Counted([_state("shoes", 2), _state("hats", -1)])
    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(settings, auth.Users.load(users_file), store, _Feed({}))  # type: ignore[arg-type]
    console.lists = arrivals = _Arrivals(console.lists._read, 10)  # noqa: SLF001
    transport = httpx2.ASGITransport(app=build_app(console, lifespan_close=False))
    async with httpx2.AsyncClient(transport=transport, base_url="http://console") as client:
        r = await client.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200, r.text
        renders = _ENV.filters["experiments_list"].renders
        pages = [
            asyncio.create_task(client.get(path))
            for path in ["/api/experiments", "/experiments"] * 5
        ]
        await arrivals.all_in.wait()
        store.gate.set()
        answers = await asyncio.gather(*pages)
        assert [a.status_code for a in answers] == [200] * 10
        assert 1 <= store.reads <= 2
        # the table of the five pages: once per read that served one of them
        assert _ENV.filters["experiments_list"].renders - renders <= store.reads
        tables = {a.text[a.text.index('<div id="list"') :] for a in answers[1::2]}
        assert len(tables) <= store.reads and all("shoes" in t for t in tables)
        assert {e["state"] for e in answers[0].json()["experiments"]} == {"running", "created"}
        reads = store.reads
        store.states["hats"] = _state("hats", 0)  # hats starts: its state moves
        r = await client.get("/api/experiments")
        assert store.reads == reads + 1
        assert {e["id"]: e["state"] for e in r.json()["experiments"]}["hats"] == "running"


async def test_open_pages_of_an_experiment_redrawing_at_once_share_its_reads(
    users_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten open pages of one experiment redraw their live parts at once (as on its look):
    at most two reads of it between them; a look that arrives afterwards is in the next."""
    from controller.settings import ConsoleSettings, Settings
    from streams.client.history import Trail
    from streams.console import auth, views
    from streams.console.app import Console, build_app
    from tests.unit.streams.console.test_console_app import VERDICT, _Feed, _state, _Store

    async def read_trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id)

    monkeypatch.setattr(views, "read_trail", read_trail)  # the topics stood in for
    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])

    class _Gated(_Feed):
        def __init__(self, docs: Any) -> None:
            super().__init__(docs)
            self.reads = 0
            self.gate = asyncio.Event()

        async def docs(self, exp_id: str) -> Any:
            self.reads += 1
            await self.gate.wait()
            return list(self._docs.get(exp_id, []))

    feed = _Gated({"shoes": []})
    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(settings, auth.Users.load(users_file), _Store([_state("shoes", 2)]), feed)  # type: ignore[arg-type]
    console.pages = arrivals = _Arrivals(console.pages._read, 10)  # noqa: SLF001
    transport = httpx2.ASGITransport(app=build_app(console, lifespan_close=False))
    async with httpx2.AsyncClient(transport=transport, base_url="http://console") as client:
        r = await client.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200, r.text
        pages = [
            asyncio.create_task(client.get(path))
            for path in ["/api/experiments/shoes", "/experiments/shoes/results"] * 5
        ]
        await arrivals.all_in.wait()
        feed.gate.set()
        answers = await asyncio.gather(*pages)
        assert [a.status_code for a in answers] == [200] * 10
        assert 1 <= feed.reads <= 2
        assert answers[0].json()["verdict"] is None
        reads = feed.reads
        feed._docs["shoes"].append(VERDICT)  # noqa: SLF001 - its first look arrives
        r = await client.get("/api/experiments/shoes")
        assert feed.reads == reads + 1
        assert r.json()["verdict"]["verdict"] == "keep_running"
