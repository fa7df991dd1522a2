"""Run pricelab's async readers from plain code and from a notebook.

``asyncio.run`` refuses to start inside a running event loop, and Jupyter's kernel runs one:
there the coroutine runs on a fresh loop in a worker thread, and the caller waits for it. An
error raised inside reaches the caller unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    """``make()``'s result: on this thread when no event loop runs here, else on a worker
    thread with its own loop (a notebook's cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    with ThreadPoolExecutor(1, thread_name_prefix="pricelab") as pool:
        return pool.submit(lambda: asyncio.run(_await(make))).result()


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
