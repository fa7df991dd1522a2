"""The console's estimates feed: one reader of the estimates topic for every experiment, its
messages kept by experiment, each new one sent to its experiment's live streams and to the
list's; a reader that fails is started again on the next request. The topic is a stand-in
for ``all_estimates`` here (its reading is tested in tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from controller.settings import Settings
from streams.console import feed as feed_module
from streams.console.feed import EstimatesFeed
from streams.errors import ServiceUnavailable


def _doc(exp: str, n: int) -> dict[str, Any]:
    return {"experiment": exp, "estimator": "did", "as_of": f"2026-06-0{n}T00:00:00+00:00"}


class _Topic:
    """What ``all_estimates(settings, None, ...)`` does: hands over what the topic holds,
    then each message published until ``stop`` (or fails, while ``fail`` is set)."""

    def __init__(self, held: list[dict[str, Any]]) -> None:
        self.held = held
        self.new: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.readers = 0
        self.fail = False

    async def __call__(
        self,
        settings: Settings,
        experiment: str | None,
        idle: float,
        then: Callable[[list[dict[str, Any]]], Callable[[dict[str, Any]], None] | None],
        stop: asyncio.Event,
    ) -> list[dict[str, Any]]:
        assert experiment is None  # every experiment's messages, by one reader
        self.readers += 1
        if self.fail:
            raise ServiceUnavailable("the Kafka broker at x did not answer")
        emit = then(list(self.held))
        assert emit is not None
        while not stop.is_set():
            getting = asyncio.ensure_future(self.new.get())
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if getting in done:
                emit(getting.result())
            else:
                getting.cancel()
            stopping.cancel()
        return []


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> _Topic:
    t = _Topic([_doc("shoes", 1), _doc("hats", 1), _doc("shoes", 2)])
    monkeypatch.setattr(feed_module, "all_estimates", t)
    return t


def test_one_reader_serves_every_experiment(topic: _Topic) -> None:
    async def go() -> None:
        feed = EstimatesFeed(Settings(), idle=0.1)
        got = await feed.many([f"e{i}" for i in range(1000)] + ["shoes", "hats"])
        assert topic.readers == 1 and feed.readers() == 1
        assert got["shoes"] == [_doc("shoes", 1), _doc("shoes", 2)]
        assert got["hats"] == [_doc("hats", 1)]
        assert got["e999"] == []
        assert await feed.docs("hats") == [_doc("hats", 1)]
        assert topic.readers == 1
        await feed.close()

    asyncio.run(go())


def test_a_new_message_reaches_its_experiments_streams_and_the_lists(topic: _Topic) -> None:
    async def go() -> None:
        feed = EstimatesFeed(Settings(), idle=0.1)
        await feed.docs("shoes")
        async with (
            feed.listen("shoes") as shoes,
            feed.listen("hats") as hats,
            feed.listen_any() as every,
        ):
            assert feed.listening() == 3
            await topic.new.put(_doc("shoes", 3))
            assert await shoes.get() == _doc("shoes", 3)
            assert await every.get() == _doc("shoes", 3)
            assert hats.empty()
            await topic.new.put(_doc("hats", 2))
            assert await hats.get() == _doc("hats", 2)
            assert await every.get() == _doc("hats", 2)
            assert shoes.empty()
        assert feed.listening() == 0
        assert await feed.docs("shoes") == [_doc("shoes", n) for n in (1, 2, 3)]
        assert topic.readers == 1
        await feed.close()

    asyncio.run(go())


def test_a_reader_that_failed_is_started_again_on_the_next_request(topic: _Topic) -> None:
    async def go() -> None:
        feed = EstimatesFeed(Settings(), idle=0.1)
        topic.fail = True
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            await feed.docs("shoes")
        topic.fail = False
        assert await feed.docs("shoes") == [_doc("shoes", 1), _doc("shoes", 2)]
        assert topic.readers == 2
        await feed.close()

    asyncio.run(go())
