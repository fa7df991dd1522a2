"""A pricing system that follows pricelab's assignments, written with confluent-kafka.

This is the consumer side a pricing team writes, with software pricelab does not ship
(librdkafka through confluent-kafka). It subscribes to the assignment topic as a consumer
group and applies the assignment contract (docs/operations.md, "The assignment contract"):
for each (experiment, product), the message in force is the one with the highest ``seq``
among those whose period has begun. Every message but one kind is for a period that has
begun, so this is plainly the highest ``seq``; a trigger fire *announces* a product's next
period (its ``period_start`` is ahead) and takes over at that instant, unless a higher
``seq`` came first. Messages of one product share a key, hence a partition, so they arrive
in order; the ``seq`` check also drops a redone decision's republished copies (same ``seq``,
same content) and anything older a rebalance replays.

A pricing system applies ``policy``. An experiment whose spec lists ``arms:`` (more than two
arms: a price ladder, several models) also names the arm: ``arm_name`` and, where the spec
gives one, ``price_ratio`` (the arm's price over the control arm's); ``arm`` is the role,
``control`` or ``treatment``. Two-arm experiments' messages carry neither key.

Every change of the policy in force is printed as one JSON line on stdout (the whole
message: ``policy``, and ``arm_name`` where there is one), and a short line for people on
stderr (``experiment product: policy (arm_name) seq N status``); the integration tests
(tests/integration/test_outside_clients.py, test_cli_experiments.py) read the JSON lines and
compare the final view with the controller's own.

Settings that matter against the embedded broker (docs/broker.md):

- ``session.timeout.ms=10000`` and ``heartbeat.interval.ms=1000``: with librdkafka's
  defaults a group member on Tansu received nothing within 20 s; with these, about 5 s.
- ``auto.offset.reset=earliest``: a new group starts from the oldest retained assignment
  (the topic is compacted, so that is at least the latest message of every product).
- Do not stop at the partitions' high watermark: after batched writes Tansu reports one that
  lags the data. A real pricing system never stops; this one runs until SIGTERM.

Run: python docs/examples/pricing_system.py BOOTSTRAP TOPIC GROUP
"""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError

CONFIG: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
}


class PolicyBook:
    """The message in force per (experiment, product): the highest ``seq`` among those whose
    period has begun; an announced one waits in ``ahead`` until its period begins."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], dict[str, Any]] = {}
        self.ahead: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, msg: dict[str, Any], now: datetime | None = None) -> bool:
        """Take ``msg`` if it is newer than what is held; True when the policy in force
        changed (an announcement changes it only once its period begins: :meth:`due`)."""
        key = (msg["experiment"], msg["product"])
        held = self.current.get(key)
        if held is not None and held["seq"] >= msg["seq"]:
            return False
        if now is not None and _start(msg) > now:
            waiting = self.ahead.get(key)
            if waiting is None or waiting["seq"] < msg["seq"]:
                self.ahead[key] = msg
            return False
        self.current[key] = msg
        waiting = self.ahead.get(key)
        if waiting is not None and waiting["seq"] < msg["seq"]:
            del self.ahead[key]  # a later decision came first: the announcement is void
        return True

    def due(self, now: datetime) -> list[dict[str, Any]]:
        """Announcements whose period has begun by ``now``: in force from now on."""
        taken = []
        for m in [m for m in self.ahead.values() if _start(m) <= now]:
            key = (m["experiment"], m["product"])
            del self.ahead[key]
            held = self.current.get(key)
            if held is None or held["seq"] < m["seq"]:
                self.current[key] = m
                taken.append(m)
        return taken


def _start(msg: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(msg["period_start"])


def show(msg: dict[str, Any]) -> None:
    """One change of the policy in force: the message as JSON on stdout, and for people the
    policy with its arm's name (where the experiment names its arms) on stderr."""
    print(json.dumps(msg, sort_keys=True), flush=True)
    arm = f" ({msg['arm_name']})" if msg.get("arm_name") else ""
    print(
        f"{msg['experiment']} {msg['product']}: {msg['policy']}{arm} seq {msg['seq']} "
        f"{msg['status']}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: pricing_system.py BOOTSTRAP TOPIC GROUP", file=sys.stderr)
        return 2
    bootstrap, topic, group = argv
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **CONFIG})
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer.subscribe([topic])
    book = PolicyBook()
    try:
        while not stop:
            msg = consumer.poll(0.2)
            for begun in book.due(datetime.now(UTC)):
                show(begun)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                print(json.dumps({"error": str(err)}), flush=True)
                continue
            value = msg.value()
            if value is None:  # a tombstone
                continue
            try:
                assignment = json.loads(value)
            except ValueError:
                print(json.dumps({"error": "not JSON", "offset": msg.offset()}), flush=True)
                continue
            if book.apply(assignment, datetime.now(UTC)):
                show(assignment)
    finally:
        consumer.close()  # leaves the group at once instead of after the session timeout
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
