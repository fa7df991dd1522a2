"""A soak diagnostic (``benchmarks/soak.py --trace-memory``): what a worker's memory is made of
as it runs, to tell a leak from a warm-up.

Put this directory first on a worker's ``PYTHONPATH`` and Python imports this module as the
interpreter starts, before the worker imports anything. A daemon thread then appends one JSON
line every ``PRICELAB_MEMTRACE_EVERY`` seconds (10) to ``PRICELAB_MEMTRACE_OUT``:

- ``t``: seconds since the process started; ``rss``, ``anon``, ``file``: VmRSS, RssAnon and
  RssFile from /proc/self/status (file-backed pages are shared libraries and mapped files);
- ``malloc_in_use`` and ``malloc_free``: glibc's ``mallinfo2``, the bytes malloc has handed
  out and the bytes freed but kept (with the analysis worker's ``trim_threshold`` it keeps
  all of them);
- ``blocks``: ``sys.getallocatedblocks()``, the memory blocks the interpreter holds (objects
  in pymalloc's arenas, which are mapped outside malloc, and its larger blocks);
- every 30th line, ``arenas``: glibc's ``malloc_info`` per arena (``[n, free bytes in its
  bins, bytes it has from the system]``), which tells freed memory kept in the main heap from
  that kept in the arenas of other threads; and ``maps``: the resident bytes of the main
  malloc arena's ``[heap]`` (its pages in use or not given back) and of the other anonymous
  mappings (the interpreter's own arenas, 1 MiB each, malloc's thread arenas and its mmapped
  large chunks), from /proc/self/smaps: which of the two a growing RSS is in, measured;
- with ``PRICELAB_MEMTRACE_FILES=1``, ``traced`` (the bytes ``tracemalloc`` sees) and, every
  30th line, ``grew``: the 15 source files whose traced memory grew most since the first
  such line. A snapshot holds the interpreter for a second or more, long enough for a
  controller to lose a lease: the soak is then no longer the soak;
- with ``PRICELAB_MEMTRACE_TYPES=1``, every 30th line, ``types``: the 15 types whose live
  objects (those the garbage collector tracks) grew most in number since the first such
  line, with their counts then and now; frames are also counted by the function they run
  (``frame@file:function``), which names what a growing number of tracebacks keeps. A census holds the interpreter for about half a
  second.
- with ``PRICELAB_MEMTRACE_GARBAGE=1``, every 3rd line, ``garbage``: the cyclic garbage the
  collector finds at that moment, that is what reference cycles left since the last
  collection of every generation (the worker's own full collection runs each minute): its
  number of objects, the 20 commonest types (frames by the function they ran) and what
  holds the consumed records among it (chains of holders). Two full collections: one that
  keeps what it finds (``gc.DEBUG_SAVEALL``), counted, then one that frees it. It tells
  which cycles make the minute's saw-tooth of interpreter blocks, and it changes that
  saw-tooth (a full collection every 30 s): a run with it is a diagnosis, not a soak's
  figures. Its collections run on this thread: the worker's own full collection, if it
  comes meanwhile, finds one running and does nothing that time.

All of it is cheap but the tracing: a few system calls and a walk of malloc's arenas.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import tracemalloc
import types
from typing import Any

_OUT = os.environ.get("PRICELAB_MEMTRACE_OUT")


def _mallinfo() -> tuple[int, int] | None:
    # imported in the sampling thread, after start-up: the worker's own reading of malloc
    from streams.worker.memory import libc_mallinfo2, malloc_bytes

    return malloc_bytes(libc_mallinfo2())


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def _census() -> dict[str, int]:
    """Live objects by type; frames (kept alive by a traceback or a coroutine) also by where
    they run, as ``frame@file:function``."""
    out: dict[str, int] = {}
    for o in gc.get_objects():
        t = type(o)
        key = f"{getattr(t, '__module__', '?')}.{t.__qualname__}"
        out[key] = out.get(key, 0) + 1
        if t is types.FrameType:
            code = o.f_code
            where = f"frame@{code.co_filename.rsplit('/', 2)[-1]}:{code.co_qualname}"
            out[where] = out.get(where, 0) + 1
    return out


_FIRST_CENSUS: dict[str, int] = {}


def _garbage() -> list[Any]:
    """The cyclic garbage there is now: ``[objects, [[type, count], ...20 commonest], chains]``
    (``chains``: :func:`_holders` of the consumed records among it)."""
    before = gc.get_debug()
    gc.set_debug(before | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(before)
    row = _count(found)
    del found  # no name here holds any of it now: the next collection frees it
    gc.collect()
    return row


def _count(found: list[Any]) -> list[Any]:
    out: dict[str, int] = {}
    for o in found:
        key = _name(o)
        out[key] = out.get(key, 0) + 1
    commonest = sorted(([k, c] for k, c in out.items()), key=lambda kc: -kc[1])[:20]
    return [len(found), commonest, _holders(found, "aiokafka.structs.ConsumerRecord")]


def _name(o: Any) -> str:
    """A type's module and name; a frame by the function it ran (``frame@file:function``)."""
    t = type(o)
    if t is types.FrameType:
        return f"frame@{o.f_code.co_filename.rsplit('/', 2)[-1]}:{o.f_code.co_qualname}"
    return f"{getattr(t, '__module__', '?')}.{t.__qualname__}"


