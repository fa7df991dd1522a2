"""Probe outside Kafka clients against the embedded broker (Tansu); figures for docs/broker.md.

Measures, on a fresh embedded stack:

1. how long a librdkafka (confluent-kafka) consumer group takes to receive its first message,
   with librdkafka's default group settings and with the settings docs/broker.md recommends;
2. how many messages of a batched 40-message write a reader gets when it stops at the high
   watermark it was told, against reading until idle;
3. whether Debian's ``kcat`` (an older librdkafka) can fetch metadata, when it is installed.

Run: .venv/bin/python -m benchmarks.probe_outside_clients [--cap SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer, TopicPartition, libversion

from streams.live.embedded import EmbeddedStack

TUNED = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}


async def _topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, n: int, keyed: bool = True) -> None:
    """n messages sent together, as a flip publishes them (batched per partition)."""
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False)
    await prod.start()
    try:
        futs = [
            await prod.send(topic, f"m{i}".encode(), key=f"k{i}".encode() if keyed else None)
            for i in range(n)
        ]
        await asyncio.gather(*futs)
    finally:
        await prod.stop()


def first_message_seconds(bootstrap: str, topic: str, extra: dict, cap: float) -> float | None:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **extra,
        }
    )
    t0 = time.monotonic()
    try:
        c.subscribe([topic])
        while time.monotonic() - t0 < cap:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                return time.monotonic() - t0
        return None
    finally:
        c.close()


def read_to_watermark(bootstrap: str, topic: str, partitions: int) -> tuple[int, int]:
    """(messages read stopping at the reported high watermarks, messages read until idle)."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "probe-hw", "enable.auto.commit": False}
    )
    try:
        parts = [TopicPartition(topic, p, 0) for p in range(partitions)]
        highs = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        c.assign(parts)
        to_end = 0
        done = {p for p, h in highs.items() if h == 0}
        deadline = time.monotonic() + 10
        while len(done) < partitions and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error() is not None:
                continue
            if m.offset() < highs[m.partition()]:
                to_end += 1
            if m.offset() + 1 >= highs[m.partition()]:
                done.add(m.partition())
        # until idle: everything there is, however far the watermark says
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        idle = 0
        last = time.monotonic()
        while time.monotonic() - last < 3.0:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                idle += 1
                last = time.monotonic()
        return to_end, idle
    finally:
        c.close()


def kcat_metadata(bootstrap: str) -> str:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        return "not installed (apt-get install kcat)"
    ver = subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
    lib = next((w for w in ver.replace("(", " ").split(", ") if "librdkafka" in w), "")
    lib = lib.split()[lib.split().index("librdkafka") + 1] if "librdkafka" in lib else "?"
    out = subprocess.run([kcat, "-b", bootstrap, "-L", "-m", "10"], capture_output=True, text=True)
    if out.returncode == 0:
        return f"(librdkafka {lib}) metadata OK"
    err = next((ln for ln in out.stderr.splitlines() if "ApiVersionRequest failed" in ln), "")
    reason = err[err.index("ApiVersionRequest") :].split(":")[:3] if err else ["?"]
    return f"(librdkafka {lib}) fails, exit {out.returncode}: {':'.join(reason).strip()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap", type=float, default=30.0, help="longest wait for a first message")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    with EmbeddedStack() as stack:
        bootstrap = stack.bootstrap_servers
        topic = f"probe-{uuid.uuid4().hex[:6]}"
        asyncio.run(_topic(bootstrap, topic, 2))
        asyncio.run(_produce(bootstrap, topic, 10))
        print(f"confluent-kafka {libversion()[0]} against the embedded broker")
        for label, extra in (("librdkafka defaults", {}), ("session 10 s, heartbeat 1 s", TUNED)):
            got = [
                first_message_seconds(bootstrap, topic, extra, args.cap) for _ in range(args.trials)
            ]
            shown = ", ".join("none" if g is None else f"{g:.1f} s" for g in got)
            print(f"  group consumer, {label}: first message after {shown} (cap {args.cap:g} s)")
        flip = f"probe-{uuid.uuid4().hex[:6]}"
        asyncio.run(_topic(bootstrap, flip, 2))
        asyncio.run(_produce(bootstrap, flip, 40))
        to_end, idle = read_to_watermark(bootstrap, flip, 2)
        print(f"  40 messages written in one batch: {to_end} read up to the reported high")
        print(f"    watermark, {idle} read until idle")
        print(f"  kcat: {kcat_metadata(bootstrap)}")


if __name__ == "__main__":
    main()
