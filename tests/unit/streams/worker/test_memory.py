"""The live-memory gauges (streams/worker/memory.py) follow known allocations."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from streams.live.launcher import metric_value
from streams.worker.memory import MemoryCollector, malloc_bytes
from streams.worker.metrics import Metrics


def _read(c: MemoryCollector) -> tuple[float, float, float]:
    r = CollectorRegistry()
    r.register(c)
    text = generate_latest(r).decode()
    return (
        metric_value(text, "pricelab_malloc_bytes", state="in_use"),
        metric_value(text, "pricelab_malloc_bytes", state="free"),
        metric_value(text, "pricelab_python_blocks"),
    )


def test_malloc_in_use_follows_a_buffer_and_blocks_follow_objects():
    c = MemoryCollector()
    in_use0, _, blocks0 = _read(c)
    buf = np.ones(64 * 2**20 // 8)  # 64 MB from malloc, touched
    objs = [object() for _ in range(200_000)]
    in_use1, _, blocks1 = _read(c)
    assert in_use1 - in_use0 >= 64 * 2**20
    assert blocks1 - blocks0 >= 199_000  # 200,000 objects, other blocks come and go
    del buf, objs
    in_use2, _, blocks2 = _read(c)
    assert in_use1 - in_use2 >= 64 * 2**20
    assert blocks1 - blocks2 >= 199_000


def test_without_mallinfo2_only_the_interpreter_blocks_are_exported():
    assert malloc_bytes(None) is None
    c = MemoryCollector()
    c._read = None  # a C library without mallinfo2
    r = CollectorRegistry()
    r.register(c)
    text = generate_latest(r).decode()
    assert "pricelab_malloc_bytes" not in text
    assert metric_value(text, "pricelab_python_blocks") > 0


def test_a_workers_metrics_carry_the_live_memory_beside_the_rss():
    text = generate_latest(Metrics(registry=None).registry).decode()
    assert metric_value(text, "process_resident_memory_bytes") > 0
    assert metric_value(text, "pricelab_malloc_bytes", state="in_use") > 0
    assert metric_value(text, "pricelab_python_blocks") > 0
