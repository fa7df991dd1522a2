"""The estimates the console shows, kept live: one reader of the estimates topic for every
experiment (streams.client.estimates.all_estimates, the reader ``pricelab estimates --follow``
uses, asked for every experiment's messages), holding every message read so far by
experiment and telling each open page's live stream when a new one of its experiment arrives.

One reader, not one per experiment: a list of 1,000 experiments would otherwise open 1,000
consumers, each reading the whole topic to keep its own experiment's messages
(benchmarks/bench_console.py). It starts on the first request, first catches up with the
topic (its ``idle`` rule), then follows it until the console stops. A reader that fails (the
broker gone) is started again, from the topic's beginning, on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from controller.settings import Settings
from core.errors import PricelabError
from streams.client.estimates import all_estimates

log = logging.getLogger(__name__)


class EstimatesFeed:
    """Every estimate message of every experiment (see the module)."""

    def __init__(self, settings: Settings, idle: float | None = None) -> None:
        self.settings = settings
        self.idle = settings.console.estimates_idle if idle is None else idle
        self.stop = asyncio.Event()
        #: experiment -> its messages read so far, in the topic's order
        self._docs: dict[str, list[dict[str, Any]]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._error: BaseException | None = None
        #: experiment -> the live streams of its page
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        #: the live streams of every experiment's news (the list page)
        self._any: set[asyncio.Queue[dict[str, Any]]] = set()

    def _reader(self) -> asyncio.Event:
        """The reader, started if it is not running (a failed one: again, from scratch)."""
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._error = None
            self._task = asyncio.create_task(self._follow(self._ready))
        return self._ready

    async def _follow(self, ready: asyncio.Event) -> None:
        def caught_up(docs: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
            by_experiment: dict[str, list[dict[str, Any]]] = {}
            for doc in docs:
                by_experiment.setdefault(str(doc.get("experiment")), []).append(doc)
            self._docs = by_experiment
            ready.set()
            return self._publish

        try:
            await all_estimates(self.settings, None, self.idle, then=caught_up, stop=self.stop)
        except (PricelabError, OSError) as exc:
            log.warning("the estimates topic could not be read: %s", exc)
            self._error = exc
            ready.set()

    def _publish(self, doc: dict[str, Any]) -> None:
        exp = str(doc.get("experiment"))
        self._docs.setdefault(exp, []).append(doc)
        for q in (*self._listeners.get(exp, ()), *self._any):
            q.put_nowait(doc)

    async def _caught_up(self) -> None:
        await self._reader().wait()
        if self._error is not None:
            raise self._error

    async def docs(self, experiment: str) -> list[dict[str, Any]]:
        """Every estimate message of ``experiment`` read so far (once the reader has caught
        up); a reader that failed raises its error (and is started again next time)."""
        await self._caught_up()
        return list(self._docs.get(experiment, ()))

    async def many(self, experiments: list[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`docs` of each experiment."""
        await self._caught_up()
        return {e: list(self._docs.get(e, ())) for e in experiments}

    @contextlib.asynccontextmanager
    async def listen(self, experiment: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives each new estimate message of ``experiment`` while open."""
        self._reader()
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.setdefault(experiment, set()).add(q)
        try:
            yield q
        finally:
            mine = self._listeners.get(experiment, set())
            mine.discard(q)
            if not mine:
                self._listeners.pop(experiment, None)

    @contextlib.asynccontextmanager
    async def listen_any(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives each new estimate message of every experiment."""
        self._reader()
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._any.add(q)
        try:
            yield q
        finally:
            self._any.discard(q)

    def listening(self) -> int:
        """How many live streams are open."""
        return len(self._any) + sum(len(s) for s in self._listeners.values())

    def readers(self) -> int:
        """How many readers of the estimates topic run (at most one)."""
        return int(self._task is not None and not self._task.done())

    async def close(self) -> None:
        self.stop.set()
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        self._task.cancel()
