"""The experiment page's Health section: its document, put together from the client's views
(streams.client.health's checks over the panel, the sales totals, the dead letters, the
audit trail and the estimates the console follows). The section is a resource of its own
(``GET /api/experiments/{id}/health``), fetched after the page, so that reading the panel
and the dead-letter topic never slows the page's other parts."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from controller.settings import Settings
from controller.store import Store
from streams.client.health import panel_source, read_dead_letters, read_health
from streams.client.history import TrailFollower, read_trail
from streams.client.known import known
from streams.client.letter_follower import LetterFollower
from streams.console.feed import EstimatesFeed

#: the dead letters as read: by reason and the product their sale names (None: none)
Letters = dict[tuple[str, str | None], int]

#: seconds the dead-letter counts are shown before the topic is read again: every open page
#: fetches its health after each look, and the topic is every experiment's
LETTERS_TTL = 15.0
#: the same, when one follower keeps the counts (streams.client.letter_follower): a read
#: with nothing new is two offset requests, so the counts are shared only by the fetches
#: that one look sets off together
FOLLOWED_LETTERS_TTL = 1.0
#: the experiments whose panel the console keeps between health fetches, the latest asked
#: (a panel source keeps column buffers sized for the whole experiment: kept for every
#: experiment ever shown, a console's memory grew with each big one)
PANELS_KEPT = 4


@dataclass
class HealthReads:
    """What the console keeps between health fetches: a panel source for each of the
    :data:`PANELS_KEPT` experiments asked last (a compacted period is read once; ``panels``:
    one source for every experiment, a test's stand-in) and the latest dead-letter counts
    (read at most once every :data:`LETTERS_TTL` seconds, one read shared by the fetches
    that wait for it)."""

    panels: Any = None
    ttl: float = LETTERS_TTL
    panels_kept: int = PANELS_KEPT
    _sources: OrderedDict[str, Any] = field(default_factory=OrderedDict, repr=False)
    _letters: Letters | None = None
    _at: float = -math.inf
    _reading: asyncio.Future[Letters] | None = field(default=None, repr=False)

    async def letters(self, read: Callable[[], Awaitable[Letters]]) -> Letters:
        loop = asyncio.get_running_loop()
        if self._letters is not None and loop.time() - self._at < self.ttl:
            return self._letters
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(read())
            self._reading.add_done_callback(self._keep)
        return await asyncio.shield(self._reading)

    async def panels_of(self, exp_id: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """The panel source of ``exp_id``: kept, else ``make()``'s, kept in place of the one
        asked longest ago."""
        if self.panels is not None:
            return self.panels
        source = self._sources.pop(exp_id, None)
        if source is None:
            source = await make()
        self._sources[exp_id] = source
        while len(self._sources) > self.panels_kept:
            self._sources.popitem(last=False)
        return source

    def _keep(self, done: asyncio.Future[Letters]) -> None:
        """Keep a read's counts as soon as it is done (a failed read keeps nothing: the next
        fetch reads again)."""
        if not done.cancelled() and done.exception() is None:
            self._letters, self._at = done.result(), asyncio.get_running_loop().time()


async def health_view(
    settings: Settings,
    store: Store,
    feed: EstimatesFeed,
    kept: HealthReads,
    exp_id: str,
    trails: TrailFollower | None = None,
    follower: LetterFollower | None = None,
) -> dict[str, Any]:
    """The seven checks of ``exp_id``, each with its flag and sentence, and the worst flag
    (streams.client.health.read_health); an unknown id raises UnknownExperiment. The trail
    comes from ``trails``, the console's one reader of it, and the dead letters from
    ``follower``, its one reader of those, when given (else each is read from its topic's
    start)."""
    await known(store, exp_id)
    panels = await kept.panels_of(exp_id, lambda: panel_source(settings, store))
    # the two topic reads side by side (the dead letters' ends on the console's idle rule)
    docs, trail, letters = await asyncio.gather(
        feed.docs(exp_id),
        trails.trail(exp_id)
        if trails is not None
        else read_trail(settings, exp_id, timeout=settings.console.command_timeout),
        kept.letters(
            follower.counts
            if follower is not None
            else lambda: read_dead_letters(settings, settings.console.estimates_idle)
        ),
    )
    return await read_health(settings, store, panels, exp_id, docs, trail.records, letters)
