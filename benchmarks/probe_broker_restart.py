"""Probe what a producer's writes meet while the embedded broker (Tansu) restarts; figures for
docs/broker.md.

``--producers`` aiokafka producers (pricelab's ``JsonPublisher``, acks=all; the soak's two
analysis workers write one topic) each write batches of 200 keyed messages to a topic of
``--partitions`` partitions and wait for each batch, throughout; the broker is
stopped and started again ``--restarts`` times, and the topics made again after each start
(its storage is memory: a restart loses them). Prints, per restart, the errors the writes
raised (a flush of 200 writes that failed counts once: its type, and when, from the topics
being made again), and the broker log's errors.

Run: .venv/bin/python -m benchmarks.probe_broker_restart [--restarts N]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka.errors import KafkaError

from controller.settings import KafkaSettings, Settings, TopicSettings
from streams.live.embedded import EmbeddedStack
from streams.worker.kafka import JsonPublisher, ensure_topics


async def _restart(
    stack: EmbeddedStack, settings: Settings, producers: int, n: int
) -> Counter[str]:
    """One restart of the broker under ``producers`` writing throughout; prints and returns
    the errors their writes raised."""
    loop = asyncio.get_running_loop()
    pubs = [JsonPublisher(settings) for _ in range(producers)]
    for pub in pubs:
        await pub.start()
    t0 = time.monotonic()
    errors: list[tuple[float, str]] = []
    writing = True

    async def write(pub: JsonPublisher) -> None:
        while writing:
            try:
                for i in range(200):
                    await pub.send(settings.topics.estimates, b'{"x": 1}', key=f"k{i}")
                await pub.flush()
            except Exception as exc:  # noqa: BLE001 - what the probe records
                errors.append((time.monotonic() - t0, type(exc).__name__))
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(write(pub)) for pub in pubs]
    await asyncio.sleep(0.5)
    assert stack.broker is not None
    stopped_at = time.monotonic() - t0
    await loop.run_in_executor(None, stack.broker.stop)
    await asyncio.sleep(0.5)  # down a while, as in the soak: writes wait for it
    await loop.run_in_executor(None, stack.broker.start)
    started_at = time.monotonic() - t0
    await ensure_topics(settings)
    made_at = time.monotonic() - t0
    await asyncio.sleep(1.0)
    writing = False
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for pub in pubs:
        try:
            await asyncio.wait_for(pub.stop(), 60)  # the producer stops even if this raises
        except KafkaError as exc:  # a write left over from a batch that failed
            errors.append((time.monotonic() - t0, type(exc).__name__))
    kinds = Counter(kind for _, kind in errors)
    span = (
        f" (from {errors[0][0] - made_at:+.3f} s to {errors[-1][0] - made_at:+.3f} s after "
        "the topics were made)"
        if errors
        else ""
    )
    print(
        f"restart {n}: stop at {stopped_at:.2f} s, up at {started_at:.2f} s, topics made "
        f"at {made_at:.2f} s; failed flushes of 200 writes: {dict(kinds) or 'none'}{span}"
    )
    return kinds


async def probe(restarts: int, partitions: int, producers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(workdir=Path(tmp)) as stack:
        tag = uuid.uuid4().hex[:8]
        topics = TopicSettings(
            **{k: f"p{tag}.{v}" for k, v in TopicSettings().model_dump().items()}
        )
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=partitions),
            topics=topics,
        )
        await ensure_topics(settings)
        total: Counter[str] = Counter()
        for n in range(1, restarts + 1):
            total.update(await _restart(stack, settings, producers, n))
        log = Path(tmp, "broker.log").read_text(errors="replace")
        said = Counter(m.group(1) for m in re.finditer(r"ERROR\S*\s+\S*?(tansu_[a-z_:]+)", log))
        print(
            f"restarts {restarts}: failed flushes {dict(total) or 'none'}; broker log errors "
            f"{dict(said) or 'none'}"
        )
        for line in log.splitlines():
            if "AlreadyExists" in line:
                print("broker log:", re.sub(r"\x1b\[[0-9;]*m", "", line)[:300])
                break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=12)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--producers", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(probe(args.restarts, args.partitions, args.producers))


if __name__ == "__main__":
    main()
