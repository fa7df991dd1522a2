"""A pricing system that follows pricelab's assignments, written with confluent-kafka.

This is the consumer side a pricing team writes, with software pricelab does not ship
(librdkafka through confluent-kafka). It subscribes to the assignment topic as a consumer
group and keeps, for each (experiment, product), the message with the highest ``seq``: that
is the policy in force. Messages of one product share a key, hence a partition, so they
arrive in order; the ``seq`` check also drops a redone flip's republished messages (same
``seq``) and anything older a rebalance replays.

Every change of the policy in force is printed as one JSON line on stdout; the integration
test (tests/integration/test_outside_clients.py) reads those lines and compares the final view
with the controller's own records.

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
from typing import Any

from confluent_kafka import Consumer, KafkaError

CONFIG: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
}


class PolicyBook:
    """The policy in force per (experiment, product): the message with the highest seq."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, msg: dict[str, Any]) -> bool:
        """Take ``msg`` if it is newer than what is held; True when the policy changed."""
        key = (msg["experiment"], msg["product"])
        held = self.current.get(key)
        if held is not None and held["seq"] >= msg["seq"]:
            return False
        self.current[key] = msg
        return True


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
            if book.apply(assignment):
                print(json.dumps(assignment, sort_keys=True), flush=True)
    finally:
        consumer.close()  # leaves the group at once instead of after the session timeout
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
