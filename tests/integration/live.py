"""Live runs through real worker processes: a controller and an analysis worker on the
embedded stack, driven period by period by ``streams.live.driver.LiveDriver``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from controller.store import Store, keys, make_redis
from lab.compare import make_spec
from lab.market import Market, MarketConfig
from streams.live.driver import DriverConfig, LiveDriver, LiveRun, lockstep_settings
from streams.live.launcher import WorkerProcess


def _market(n: int, seed: int, prefix: str) -> Market:
    cfg = MarketConfig(n_products=n, n_categories=2, start_date=date(2026, 6, 1))
    return Market(cfg, seed=seed, product_ids=[f"{prefix}{i:03d}" for i in range(n)])


def live_run(design: str, n: int, days: int, seed: int, prefix: str) -> LiveRun:
    market = _market(n, seed, prefix)
    spec = make_spec(design, market, days=days, seed=seed)
    spec = spec.model_copy(update={"id": f"{prefix}-{design}"})
    return LiveRun(spec, market, sales_seed=seed)


async def drive(
    settings: Any, runs: list[LiveRun], cfg: DriverConfig | None = None, **hooks: Any
) -> dict[str, Any]:
    """Run ``runs`` through a controller and an analysis worker; returns the workers used."""
    from streams.worker.kafka import ensure_topics

    await ensure_topics(settings)
    settings = lockstep_settings(settings)
    controller = WorkerProcess(settings, ("controller",))
    analysis = WorkerProcess(settings, ("analysis",))
    used: dict[str, Any] = {"analysis": [analysis]}
    redis = make_redis(settings)
    try:
        controller.launch()
        analysis.launch()
        controller.wait_healthy()
        analysis.wait_healthy()
        used["environ"] = {
            role: dict(
                item.split(b"=", 1)
                for item in Path(f"/proc/{w.pid}/environ").read_bytes().split(b"\0")
                if b"=" in item
            )
            for role, w in (("controller", controller), ("analysis", analysis))
        }
        store = Store(redis, settings.key_prefix)
        async with LiveDriver(settings, store, [controller], analysis, cfg) as driver:
            used["driver"] = driver
            used["store"] = store
            await driver.create(runs)
            await driver.run(runs, **{k: v(driver, used) for k, v in hooks.items()})
        used["totals"] = {r.id: await store.totals(r.id) for r in runs}
        used["compacted"] = {r.id: (await store.get_experiment(r.id)).compacted for r in runs}
        used["cs"] = {
            r.id: await redis.hgetall(f"{keys.experiment(settings.key_prefix, r.id)}:cs")
            for r in runs
        }
    finally:
        await redis.aclose()
        controller.stop()
        for w in used["analysis"]:
            w.stop()
    return used
