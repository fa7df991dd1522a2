"""The live-memory gauges (streams/worker/memory.py) follow known allocations."""

from __future__ import annotations

import os

import numpy as np
import pytest
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
    c = MemoryCollector(read=None)  # a C library without mallinfo2
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


def test_a_full_collection_frees_the_cycles_the_workers_thresholds_leave():
    """With the worker's thresholds (tune_gc) cyclic garbage that reached the oldest
    generation stays until 100 million allocations; collect_cycles frees it."""
    import gc
    import weakref

    from streams.worker.app import collect_cycles, tune_gc

    class Node:
        pass

    old = gc.get_threshold()
    try:
        gc.collect()
        tune_gc()  # the worker's thresholds (and its start-up objects frozen)
        held, refs = [], []
        for _ in range(2_000):
            a, b = Node(), Node()
            a.other, b.other = b, a  # a cycle, like a transport and its bound methods
            held.append(a)
            refs.append(weakref.ref(a))
        del a, b
        gc.collect(1)  # alive (a connection in use) through the young generations'
        gc.collect(1)  # collections: moved to the oldest
        held.clear()  # now garbage (the connection closed), in the oldest generation
        gc.collect(1)  # the young generations' collections do not see it
        assert sum(r() is not None for r in refs) == 2_000
        seconds = collect_cycles()
        assert sum(r() is not None for r in refs) == 0
        assert 0.0 <= seconds < 5.0
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


_FRAGMENTED = """
import os
from streams.worker.memory import libc_malloc_trim

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

chunks = [bytes(4096) for _ in range(20_000)]  # 80 MB from malloc's heap (not mmapped)
pin = bytes(4096)  # above them: the heap's top is in use, so free() cannot shrink it
full = rss()
del chunks  # freed, and kept by malloc in the middle of the heap
kept = rss()
trim = libc_malloc_trim()
trim()
print(full, kept, rss(), len(pin))
"""


def test_malloc_trim_gives_the_freed_heap_pages_back():
    """What a controller calls after each full collection: the freed pages that malloc kept
    below a chunk in use (the fragmentation that grew a controller's RSS in the soak) go
    back to the operating system; without it they stay resident."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    full, kept, trimmed, _ = (int(x) for x in out.stdout.split())
    mb = 2**20
    assert full - kept < 8 * mb  # freed, the 80 MB stayed resident
    assert kept - trimmed > 64 * mb  # trimmed, most of them went back


def test_a_controllers_full_collection_trims_and_is_timed_with_it():
    from streams.worker.app import collect_cycles

    calls: list[int] = []
    assert collect_cycles(lambda: calls.append(1)) >= 0.0
    assert calls == [1]
    assert collect_cycles() >= 0.0 and calls == [1]  # an analysis worker's: no trim


def test_only_a_controller_worker_trims():
    from streams.worker.memory import libc_malloc_trim, trim_for

    assert libc_malloc_trim() is not None  # glibc, as on every machine this runs on
    assert trim_for({"controller"}) is libc_malloc_trim()
    assert trim_for({"analysis"}) is None
    assert trim_for({"controller", "analysis"}) is None  # one process serving both keeps it


_THRESHOLD = """
import sys
from streams.worker.memory import controller_malloc_at_start, libc_mallinfo2

environ = {} if sys.argv[1] == "by-hand" else {"GLIBC_TUNABLES": ""}
was_set = controller_malloc_at_start({"controller"}, environ)
info = libc_mallinfo2()
a = bytearray(2**20)  # mapped alone (above glibc's starting 128 KiB threshold)
del a  # freed: glibc's moving threshold rises to its size, unless the threshold is fixed
before = info().hblkhd
b = bytearray(200 * 1024)
print(int(was_set), info().hblkhd - before, len(b))
"""


def _mapped_after(how: str) -> tuple[int, int]:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", _THRESHOLD, how], capture_output=True, text=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    was_set, mapped, _ = (int(x) for x in out.stdout.split())
    return was_set, mapped


def test_a_controller_started_by_hand_fixes_its_mmap_threshold_as_the_launcher_would():
    """A controller worker started without GLIBC_TUNABLES (by hand, or the image without
    compose) fixes malloc's mmap threshold itself: a 200 KiB block is still mapped on its own
    after a 1 MiB one was freed. With an operator's GLIBC_TUNABLES (here empty: glibc's
    defaults) it leaves malloc alone, and glibc's moving threshold puts that block in the heap."""
    was_set, mapped = _mapped_after("by-hand")
    assert was_set == 1 and mapped >= 200 * 1024
    was_set, mapped = _mapped_after("operator")
    assert was_set == 0 and mapped == 0


def test_only_a_controller_only_worker_sets_the_threshold_at_start():
    from streams.worker.memory import CONTROLLER_MMAP_THRESHOLD, controller_malloc_at_start

    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    assert controller_malloc_at_start({"controller"}, {}, mallopt)
    assert calls == [(-3, CONTROLLER_MMAP_THRESHOLD)]  # M_MMAP_THRESHOLD, 128 KiB
    assert CONTROLLER_MMAP_THRESHOLD == 131072
    assert not controller_malloc_at_start({"analysis"}, {}, mallopt)
    assert not controller_malloc_at_start({"controller", "analysis"}, {}, mallopt)
    assert not controller_malloc_at_start({"controller"}, {"GLIBC_TUNABLES": "x"}, mallopt)
    assert not controller_malloc_at_start({"controller"}, {}, None)  # no mallopt: nothing
    assert len(calls) == 1


def test_a_worker_sets_its_controllers_malloc_before_anything_else(monkeypatch):
    """``run_worker`` (``pricelab worker``, the image's command) gives a controller its
    threshold first, with its roles and its environment as started: 7830be1 removed the call
    and no test failed."""
    from controller.settings import Settings
    from streams.worker import app

    seen: list[tuple[set[str], object]] = []

    def at_start(roles: set[str], environ: object) -> bool:
        seen.append((set(roles), environ))
        return True

    async def preflight(settings: object, roles: object = ()) -> None:
        raise RuntimeError("stopped after the malloc setting")

    monkeypatch.setattr(app, "controller_malloc_at_start", at_start)
    monkeypatch.setattr(app, "preflight", preflight)
    with pytest.raises(RuntimeError, match="stopped after"):
        app.run_worker(Settings(), {"controller"})
    assert seen == [({"controller"}, os.environ)]
