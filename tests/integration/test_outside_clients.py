"""Software nobody here wrote, plugged in where a user would plug in theirs.

A pricing system built on librdkafka (confluent-kafka, docs/examples/pricing_system.py) follows
the assignments of a real controller worker on the embedded broker, as a consumer group. It
must end with every product's current assignment: the arm and policy the controller recorded
for the period in force, at the experiment's latest sequence number. A second pricing system
that joins only after the flips, with a fresh group, must reach the same view from the topic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.settings import Settings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess
from tests.integration.conftest import command_ok, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "docs" / "examples" / "pricing_system.py"
START = datetime(2026, 6, 1, tzinfo=UTC)
PRODUCTS = [f"Q{i:03d}" for i in range(60)]


class PricingSystem:
    """The example client as a child process; its stdout lines are its policy changes."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(CLIENT),
                settings.kafka.bootstrap_servers,
                settings.topics.assignments,
                group,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")},
        )
        self.started = time.monotonic()
        self.first_at: float | None = None
        self.view: dict[tuple[str, str], dict[str, Any]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if self.first_at is None:
                    self.first_at = time.monotonic() - self.started
                if "error" in msg:
                    self.errors.append(msg["error"])
                else:
                    self.view[(msg["experiment"], msg["product"])] = msg

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            return dict(self.view)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code


def _spec(exp_id: str) -> dict[str, Any]:
    return {
        "id": exp_id,
        "products": PRODUCTS,
        "treatment_policy": "new",
        "control_policy": "old",
        "start": START.isoformat(),
        "end": (START + timedelta(days=10)).isoformat(),
        "timezone": "UTC",
        "seed": 11,
    }


async def test_a_librdkafka_pricing_system_ends_with_every_current_assignment(settings) -> None:
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    await clock.set(START + timedelta(minutes=5))
    worker: WorkerProcess | None = None
    live: PricingSystem | None = None
    late: PricingSystem | None = None
    codes: list[int] = []
    try:
        worker = WorkerProcess(settings).start()
        live = PricingSystem(settings, f"{settings.app_id}-pricing-live")
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=_spec("ox")
            )
        )

        async def flipped(k: int) -> bool:
            return (await store.get_experiment("ox")).published_through(k)

        await wait_until(lambda: flipped(0), 30, "the first flip")
        for day in (1, 2, 3):
            await clock.set(START + timedelta(days=day, minutes=1))
            await wait_until(lambda d=day: flipped(d), 30, f"flip {day}")

        state = await store.get_experiment("ox")
        records = await store.assignment_records("ox", state.flipped_period)
        assert sorted(records) == PRODUCTS
        policy = {"T": "new", "C": "old"}

        def current(client: PricingSystem) -> bool:
            view = client.snapshot()
            return len(view) == len(PRODUCTS) and all(
                (m := view.get(("ox", p))) is not None
                and m["seq"] == state.seq
                and m["period"] == state.flipped_period
                and m["arm"][0].upper() == rec[0]
                and m["policy"] == policy[rec[0]]
                for p, rec in records.items()
            )

        await wait_until(lambda: current(live), 60, "the live pricing system to catch up")
        late = PricingSystem(settings, f"{settings.app_id}-pricing-late")
        await wait_until(lambda: current(late), 60, "a pricing system started late to catch up")
        for client in (live, late):
            assert client.errors == []
            assert client.first_at is not None
        # both arms are in force somewhere (the view is not trivially all-control)
        assert {rec[0] for rec in records.values()} == {"T", "C"}
    finally:
        codes = [c.stop() for c in (live, late) if c is not None]
        if worker is not None:
            worker.stop()
        await redis.aclose()
    assert codes == [0] * len(codes), "a pricing system did not close cleanly on SIGTERM"
