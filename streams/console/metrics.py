"""The console's Prometheus metrics, served at ``/metrics``: request latency by route, the
live streams open, and the acts by outcome. Created once, with an injectable registry."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pricelab.console")

#: a request whose answer began later than this many seconds after it arrived is logged
SLOW_ANSWER_S = 5.0


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=r)
        self.request_seconds = Histogram(
            "pricelab_console_request_seconds",
            "Console request latency, to the end of the response (a live stream: until it closes)",
            ["route", "method", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.live_streams = Gauge(
            "pricelab_console_live_streams", "Live streams (server-sent events) open", registry=r
        )
        self.acts = Counter(
            "pricelab_console_acts",
            "Acts sent from the console, by command and outcome (accepted, refused: by the "
            "controller, or by the console before sending)",
            ["command", "outcome"],
            registry=r,
        )


class MeasureRequests:
    """ASGI middleware: each HTTP request's latency, labelled by its route's path template
    (``/api/experiments/{exp_id}``, never the id: bounded labels) and status. A request whose
    answer began more than ``slow`` seconds after it arrived (or never began) is logged as a
    warning with its route: a page that kept a user waiting is in the console's log."""

    def __init__(self, app: ASGIApp, metrics: ConsoleMetrics, slow: float = SLOW_ANSWER_S) -> None:
        self.app = app
        self.metrics = metrics
        self.slow = slow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [0]
        began = [0.0]

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                began[0] = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            end = time.perf_counter()
            self.metrics.request_seconds.labels(path, method, str(status[0] or 500)).observe(
                end - t0
            )
            waited = (began[0] or end) - t0
            if waited > self.slow:
                log.warning(
                    "%s %s: %s after %.1f s", method, path,
                    f"answered {status[0]}" if began[0] else "no answer", waited,
                )  # fmt: skip
