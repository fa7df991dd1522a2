"""How many of pricelab's modules a command crosses on its way to its assignments (issue #40:
fewer than 13).

Measured, not read off a diagram: an operator's ``pricelab experiment pause`` runs in this
process (``streams.cli.entry.main``, in a thread, as the console script runs it), and a
controller's command handler (``Runtime.commands``, the object the worker's ``commands`` agent
hands each record to) consumes the real commands topic and publishes on the real assignments
topic. Each ``JsonPublisher.send`` (and ``send_keyed_many`` and ``send_templated``, the
assignments' batches) records pricelab's modules on its call stack, outermost
first: the operator's stack when the command is sent, the controller's when the pause's
assignments are sent. The path is those two stacks joined by the commands topic and the
worker's agent (``streams/worker/app.py``, whose faust agent this test stands in for). Helpers
called and returned from on the way (the spec's parser, the status words) are not on the path:
the path is the chain of calls that carries the command. The test prints them too (with
``-s``): every module one of whose functions runs between the operator's command line and the
assignments' send, on either side.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from controller.spec import load_spec
from streams.worker.handlers import RawEvent
from streams.worker.kafka import JsonPublisher
from tests.integration.conftest import cli_env, read_topic

pytestmark = pytest.mark.integration

PACKAGES = ("core", "controller", "streams", "analysis", "lab", "pricelab")
START = datetime(2026, 6, 1, tzinfo=UTC)
#: the hop between the operator's process and the controller's: faust's ``commands`` agent in
#: the worker's app hands each record to ``Runtime.commands.handle``
AGENT = "streams/worker/app.py"
LIMIT = 13
#: the module whose publisher this test wraps to read the stacks: the last hop on both sides
PUBLISHER = "streams/worker/kafka.py"


class Touched:
    """Every pricelab module one of whose functions is called while it profiles (a profile
    function per thread: ``sys.setprofile``)."""

    def __init__(self) -> None:
        self.modules: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_name != "<module>":  # not an import
            name = frame.f_globals.get("__name__", "")
            if name.split(".")[0] in PACKAGES:
                path = name.replace(".", "/") + ".py"
                if path not in self.modules:
                    self.modules.append(path)


def stack_modules(frame: FrameType | None) -> list[str]:
    """pricelab's modules on the stack above ``frame``, outermost first, each once."""
    names: list[str] = []
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.split(".")[0] in PACKAGES:
            names.append(name.replace(".", "/") + ".py")
        frame = frame.f_back
    out: list[str] = []
    for name in reversed(names):
        if name not in out:
            out.append(name)
    return out


async def test_a_pause_reaches_its_assignments_through_fewer_than_13_modules(
    runtime: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(
        {
            "id": "path-1",
            "products": ["A", "B", "C", "D"],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=5)).isoformat(),
            "timezone": "UTC",
            "seed": 3,
        }
    )
    await runtime.clock.set(START + timedelta(hours=12))
    await runtime.flipper.create(spec, backfill=True)

    stacks: dict[str, list[str]] = {}
    send, send_keyed_many = JsonPublisher.send, JsonPublisher.send_keyed_many
    send_templated = JsonPublisher.send_templated

    async def traced(self: JsonPublisher, topic: str, *args: Any, **kwargs: Any) -> Any:
        stacks.setdefault(topic, stack_modules(sys._getframe(1)) + [PUBLISHER])
        return await send(self, topic, *args, **kwargs)

    async def traced_many(self: JsonPublisher, topic: str, *args: Any, **kwargs: Any) -> Any:
        stacks.setdefault(topic, stack_modules(sys._getframe(1)) + [PUBLISHER])
        return await send_keyed_many(self, topic, *args, **kwargs)

    async def traced_templated(self: JsonPublisher, topic: str, *args: Any, **kw: Any) -> Any:
        stacks.setdefault(topic, stack_modules(sys._getframe(1)) + [PUBLISHER])
        return await send_templated(self, topic, *args, **kw)

    monkeypatch.setattr(JsonPublisher, "send", traced)
    monkeypatch.setattr(JsonPublisher, "send_keyed_many", traced_many)
    monkeypatch.setattr(JsonPublisher, "send_templated", traced_templated)
    for key, value in cli_env(settings).items():
        monkeypatch.setenv(key, value)

    consumer = AIOKafkaConsumer(
        settings.topics.commands,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    exit_code: list[object] = []

    touched, handling = Touched(), Touched()

    def operator() -> None:
        from streams.cli.entry import main

        sys.setprofile(touched)
        try:
            main(["experiment", "pause", "path-1", "--reason", "measure", "--timeout", "60"])
        except SystemExit as done:
            exit_code.append(done.code)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        handled = 0
        while not handled:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    sys.setprofile(handling)
                    try:
                        await runtime.commands.handle(
                            RawEvent(value=r.value, partition=r.partition, offset=r.offset)
                        )
                    finally:
                        sys.setprofile(None)
                    handled += 1
            assert thread.is_alive() or handled, "the operator's command never arrived"
        await asyncio.to_thread(thread.join, 90)
    finally:
        await consumer.stop()
    assert exit_code == [0]

    # the pause was carried out: every product's control message is on the topic
    msgs = await read_topic(settings, settings.topics.assignments, expect=8)
    last = {m["product"]: m for m in sorted(msgs, key=lambda m: m["seq"])}
    assert {p: m["status"] for p, m in last.items()} == dict.fromkeys("ABCD", "paused")

    operator_side = stacks[settings.topics.commands]
    controller_side = stacks[settings.topics.assignments]
    path = operator_side + [AGENT] + [m for m in controller_side if m not in operator_side]
    print("\n" + "\n".join(f"{i:2}. {m}" for i, m in enumerate(path, 1)))
    called = touched.modules + [m for m in handling.modules if m not in touched.modules]
    print(f"modules with a function called on the way: {len(called)}: {', '.join(called)}")
    assert operator_side[0].startswith("streams/cli/")
    assert controller_side[-1] == PUBLISHER
    assert "controller/flipper.py" in controller_side
    assert len(path) < LIMIT, path
