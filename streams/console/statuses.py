"""The experiments' status changes, kept live for the open pages: one reader of the
experiment-events topic for the whole console (streams.client.events.follow_statuses),
started when the first live stream opens, telling each open page's stream of each change
(the list page: of every experiment; an experiment page: of its own).

A reader that fails (the broker gone) is started again when the next live stream opens.
The console's own parts may watch every change too (:meth:`StatusFeed.watch`: the heatmap
of an experiment created elsewhere is made when its ``created`` status is heard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from controller.settings import Settings
from core.errors import PricelabError
from streams.client.events import follow_statuses

log = logging.getLogger(__name__)

#: the key a status change is put under in a live stream's queue, beside estimate messages
#: (which never carry it)
STATUS_KEY = "_status_change"


class StatusFeed:
    """Every status change announced while the console runs (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        #: each open stream's queue, with the experiment it follows (None: every one)
        self._listeners: dict[asyncio.Queue[dict[str, Any]], str | None] = {}
        self._watchers: list[Callable[[dict[str, Any]], None]] = []

    def watch(self, watcher: Callable[[dict[str, Any]], None]) -> None:
        """Call ``watcher`` (on the event loop, quickly) with each change read from now on."""
        self._watchers.append(watcher)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self.ready.clear()
            self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        try:
            await follow_statuses(self.settings, self._publish, self.stop, self.ready.set)
        except (PricelabError, OSError) as exc:
            log.warning("the experiments' status changes could not be read: %s", exc)
        finally:
            self.ready.set()  # a stream that waits for it goes on without

    def _publish(self, change: dict[str, Any]) -> None:
        for watcher in self._watchers:
            watcher(change)
        for q, experiment in list(self._listeners.items()):
            if experiment is None or experiment == change["experiment"]:
                q.put_nowait({STATUS_KEY: change})

    @contextlib.asynccontextmanager
    async def listen(
        self, q: asyncio.Queue[dict[str, Any]], experiment: str | None
    ) -> AsyncIterator[None]:
        """While open, ``q`` receives ``{STATUS_KEY: change}`` for each status change of
        ``experiment`` (None: of every experiment)."""
        self._start()
        self._listeners[q] = experiment
        try:
            yield
        finally:
            self._listeners.pop(q, None)

    async def close(self) -> None:
        self.stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            self._task.cancel()
