"""The experiment page's charts, as JSON the page draws (uPlot, static/charts.js):

- ``GET /api/experiments/{id}/series``: each metric's running estimate look by look, arm by
  arm, with its 95% and anytime-valid intervals; each look's verdict, marked where it
  changed; and a price ladder's demand and profit curves with the recommended price
  (streams.client.series over the estimates the page already reads);
- ``GET /api/experiments/{id}/assignments``: the heatmap of products x periods, aggregated
  here to at most 200 x 200 cells (streams.client.heatmap);
- ``GET /api/experiments/{id}/products/{product}``: a product's message in force, as
  ``pricelab assignments`` shows it, and its assignment in each period.

The heatmap of an experiment is kept once made: it depends only on the experiment (created
once: its creation time), the freezes that apply to it and a triggered design's triggers,
and a million products take about a second a period to draw. The period in force and the
pauses are laid over it at each request. It is also made, ahead of any request, when the
console hears of the experiment's creation (:meth:`Heatmaps.warm`): its own launch, or the
``created`` status of one created elsewhere. One is made at a time, in the background, so
that the first to open a big experiment's page does not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from streams.client.estimates import latest_verdict
from streams.client.heatmap import (
    assignment_in_force,
    heatmap_source,
    product_history,
    read_schedule,
)
from streams.client.known import known
from streams.client.series import ladder_curves, running_estimates
from streams.console.views import looks_view

log = logging.getLogger(__name__)

#: heatmaps kept per console (each a few hundred kB)
KEPT = 32


def _word(headline: str) -> str:
    """The verdict's word from its headline (``render_verdict``'s first line:
    ``VERDICT after N periods (as of T): WORD - why``)."""
    return headline.split("): ", 1)[-1].split(" - ", 1)[0]


async def series_view(store: Any, feed: Any, exp_id: str) -> dict[str, Any]:
    """The Over time and Price ladder charts' document (see the module)."""
    await known(store, exp_id)
    docs = await feed.docs(exp_id)
    verdict = latest_verdict(docs)
    lead = verdict.get("metric") if verdict is not None else None
    looks = [lk | {"word": _word(lk["headline"])} for lk in reversed(looks_view(docs))]
    return {
        "experiment": exp_id,
        "decision_metric": lead,
        "series": running_estimates(docs, lead),
        "verdicts": looks,
        "ladder": ladder_curves(docs, verdict),
    }


class Heatmaps:
    """The heatmaps made so far, by what they depend on; one making at a time per key; and
    the experiments whose heatmap is to be made before anyone asks (:meth:`warm`)."""

    def __init__(self) -> None:
        self._made: dict[tuple[Any, ...], asyncio.Task[dict[str, Any]]] = {}
        self._due: dict[str, Any] = {}  # experiment -> its store, in the order heard of
        self._warming: asyncio.Task[None] | None = None
        #: set at the console's shutdown: a build in progress stops before its next period
        self._stop = threading.Event()

    def warm(self, store: Any, exp_id: str) -> None:
        """Make ``exp_id``'s heatmap in the background (a new experiment's), after those
        already due: one at a time, each off the event loop; at most :data:`KEPT` are due (a
        fleet created at once makes the newest: the older would be pushed out unopened). Call
        it on the event loop. After :meth:`close`, nothing."""
        if self._stop.is_set():
            return
        self._due.setdefault(exp_id, store)
        while len(self._due) > KEPT:  # the oldest due would be pushed out by the newer ones
            self._due.pop(next(iter(self._due)))
        if self._warming is None or self._warming.done():
            self._warming = asyncio.ensure_future(self._warm_due())

    async def _warm_due(self) -> None:
        while self._due:
            exp_id = next(iter(self._due))
            store = self._due.pop(exp_id)
            try:
                await self.get(store, exp_id)
            except Exception as exc:  # noqa: BLE001 - a request makes it again, and says why
                log.warning("the heatmap of %s could not be made ahead: %s", exp_id, exc)

    async def warmed(self) -> None:
        """Return once every heatmap due has been made (or has failed)."""
        while self._warming is not None and not self._warming.done():
            await asyncio.shield(self._warming)

    async def get(self, store: Any, exp_id: str) -> dict[str, Any]:
        await known(store, exp_id)
        key, make, live = await heatmap_source(store, exp_id)
        task = self._made.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # off the event loop, stopped between two periods by close()
            task = asyncio.ensure_future(asyncio.to_thread(make, self._stop))
            self._made[key] = task
            while len(self._made) > KEPT:
                self._made.pop(next(iter(self._made)))
        return dict(await asyncio.shield(task)) | live

    async def close(self) -> None:
        """At the console's shutdown: stop every heatmap being made. A thread cannot be
        killed, so each build checks the stop flag between periods and ends with
        ``BuildStopped`` before its next (a million products take about a second a period);
        the tasks that await the builds (and the one making those due) are cancelled and
        awaited here, without waiting for the threads, so none is left pending and the
        shutdown does not wait for a build."""
        self._stop.set()
        self._due.clear()
        tasks = [t for t in (self._warming, *self._made.values()) if t is not None]
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def product_view(
    settings: Any, store: Any, exp_id: str, product: str
) -> dict[str, Any] | None:
    """``product`` of experiment ``exp_id``: its message in force (``pricelab assignments``'
    view) and its assignment in each period; None when the experiment has no such product."""
    spec, freezes, ctx, period = await read_schedule(store, exp_id)
    if product not in spec.units():
        return None
    in_force = await assignment_in_force(settings, store, product)
    history = await asyncio.to_thread(product_history, spec, product, freezes, ctx)
    return {
        "experiment": exp_id,
        "product": product,
        "period": period if period >= 0 else None,
        "in_force": in_force,
        "history": history,
    }


def routes(
    api: Callable[[Callable[[Request], Awaitable[Any]]], Any],
    need: Callable[[Request, str], Any],
    console: Callable[[Request], Any],
    not_found: Callable[[str], Exception],
) -> list[Route]:
    """The chart routes, wrapped by the app's ``api`` (its refusals), reading after
    ``need(request, "read")``; ``not_found(sentence)`` is the app's 404. The heatmaps are
    the console's own (``console(request).heatmaps``)."""

    async def series(request: Request) -> Any:
        need(request, "read")
        c = console(request)
        return await series_view(c.store, c.feed, request.path_params["exp_id"])

    async def assignments(request: Request) -> Any:
        need(request, "read")
        c = console(request)
        return await c.heatmaps.get(c.store, request.path_params["exp_id"])

    async def product(request: Request) -> Any:
        need(request, "read")
        c = console(request)
        exp_id = request.path_params["exp_id"]
        await known(c.store, exp_id)
        name = request.path_params["product"]
        doc = await product_view(c.settings, c.store, exp_id, name)
        if doc is None:
            raise not_found(f"{name!r} is not a product of experiment {exp_id!r}")
        return doc

    return [
        Route("/api/experiments/{exp_id}/series", api(series)),
        Route("/api/experiments/{exp_id}/assignments", api(assignments)),
        # a product id is any string, "/" too: the page sends it percent-encoded, and the
        # server decodes it before routing
        Route("/api/experiments/{exp_id}/products/{product:path}", api(product)),
    ]
