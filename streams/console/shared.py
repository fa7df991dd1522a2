"""Identical concurrent reads done once: the console's open pages ask for the same document at
the same moment (every open list page redraws on each look), and each used to build its own.

:class:`SharedReads` gives every request a read that *began after the request arrived*, so
nothing it returns is older than the request: a change made before a request is in its answer
(there is no cache to go stale, and no version to trust). Requests for the same key that
arrive while no read of that key has begun yet wait for the same one; a request that arrives
while one is under way waits for it to end, then for the next, which it shares with every
request that arrived meanwhile. Ten pages asking at once cost at most two reads, not ten
(benchmarks/bench_console.py, part 4).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Slot(Generic[V]):
    #: the read under way (it began before some requests now waiting arrived)
    running: asyncio.Task[V] | None = None
    #: the read that begins when ``running`` ends: every request arriving meanwhile joins it
    next: asyncio.Task[V] | None = None


class SharedReads(Generic[K, V]):
    """``read(key)`` shared between the requests for ``key`` it can serve (see the module).

    A read runs in a task of its own: a request that goes away (its client disconnected)
    does not cancel the read the others wait for. A read that raises raises in each of its
    requests."""

    def __init__(self, read: Callable[[K], Awaitable[V]]) -> None:
        self._read = read
        self._slots: dict[K, _Slot[V]] = {}
        #: reads begun, all keys
        self.reads = 0

    async def get(self, key: K) -> V:
        """The value of a read of ``key`` begun after this call."""
        slot = self._slots.setdefault(key, _Slot())
        if slot.next is None:
            slot.next = asyncio.ensure_future(self._flight(key, slot, slot.running))
            slot.next.add_done_callback(_retrieved)
        return await asyncio.shield(slot.next)

    async def _flight(self, key: K, slot: _Slot[V], before: asyncio.Task[V] | None) -> V:
        if before is not None:
            await asyncio.wait([before])  # its outcome is its own requests'
        me = asyncio.current_task()
        # from here on a new request cannot be served by this read: it began before it came
        slot.next = None
        slot.running = me  # type: ignore[assignment]
        self.reads += 1
        try:
            return await self._read(key)
        finally:
            if slot.running is me:
                slot.running = None
            if slot.running is None and slot.next is None and self._slots.get(key) is slot:
                del self._slots[key]


def _retrieved(task: asyncio.Task[object]) -> None:
    """Mark a read's failure as seen: its requests may all have gone away."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()


class RenderedOnce(Generic[V]):
    """``render(doc)`` once per document object: the requests one shared read served hold the
    same document, so the page's part that depends on it alone (the experiments list's
    table: most of the page's rendering) is rendered once for all of them. The newest
    ``kept`` documents' renderings are kept, each beside its document, so that an id reused
    by another object is never taken for it."""

    def __init__(self, render: Callable[[object], V], kept: int = 8) -> None:
        self._render = render
        self._kept = kept
        self._made: dict[int, tuple[object, V]] = {}
        #: renderings made, for tests
        self.renders = 0

    def __call__(self, doc: object) -> V:
        made = self._made.get(id(doc))
        if made is None or made[0] is not doc:
            self._made.pop(id(doc), None)
            while len(self._made) >= self._kept:
                self._made.pop(next(iter(self._made)))
            made = self._made[id(doc)] = (doc, self._render(doc))
            self.renders += 1
        return made[1]
