"""A console request that kept its user waiting is in the console's log: the middleware that
times requests (streams.console.metrics.MeasureRequests) warns with the route's template and
the seconds before the answer began, or that none began. A live stream's answer begins at
once and is not slow however long it stays open. The app is a plain ASGI app whose slow
handler takes twice the limit (the delay is the behaviour timed, not a synchronisation)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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
    client = _app(slow=0.5)
    with caplog.at_level(logging.WARNING, logger="pricelab.console"):
        assert client.get("/quick").text == "ok"
        assert client.get("/stream").text == "first\nlast\n"
        assert caplog.records == []
        assert client.get("/held/7").text == "late"  # 1 s
    [record] = caplog.records
    said = record.getMessage()
    assert said.startswith("GET /held/{n}: answered 200 after ") and said.endswith(" s")
    assert float(said.split(" after ")[1].removesuffix(" s")) >= 0.5


def test_a_request_that_never_answers_is_logged_as_none(caplog: pytest.LogCaptureFixture) -> None:
    """An app that fails before it answers (no error page under it: a bare ASGI app) is
    logged as no answer, and its error goes on to the server."""

    async def fails(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.6)  # the behaviour timed: longer than the limit
        raise RuntimeError("broken")

    measured = MeasureRequests(fails, ConsoleMetrics(CollectorRegistry()), slow=0.3)
    with (
        caplog.at_level(logging.WARNING, logger="pricelab.console"),
        pytest.raises(RuntimeError, match="broken"),
    ):
        TestClient(measured).get("/anything")  # type: ignore[arg-type]
    [record] = caplog.records
    said = record.getMessage()
    assert said.startswith("GET unmatched: no answer after ") and said.endswith(" s"), said


def test_the_console_process_writes_its_own_warnings_and_not_its_clients(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As ``pricelab console`` runs: the CLI's entry point has put a null handler on the root
    logger (a command's clients stay quiet), then the console adds its stderr handler for its
    own loggers. A slow answer's warning and the trail reader's reach stderr; aiokafka's do
    not."""
    from streams.console.cli import CONSOLE_LOG, console_logging

    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)
    try:
        console_logging()
        console_logging()  # a second call adds nothing
        logging.getLogger("pricelab.console").warning("GET /experiments: no answer after 6.0 s")
        logging.getLogger("pricelab.trail").warning("the read stopped short")
        logging.getLogger("aiokafka.conn").warning("connection refused")
        err = capfd.readouterr().err
        lines = err.splitlines()
        assert len(lines) == 2, err
        assert lines[0].endswith(
            "WARNING pricelab.console: GET /experiments: no answer after 6.0 s"
        ) and lines[1].endswith("WARNING pricelab.trail: the read stopped short")
        assert "connection refused" not in err
    finally:
        root.removeHandler(null)
        for name in ("pricelab", "streams"):
            logger = logging.getLogger(name)
            for h in [h for h in logger.handlers if h.get_name() == CONSOLE_LOG]:
                logger.removeHandler(h)
