"""Probe what a controller keeps of the experiments it ran (issue #56, "the 60-minute soak's
RSS is flat"): figures for docs/operations.md.

In the soak each slot runs its experiments one after another over the same products, and a
controller's interpreter blocks rose with every experiment ever created: its store kept every
parsed spec, its sales routing every experiment's grid and entries, its flip tick read them
all. This probe runs ``--generations`` experiments of ``--products`` products one after
another in one process, with the controller's own components (``Runtime``: the flip tick,
the sales routing, the trigger routes) on one embedded stack (Tansu, redis-server), the
simulated clock moved past each one's end by ``--past`` (beyond ``allowed_lateness`` +
``dedupe_margin``, so that it is over for the controller: controller/retirement.py). After
each generation: two flip ticks, the trigger routes and the routing table read again.

Printed: the interpreter's blocks (``sys.getallocatedblocks`` after a full collection) after
``--warmup`` generations and at the end, their rise per generation, and what is kept at the
end: the store's parsed specs and the routing table's experiments and a product's
candidates. It uses only what the code before retirement had too, so it runs on both
(``PYTHONPATH=<checkout>``) for a before/after.

With ``--set-of N`` it prints instead what a routing table would hold if it kept the retired
products' set whole, for a catalogue of N products all retired: the memory (``tracemalloc``)
of a set of N 11-character ids, as ``SMEMBERS`` gives them (docs/operations.md; the table
keeps only those no experiment it holds covers).

Run (a broker, Redis and this process; ~1 minute):
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.probe_retired_memory \
        [--generations 200] [--products 30] [--warmup 20] [--set-of 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from datetime import timedelta

from benchmarks._common import START, bench_settings
from controller.spec import load_spec
from streams.live.embedded import EmbeddedStack
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime


def _blocks() -> int:
    gc.collect()
    return sys.getallocatedblocks()


async def run(generations: int, products: int, warmup: int, past: timedelta) -> dict[str, float]:
    with EmbeddedStack() as stack:
        settings = bench_settings(
            stack, allowed_lateness=timedelta(hours=1), dedupe_margin=timedelta(hours=1)
        )
        await ensure_topics(settings)
        rt = Runtime(settings, roles=("controller",))
        await rt.ensure_started()
        try:
            names = [f"p{i}" for i in range(products)]
            at_warmup = 0
            t0 = time.perf_counter()
            for g in range(generations):
                start = START + timedelta(days=g)
                spec = load_spec(
                    {
                        "id": f"gen{g:04d}",
                        "products": names,
                        "treatment_policy": "new",
                        "control_policy": "old",
                        "start": start.isoformat(),
                        "end": (start + timedelta(days=1)).isoformat(),
                        "timezone": "UTC",
                        "period": "P1D",
                        "washout": "PT10M",
                        "seed": g,
                    }
                )
                await rt.clock.set(start + timedelta(seconds=1))
                await rt.flipper.create(spec, backfill=True)
                # its end, then past its sales window: the first tick ends it, the next sees
                # it over (with the retirement; before it, both read every experiment)
                await rt.clock.set(start + timedelta(days=1) + past)
                await rt.flipper.tick()
                await rt.flipper.tick()
                await rt.triggers._load_routes()
                await rt.ingestor.routes.refresh(rt.store)
                if g + 1 == warmup:
                    at_warmup = _blocks()
            seconds = time.perf_counter() - t0
            at_end = _blocks()
            by_product = rt.ingestor.routes.by_product
            return {
                "generations": generations,
                "products": products,
                "blocks_after_warmup": at_warmup,
                "blocks_at_end": at_end,
                "blocks_per_generation": (at_end - at_warmup) / (generations - warmup),
                "specs_kept": len(rt.store._specs),
                "routing_experiments": len({id(e) for v in by_product.values() for e in v}),
                "candidates_of_a_product": len(by_product.get(names[0], ())),
                "seconds": seconds,
            }
        finally:
            await rt.stop()


def set_of(n: int) -> dict[str, float]:
    """The memory of a set of ``n`` distinct 11-character product ids, in MB."""
    import tracemalloc

    tracemalloc.start()
    try:
        ids = {f"sku-{i:07d}" for i in range(n)}
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"ids": len(ids), "set_mb": held / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=200)
    ap.add_argument("--products", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--past-hours", type=float, default=3.0)
    ap.add_argument("--set-of", type=int, default=None, metavar="N")
    a = ap.parse_args()
    if not 0 < a.warmup < a.generations:
        ap.error("--warmup must be between 0 and --generations")
    if a.set_of is not None and a.set_of < 1:
        ap.error("--set-of must be at least 1")
    out = (
        set_of(a.set_of)
        if a.set_of is not None
        else asyncio.run(run(a.generations, a.products, a.warmup, timedelta(hours=a.past_hours)))
    )
    for k, v in out.items():
        print(f"{k:28s} {v:.2f}" if isinstance(v, float) else f"{k:28s} {v}")


if __name__ == "__main__":
    main()
