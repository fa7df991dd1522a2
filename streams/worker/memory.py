"""What a worker's memory holds, beyond its RSS: the live memory that a leak would grow.

An analysis worker keeps the memory it frees (``GLIBC_TUNABLES``, ``streams.live.launcher``),
so its RSS is the highest a look has needed since it started, not what it holds now: RSS
steps up after a look larger than any before (a takeover, a catch-up after a fault) and never
down. Two gauges tell a leak from such a peak, read at each scrape:

    pricelab_malloc_bytes{state}       glibc malloc: "in_use", the bytes handed out and not
                                       freed (numpy and pandas buffers, native libraries);
                                       "free", the bytes freed and kept for reuse
    pricelab_python_blocks             the memory blocks the interpreter holds (its objects)

A leak raises the troughs of both between looks; a peak raises ``free`` and leaves them. On
a C library without ``mallinfo2`` (musl, glibc before 2.33) the malloc gauge is not exported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Literal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )  # fmt: skip
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library (once per process); OSError where it cannot be loaded."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


@functools.cache
def libc_mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's ``mallinfo2`` (once per process), or None where the C library lacks it."""
    try:
        f = _libc().mallinfo2
    except (OSError, AttributeError):
        return None
    f.restype = _MallInfo2
    f.argtypes = []
    return f  # type: ignore[no-any-return]


@functools.cache
def libc_malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` (once per process), or None where the C library lacks it.

    It gives the operating system back the whole pages of the heap that malloc holds freed:
    the top of the heap, and (glibc 2.8 on) free pages in its middle. A controller worker
    calls it after each full collection (``streams.worker.app``): in the 60-minute soak of
    2026-11-28 a controller's memory in use stayed at 35-36 MB while what malloc kept freed
    grew from 9 to 18.5 MB after warm-up, each catch-up batch after a fault leaving the
    heap a little more fragmented. An analysis worker keeps what it frees on purpose
    (``GLIBC_TUNABLES``): it does not call it."""
    try:
        f = _libc().malloc_trim
    except (OSError, AttributeError):
        return None
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_size_t]
    return functools.partial(f, 0)


#: the mmap threshold a controller worker runs with (bytes): glibc's starting 128 KiB, fixed,
#: so that larger blocks are mapped alone and unmapped when freed instead of fragmenting the
#: heap once glibc's moving threshold has risen (docs/operations.md, "A controller's memory":
#: the soaks that chose it, and what it costs the flip)
CONTROLLER_MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)


@functools.cache
def libc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` (once per process), or None where the C library lacks it."""
    try:
        f = _libc().mallopt
    except (OSError, AttributeError):
        return None
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int, ctypes.c_int]
    return f  # type: ignore[no-any-return]


def set_mmap_threshold(
    value: int, mallopt: Callable[[int, int], int] | None | Literal["libc"] = "libc"
) -> bool:
    """Fix malloc's mmap threshold at ``value`` bytes in this process (what
    ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=value`` does at exec, for values up to
    mallopt's 32 MB cap); False where the C library has no ``mallopt`` or refuses it."""
    f = libc_mallopt() if mallopt == "libc" else mallopt
    return f is not None and f(_M_MMAP_THRESHOLD, value) == 1


def controller_malloc_at_start(
    roles: Collection[str],
    environ: Mapping[str, str],
    mallopt: Callable[[int, int], int] | None | Literal["libc"] = "libc",
) -> bool:
    """At a worker's start: a controller-only worker that was not started with
    ``GLIBC_TUNABLES`` (a ``pricelab worker`` run by hand, the image run without compose)
    takes the controller's threshold here, as the launcher and compose give it at exec. An
    operator's ``GLIBC_TUNABLES``, even an empty one (glibc's defaults), wins. Whether it was
    set now."""
    if "analysis" in roles or "controller" not in roles or "GLIBC_TUNABLES" in environ:
        return False
    return set_mmap_threshold(CONTROLLER_MMAP_THRESHOLD, mallopt)


def trim_for(roles: Collection[str]) -> Callable[[], int] | None:
    """What a worker of ``roles`` calls after each full collection: malloc's trim for a
    controller worker, nothing for one that serves the analysis role (it keeps what it frees
    for its next look, ``streams.live.launcher.ANALYSIS_GLIBC_TUNABLES``)."""
    return None if "analysis" in roles else libc_malloc_trim()


def malloc_bytes(read: Callable[[], _MallInfo2] | None) -> tuple[int, int] | None:
    """(in use, freed and kept) bytes of glibc's malloc, or None without ``mallinfo2``. In
    use counts the chunks handed out of the arenas and the blocks mapped on their own."""
    if read is None:
        return None
    m = read()
    return int(m.uordblks + m.hblkhd), int(m.fordblks)


class MemoryCollector(Collector):
    """The two gauges of the module's docstring, read at each collect. ``read``: what reads
    malloc's figures (glibc's ``mallinfo2`` by default; None: not exported)."""

    def __init__(self, read: Callable[[], _MallInfo2] | None | Literal["libc"] = "libc") -> None:
        self._read = libc_mallinfo2() if read == "libc" else read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        got = malloc_bytes(self._read)
        if got is not None:
            g = GaugeMetricFamily(
                "pricelab_malloc_bytes",
                "glibc malloc's bytes in use (state=in_use) and freed but kept (state=free)",
                labels=["state"],
            )
            g.add_metric(["in_use"], got[0])
            g.add_metric(["free"], got[1])
            yield g
        yield GaugeMetricFamily(
            "pricelab_python_blocks",
            "Memory blocks the interpreter holds (sys.getallocatedblocks)",
            value=sys.getallocatedblocks(),
        )
