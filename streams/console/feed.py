"""The estimates the console shows, kept live: one reader of the estimates topic per
experiment that a page or the API asked about (streams.client.estimates.all_estimates, the
reader ``pricelab estimates --follow`` uses), holding every message read so far and telling
each open page's live stream when a new one arrives.

Each reader first catches up with the topic (its ``idle`` rule), then follows it until the
console stops. A reader that fails (the broker gone) is started again on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from controller.settings import Settings
from core.errors import PricelabError
from streams.client.estimates import all_estimates

log = logging.getLogger(__name__)


@dataclass
class _Reader:
    docs: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    task: asyncio.Task[Any] | None = None
    error: BaseException | None = None


class EstimatesFeed:
    """Every estimate message of the experiments asked about (see the module)."""

    def __init__(self, settings: Settings, idle: float | None = None) -> None:
        self.settings = settings
        self.idle = settings.console.estimates_idle if idle is None else idle
        self.stop = asyncio.Event()
        self._readers: dict[str, _Reader] = {}
        #: the live streams of every experiment's news (the list page)
        self._any: set[asyncio.Queue[dict[str, Any]]] = set()

    def _reader(self, experiment: str) -> _Reader:
        r = self._readers.get(experiment)
        if r is None or (r.task is not None and r.task.done()):
            r = _Reader(listeners=r.listeners if r is not None else set())
            self._readers[experiment] = r
            r.task = asyncio.create_task(self._follow(experiment, r))
        return r

    async def _follow(self, experiment: str, r: _Reader) -> None:
        def caught_up(docs: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
            r.docs.extend(docs)
            r.ready.set()
            return lambda doc: self._publish(r, doc)

        try:
            await all_estimates(
                self.settings, experiment, self.idle, then=caught_up, stop=self.stop
            )
        except (PricelabError, OSError) as exc:
            log.warning("the estimates of %s could not be read: %s", experiment, exc)
            r.error = exc
            r.ready.set()

    def _publish(self, r: _Reader, doc: dict[str, Any]) -> None:
        r.docs.append(doc)
        for q in (*r.listeners, *self._any):
            q.put_nowait(doc)

    async def docs(self, experiment: str) -> list[dict[str, Any]]:
        """Every estimate message of ``experiment`` read so far (once the reader has caught
        up); a reader that failed raises its error (and is started again next time)."""
        r = self._reader(experiment)
        await r.ready.wait()
        if r.error is not None:
            raise r.error
        return list(r.docs)

    async def many(self, experiments: list[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`docs` of each experiment, read side by side."""
        got = await asyncio.gather(*(self.docs(e) for e in experiments))
        return dict(zip(experiments, got, strict=True))

    @contextlib.asynccontextmanager
    async def listen(self, experiment: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives each new estimate message of ``experiment`` while open."""
        r = self._reader(experiment)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        r.listeners.add(q)
        try:
            yield q
        finally:
            r.listeners.discard(q)

    @contextlib.asynccontextmanager
    async def listen_any(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives each new estimate message of every experiment read."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._any.add(q)
        try:
            yield q
        finally:
            self._any.discard(q)

    def listening(self) -> int:
        """How many live streams are open."""
        return len(self._any) + sum(len(r.listeners) for r in self._readers.values())

    async def close(self) -> None:
        self.stop.set()
        tasks = [r.task for r in self._readers.values() if r.task is not None]
        for t in tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(t), 5)
        for t in tasks:
            t.cancel()