def _holders(found: list[Any], kind: str, depth: int = 8) -> dict[str, int]:
    """What holds the garbage objects of type ``kind``, within the garbage: each sampled
    object's chain of first holders up to ``depth`` (``a <- b <- c``), counted."""
    ids = {id(o): o for o in found}
    held_by: dict[int, list[Any]] = {}
    for o in found:
        for r in gc.get_referents(o):
            if id(r) in ids:
                held_by.setdefault(id(r), []).append(o)
    chains: dict[str, int] = {}
    samples = [o for o in found if _name(o) == kind][::500] or []
    for o in samples[:20]:
        chain, seen, cur = [], set(), o
        for _ in range(depth):
            up = [h for h in held_by.get(id(cur), []) if id(h) not in seen]
            if not up:
                break
            cur = up[0]
            seen.add(id(cur))
            chain.append(_name(cur))
        key = " <- ".join(chain)
        chains[key] = chains.get(key, 0) + 1
    return chains


def _arenas() -> list[list[int]] | None:
    """``[arena, free bytes in its bins, bytes from the system]`` per malloc arena, from glibc's
    ``malloc_info`` (None without it)."""
    import ctypes
    import tempfile
    import xml.etree.ElementTree as ET

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
        fp = libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return None
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        root = ET.parse(tmp.name).getroot()
    out = []
    for heap in root.findall("heap"):
        free = sum(int(t.get("size", 0)) for t in heap.findall("total"))
        system = next((int(x.get("size", 0)) for x in heap.findall("system")
                       if x.get("type") == "current"), 0)  # fmt: skip
        out.append([int(heap.get("nr", -1)), free, system])
    return out


def _maps() -> dict[str, int]:
    """Resident bytes by kind of mapping (/proc/self/smaps): ``heap`` (the brk heap, malloc's
    main arena), ``anon`` (every other anonymous mapping but the stacks)."""
    out = {"heap": 0, "anon": 0}
    kind = None
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split(None, 5)
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5].strip() if len(head) > 5 else ""
                kind = "heap" if path == "[heap]" else "anon" if not path else None
            elif kind and head[0] == "Rss:":
                out[kind] += int(head[1]) * 1024
    return out


def _sample(t0: float, n: int, first: tracemalloc.Snapshot | None) -> tuple[dict, Any]:
    st = _status()
    mi = _mallinfo()
    row: dict[str, Any] = {
        "pid": os.getpid(),
        "t": round(time.monotonic() - t0, 1),
        "rss": st.get("VmRSS"),
        "anon": st.get("RssAnon"),
        "file": st.get("RssFile"),
        "malloc_in_use": mi[0] if mi else None,
        "malloc_free": mi[1] if mi else None,
        "blocks": sys.getallocatedblocks(),
    }
    if n % 30 == 0:
        row["arenas"] = _arenas()
        row["maps"] = _maps()
    if tracemalloc.is_tracing():
        row["traced"] = tracemalloc.get_traced_memory()[0]
        if n % 30 == 0:
            snap = tracemalloc.take_snapshot()
            if first is None:
                first = snap
            diff = snap.compare_to(first, "filename")
            row["grew"] = [
                [d.traceback[0].filename, d.size_diff, d.count_diff]
                for d in sorted(diff, key=lambda d: -d.size_diff)[:15]
            ]
    if os.environ.get("PRICELAB_MEMTRACE_TYPES") == "1" and n % 30 == 0:
        now = _census()
        if not _FIRST_CENSUS:
            _FIRST_CENSUS.update(now)
        grew = sorted(now, key=lambda k: _FIRST_CENSUS.get(k, 0) - now[k])[:15]
        row["types"] = [[k, _FIRST_CENSUS.get(k, 0), now[k]] for k in grew]
    if os.environ.get("PRICELAB_MEMTRACE_GARBAGE") == "1" and n % 3 == 0:
        row["garbage"] = _garbage()
    return row, first


def _run(path: str, every: float) -> None:
    t0 = time.monotonic()
    first = None
    n = 0
    while True:
        time.sleep(every)  # a sampling interval, not synchronisation
        n += 1
        row, first = _sample(t0, n, first)
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if _OUT:
    if os.environ.get("PRICELAB_MEMTRACE_FILES") == "1":
        tracemalloc.start(1)
    threading.Thread(
        target=_run,
        args=(_OUT, float(os.environ.get("PRICELAB_MEMTRACE_EVERY", "10"))),
        name="memtrace",
        daemon=True,
    ).start()
