"""A console request that kept its user waiting is in the console's log: the middleware that
times requests (streams.console.metrics.MeasureRequests) warns with the route's template and
the seconds before the answer began, or that none began. A live stream's answer begins at
once and is not slow however long it stays open. The app is a plain ASGI app whose slow
handler takes twice the limit (the delay is the behaviour timed, not a synchronisation)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from streams.console.metrics import ConsoleMetrics, MeasureRequests


def _app(slow: float) -> TestClient:
    async def held(request: Request) -> PlainTextResponse:
        await asyncio.sleep(slow * 2)
        return PlainTextResponse("late")

    async def quick(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def stream(request: Request) -> StreamingResponse:
        async def body():  # type: ignore[no-untyped-def]
            yield b"first\n"
            await asyncio.sleep(slow * 2)  # the stream stays open past the limit
            yield b"last\n"

        return StreamingResponse(body())

    app = Starlette(routes=[Route("/held/{n}", held), Route("/quick", quick),
                            Route("/stream", stream)])  # fmt: skip
    measured = MeasureRequests(app, ConsoleMetrics(CollectorRegistry()), slow=slow)
    return TestClient(measured)  # type: ignore[arg-type]


def test_a_slow_answer_is_logged_with_its_route_and_a_quick_one_or_a_stream_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _app(slow=0.2)
    with caplog.at_level(logging.WARNING, logger="pricelab.console"):
        assert client.get("/quick").text == "ok"
        assert client.get("/stream").text == "first\nlast\n"
        assert caplog.records == []
        assert client.get("/held/7").text == "late"  # 0.4 s
    [record] = caplog.records
    said = record.getMessage()
    assert said.startswith("GET /held/{n}: answered 200 after ") and said.endswith(" s")
    assert float(said.split(" after ")[1].removesuffix(" s")) >= 0.2
