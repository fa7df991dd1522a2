"""The live validity study of adaptive price ladders (issue #57): batches through real workers,
each with a kill -9.

    .venv/bin/python -m streams.live.coverage_adaptive --batches 10 --out /tmp/ad --save --render
    .venv/bin/python -m streams.live.coverage_adaptive --batches 0 --out /tmp/ad --save --render

A *batch* is :data:`LADDERS` adaptive ladders of one world (:data:`WORLDS`), each on a market of
its own (its own products, seeds and demand), driven together in lock-step
(:class:`streams.live.driver.LiveDriver`) through one controller and one analysis worker
process on the embedded broker and Redis. In every batch one of the two is killed with SIGKILL
right after a period's sales were sent (while they are in flight) and a new one started: which
one and at which period is drawn for the batch from one seeded stream over the batches
(:func:`draw_kills`). Each ladder is the demo's adaptive ladder (``./run demo --ladder
--adaptive``, :func:`streams.live.demo.demo_spec`: random days, Thompson sampling on profit,
three warmup periods, the floor for its products) with the world's prices and unit costs.

What is scored is what the analysis worker published (``aipw_adaptive`` on profit, each arm's
simultaneous anytime-valid sequence against the control) against each market's truth
(:meth:`streams.live.driver.LiveRun.arm_truth`) at every look and at the end
(:func:`score_run`, pure), and the units the store counted against those sent.

The worlds are the lab study's (``lab/studies/adaptive_ladder.py``) without its carryover: the
live path has carryover only on the optimal switchback (random days estimate at lag 0, so a
market with carryover would give the worker another estimand than the truth scored here), and
an adaptive optimal switchback of order m >= 1 on the study's 40 products needs a floor that
leaves nothing to adapt (docs/adaptive.md, "The live validity study"). Without carryover the
same place of the profit optimum needs lower unit costs (:data:`WORLDS`).

``--out DIR`` keeps one JSON file per batch done (``batch-NNN.json``), so an interrupted study
goes on where it stopped and ``--save`` aggregates the batches done
(:mod:`streams.live.coverage_adaptive_tables`: docs/figures/adaptive-live-coverage.json and its
per-run CSV); ``--render`` writes the table into docs/adaptive.md between its
``adaptive-live-coverage`` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from controller.arms import ArmSpec
from controller.clock import WallClock
from controller.periods import n_periods
from controller.settings import Settings
from controller.store import Store, make_redis
from lab.market import Market, MarketConfig
from lab.studies.harness import FIGURES
from streams.live import coverage_adaptive_tables as tables
from streams.live.adaptive_demo import ADAPTIVE_ESTIMATOR
from streams.live.coverage import stack_settings
from streams.live.demo import DemoConfig, demo_spec
from streams.live.driver import DriverConfig, LiveDriver, LiveRun
from streams.live.embedded import EmbeddedStack
from streams.live.ladder import LADDER_ARMS, LADDER_COST_SHARE, treatment_arms
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics

#: ladders a batch, their products and days (the slow test's batch: about 70 s on an idle machine)
LADDERS, PRODUCTS, DAYS = 16, 40, 10
#: the metric the ladders adapt on and are scored on (the decision metric: unit costs are set)
METRIC = "profit"
#: the seeds: ladder r of batch b has seed SEED + 1000 (b + 1) + r (market, spec; sales + 1)
SEED = 57_000
#: the kills' own stream over the batches
KILL_SEED = 20261128
#: the workers a kill may hit
KILLABLE = ("controller", "analysis")
#: the first period after the warmup's (periods 0 to 3 run at the allocations,
#: docs/adaptive.md "Which look steers a period"): the kills fall from it on
FIRST_ADAPTED = 4
#: a period's probabilities further than this from the allocations: the ladder adapted
ADAPTED = 0.05


@dataclass(frozen=True)
class World:
    """A ladder's prices (listed ratios, the control's 1.0 first) and the market's unit cost as
    a share of each base price."""

    name: str
    key: str
    ratios: tuple[float, ...]
    cost: float

    def arms(self) -> tuple[ArmSpec, ...]:
        """The ladder's arms at equal allocations, the control ``list`` first."""
        k = len(self.ratios)
        names = ["list"] + [
            f"a{i}" if r == 1.0 else f"p{round(100 * r):03d}"
            for i, r in enumerate(self.ratios[1:], 1)
        ]
        return tuple(
            ArmSpec(name=n, policy=f"price-{n}", price_ratio=r, allocation=1.0 / k, control=i == 0)
            for i, (n, r) in enumerate(zip(names, self.ratios, strict=True))
        )


#: the lab study's worlds, without carryover: the market's elasticity is about -2, so the
#: optimum of every product is near 2 x its unit cost share; at 0.55 near 1.1 times the list
#: price (the lab's worlds' with their carryover), at 0.675 near 1.35 (above the top price)
WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World("3 prices", "3", (1.0, 0.85, 1.15), 0.55),
        World("4 prices", "4", (1.0, 0.85, 1.15, 1.3), 0.55),
        World("5 prices", "5", (1.0, 0.7, 0.85, 1.15, 1.3), 0.55),
        World("4 prices, best at the top", "top", (1.0, 0.85, 1.15, 1.3), 0.675),
        World("A/A, 4 arms", "aa", (1.0, 1.0, 1.0, 1.0), 0.55),
    )
}
#: the demo's ladder (the slow test's batch): list price and 0.90, 0.95, 1.05 of it
DEMO = World(
    "demo ladder", "demo", tuple(float(a.price_ratio or 1.0) for a in LADDER_ARMS),
    LADDER_COST_SHARE,
)  # fmt: skip


@dataclass(frozen=True)
class Kill:
    """SIGKILL ``worker`` (``controller`` or ``analysis``) right after period ``period``'s sales
    were sent, and start a new one."""

    worker: str
    period: int


def draw_kills(batches: int, days: int = DAYS, seed: int = KILL_SEED) -> list[Kill]:
    """Each batch's kill, from one seeded stream over the batches (batch b's kill is the same
    whatever the number of batches): the worker uniformly among :data:`KILLABLE`, the period
    uniformly from :data:`FIRST_ADAPTED` to ``days - 2`` (a look and the end follow it)."""
    if days - 2 < FIRST_ADAPTED:
        raise ValueError(f"a kill needs at least {FIRST_ADAPTED + 2} days, not {days}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        worker = KILLABLE[int(rng.integers(len(KILLABLE)))]
        out.append(Kill(worker, int(rng.integers(FIRST_ADAPTED, days - 1))))
    return out


def ladder_run(
    world: World, seed: int, prefix: str, experiment: str | None, products: int, days: int
) -> LiveRun:
    """One adaptive ladder of ``world`` on a market of its own (``seed``; products named
    ``{prefix}NNN``): the demo's spec (random days, the demo's adaptive block) with the world's
    arms; the demo's ladder keeps the demo's arms and experiment id."""
    cfg = DemoConfig(products=products, days=days, seed=seed, ladder=True, adaptive=True)
    market = Market(
        MarketConfig(
            n_products=products,
            timezone=cfg.timezone,
            start_date=date.fromisoformat(cfg.start_date),
            effect_modifiers={},
            unit_cost_share=world.cost,
        ),
        seed=seed,
        product_ids=[f"{prefix}{i:03d}" for i in range(products)],
    )
    arms = LADDER_ARMS if world == DEMO else world.arms()
    spec = demo_spec(cfg, market, arms)
    if experiment is not None:
        spec = spec.model_copy(update={"id": experiment})
    return LiveRun(spec, market, sales_seed=seed + 1)


def demo_runs(
    n: int = LADDERS, products: int = PRODUCTS, days: int = DAYS, first_seed: int = 100
) -> list[LiveRun]:
    """The slow test's batch: ``n`` demo ladders, seeds ``first_seed`` on."""
    return [ladder_run(DEMO, first_seed + r, f"c{r:02d}-", None, products, days) for r in range(n)]


def world_runs(
    world: World, batch: int, n: int = LADDERS, products: int = PRODUCTS, days: int = DAYS
) -> list[LiveRun]:
    """Batch ``batch``'s ``n`` ladders of ``world`` (seeds :data:`SEED` + 1000 (batch + 1) + r)."""
    return [
        ladder_run(
            world,
            SEED + 1000 * (batch + 1) + r,
            f"b{batch}r{r:02d}-",
            f"ad-b{batch}-r{r:02d}",
            products,
            days,
        )
        for r in range(n)
    ]


async def run_batch(
    settings: Settings, runs: Sequence[LiveRun], kill: Kill | None, timeout: float = 120.0
) -> dict[str, Any]:
    """Drive ``runs`` (one calendar) through a controller and an analysis worker process of
    ``settings`` (lock-step: :func:`streams.live.driver.lockstep_settings`), ``kill``'s worker
    killed with SIGKILL and restarted right after its period's sales were sent. Returns what
    happened: the kill's exit status (-9 when it was a SIGKILL's), the units each run sent and
    the store counted, the seconds. ``timeout``: the seconds any one wait may take."""
    await ensure_topics(settings)
    #: every worker process started for the batch, stopped at its end whatever happens
    workers: list[WorkerProcess] = []
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    info: dict[str, Any] = {
        "kill": None if kill is None else asdict(kill),
        "exit_status": None,
        "started_utc": WallClock().now().isoformat(timespec="seconds"),
        "load_start": os.getloadavg()[0],
    }
    t0 = time.monotonic()
    try:
        for role in ("controller", "analysis"):
            workers.append(WorkerProcess(settings, (role,)).launch())
        for w in workers:
            w.wait_healthy()
        cfg = DriverConfig(timeout=timeout)
        async with LiveDriver(settings, store, [workers[0]], workers[1], cfg) as driver:

            async def after_send(d: int) -> None:
                if kill is None or d != kill.period:
                    return
                try:
                    if kill.worker == "controller":
                        _, code = await driver.restart_controller()
                    else:
                        _, code = await driver.restart_analysis()
                finally:  # the new process, started even when it never became healthy
                    workers.extend(
                        w
                        for w in (*driver.controller, driver.analysis)
                        if isinstance(w, WorkerProcess) and w not in workers
                    )
                info["exit_status"] = code

            await driver.create(runs)
            await driver.run(runs, after_send=after_send)
            info["wait_seconds"] = dict(driver.wall)
        counted = {}
        for run in runs:
            totals = await store.totals(run.id)
            counted[run.id] = sum(v for k, v in totals.items() if k.startswith("units:"))
        info["units"] = {run.id: [run.units_sent, counted[run.id]] for run in runs}
    finally:
        await redis.aclose()
        for w in workers:
            w.stop()
    info["seconds"] = time.monotonic() - t0
    info["ended_utc"] = WallClock().now().isoformat(timespec="seconds")
    info["load_end"] = os.getloadavg()[0]
    return info


# --------------------------------------------------------------------------- scoring (pure)
Interval = tuple[float | None, float | None]


def score_run(
    sequences: Mapping[int, Mapping[str, Interval]],
    truths: Mapping[int, Mapping[str, float]],
    final: int,
    arms: Sequence[str],
) -> dict[str, Any]:
    """One ladder's simultaneous sequences at its looks (look -> arm -> (low, high); a look is
    the count of periods it covers, ``final`` the last) against the truths (look -> arm ->
    the arm's true contrast with the control):

    - ``family`` per look: every arm's sequence published and holding its truth;
      ``family_end`` the final look's (False when it was not published);
    - ``ever_missed``: some arm's sequence excluded its truth at some look;
    - ``differs``: some arm's sequence excluded 0 at some look (in an A/A ladder a false
      decision);
    - ``missing``: (look, arm) pairs of a published look without a bounded sequence;
    - per arm: ``missed``, ``from_above`` (a miss with the sequence above the truth) and
      ``excludes_zero``."""
    per_arm = {a: {"missed": False, "from_above": False, "excludes_zero": False} for a in arms}
    family: dict[int, bool] = {}
    missing = 0
    for k in sorted(sequences):
        held = True
        for a in arms:
            lo, hi = sequences[k].get(a, (None, None))
            if lo is None or hi is None:
                missing += 1
                held = False
                continue
            t = truths[k][a]
            if not lo <= t <= hi:
                held = False
                per_arm[a]["missed"] = True
                per_arm[a]["from_above"] |= lo > t
            if lo > 0 or hi < 0:
                per_arm[a]["excludes_zero"] = True
        family[k] = held
    return {
        "looks": len(family),
        "final_published": final in sequences
        and all(None not in sequences[final].get(a, (None, None)) for a in arms),
        "family": family,
        "family_end": family.get(final, False),
        "ever_missed": any(v["missed"] for v in per_arm.values()),
        "differs": any(v["excludes_zero"] for v in per_arm.values()),
        "missing": missing,
        "arms": per_arm,
    }


def held_cells(probabilities: Mapping[int, Mapping[str, float]], products: int) -> dict[str, float]:
    """Each arm's expected cells per period at its lowest recorded probability: products times
    that probability (random days: the window of a cell is its own period, m = 0)."""
    lowest: dict[str, float] = {}
    for shares in probabilities.values():
        for arm, p in shares.items():
            lowest[arm] = min(lowest.get(arm, math.inf), p)
    return {arm: products * p for arm, p in lowest.items()}


def adapted(
    probabilities: Mapping[int, Mapping[str, float]], allocations: Mapping[str, float]
) -> bool:
    """Some period's probability of some arm moved more than :data:`ADAPTED` from the arm's
    allocation."""
    return any(
        abs(shares[arm] - p) > ADAPTED
        for shares in probabilities.values()
        for arm, p in allocations.items()
        if arm in shares
    )


# --------------------------------------------------------------------------- a live run's score
def published(run: LiveRun, metric: str = METRIC) -> dict[int, dict[str, Interval]]:
    """The worker's adaptive sequences of ``metric`` at each look of ``run``, per arm."""
    out: dict[int, dict[str, Interval]] = {}
    for arm in treatment_arms(run):
        for k, e in run.looks(ADAPTIVE_ESTIMATOR, metric=metric, arm=arm).items():
            out.setdefault(k, {})[arm] = (e.get("sim_ci_low"), e.get("sim_ci_high"))
    return dict(sorted(out.items()))


def run_row(
    run: LiveRun, world: str, batch: int, kill: Kill | None, counted: int, metric: str = METRIC
) -> dict[str, Any]:
    """``run``'s score (:func:`score_run` against the market's truths at every published look
    and the end), the units sent and counted, whether it adapted, and per arm its price,
    misses and held cells (:func:`held_cells`)."""
    arms = treatment_arms(run)
    final = n_periods(run.spec)
    seqs = published(run, metric)
    truths = {k: {a: run.arm_truth(a, k, metric) for a in arms} for k in {*seqs, final}}
    score = score_run(seqs, truths, final, arms)
    held = held_cells(run.probabilities, len(run.market.product_ids))
    ratio = {a.name: a.price_ratio for a in run.spec.arm_list()}
    alloc = dict(zip([a.name for a in run.spec.arm_list()], run.spec.allocations(), strict=True))
    lowest = min((min(s.values()) for s in run.probabilities.values()), default=math.nan)
    return {
        "world": world,
        "batch": batch,
        "experiment": run.id,
        "seed": run.spec.seed,
        "killed": None if kill is None else kill.worker,
        "kill_period": None if kill is None else kill.period,
        "units_sent": int(run.units_sent),
        "units_counted": int(counted),
        "adapted": adapted(run.probabilities, alloc),
        "lowest_probability": lowest,
        **{k: v for k, v in score.items() if k not in ("family", "arms")},
        "family": {str(k): v for k, v in score["family"].items()},
        "arms": [
            {"arm": a, "ratio": ratio[a], "held_cells": held.get(a, math.nan), **score["arms"][a]}
            for a in arms
        ],
    }


# --------------------------------------------------------------------------- the study
def batch_path(out: Path, batch: int) -> Path:
    return out / f"batch-{batch:03d}.json"


def world_order(keys: str | None) -> list[str]:
    """The names of the worlds the batches cycle through, from their comma-separated keys
    (all of :data:`WORLDS` in order by default); ValueError naming the first unknown key."""
    if not keys:
        return list(WORLDS)
    by_key = {w.key: w.name for w in WORLDS.values()}
    order = []
    for k in (k.strip() for k in keys.split(",")):
        if k not in by_key:
            raise ValueError(
                f"no world {k!r}; the worlds are "
                + ", ".join(f"{w.key} ({w.name})" for w in WORLDS.values())
            )
        order.append(by_key[k])
    return order


def _stack_batch(
    stack: EmbeddedStack, batch: int, world: str, kill: Kill | None, timeout: float
) -> dict[str, Any]:
    """Batch ``batch`` of ``world`` on ``stack``: its file's document. The batch's keys,
    topics and consumer groups are its own (``ad{batch}``: a worker killed in an earlier batch
    stays in its group until its session times out), and the broker checks what the workers
    write against the output topics' contracts."""
    runs = world_runs(WORLDS[world], batch)
    settings = stack_settings(stack, f"ad{batch}").model_copy(update={"app_id": f"ad{batch}"})
    stack.register_contracts(settings)
    info = asyncio.run(run_batch(settings, runs, kill, timeout))
    counted = {rid: c for rid, (_, c) in info["units"].items()}
    rows = [run_row(run, world, batch, kill, counted[run.id]) for run in runs]
    return (
        {"batch": batch, "world": world, "products": PRODUCTS, "days": DAYS} | info | {"runs": rows}
    )


def batches_to_run(out: Path, batches: int, worlds: Sequence[str]) -> list[tuple[int, str]]:
    """(batch, world) of the first ``batches`` batches that ``out`` does not hold, or holds as
    failed (batch b: world ``worlds[b % len]``); ValueError when a file there holds another
    world's batch."""
    todo = []
    for b in range(batches):
        world = worlds[b % len(worlds)]
        path = batch_path(out, b)
        if path.exists():
            done = tables.read_batch(path)
            if done.get("world") != world:
                raise ValueError(
                    f"{path} holds a batch of {done.get('world')!r}, not {world!r}: "
                    "give another --out or the same --worlds"
                )
            if "error" not in done:  # a batch that failed is run again
                continue
        todo.append((b, world))
    return todo


def run_study(out: Path, batches: int, worlds: Sequence[str], timeout: float) -> int:
    """Run :func:`batches_to_run` (kill b of :func:`draw_kills` for batch b), each written to
    its file as it ends; the batches done."""
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".writable"  # before a stack and a batch's minute, not after them
    probe.write_text("")
    probe.unlink()
    kills = draw_kills(batches)
    todo = batches_to_run(out, batches, worlds)
    if not todo:
        return batches
    stack = EmbeddedStack().start()
    try:
        for b, world in todo:
            try:
                doc = _stack_batch(stack, b, world, kills[b], timeout)
            except Exception as e:  # a batch that failed live is a finding, kept as one
                # named by its type too: an AssertionError() or a TimeoutError() says nothing
                error = f"{type(e).__name__}: {e}".rstrip(": ")
                doc = {"batch": b, "world": world, "kill": asdict(kills[b]), "error": error}
            batch_path(out, b).write_text(json.dumps(doc, indent=1, default=float))
            said = (
                doc["error"]
                if "error" in doc
                else (
                    f"{sum(r['family_end'] for r in doc['runs'])}/{len(doc['runs'])} family-wise, "
                    f"{sum(r['ever_missed'] for r in doc['runs'])} ever missed, "
                    f"{doc['seconds']:.0f}s, load {doc['load_start']:.2f}-{doc['load_end']:.2f}"
                )
            )
            print(
                f"[batch {b}] {world}: {kills[b].worker} killed after period "
                f"{kills[b].period}'s sales; {said}",
                flush=True,
            )
    finally:
        stack.stop()
    return batches


#: what a replay compares of each run: every per-look score and the units counted
REPLAYED = ("family_end", "ever_missed", "differs", "family", "looks", "units_counted", "arms")


def replay(out: Path, batches: Sequence[int], timeout: float) -> list[str]:
    """Run each of ``batches`` (already in ``out``) again on a fresh stack WITHOUT its kill,
    and say for each whether every run's per-look scores (:data:`REPLAYED`) are the saved
    ones: a lock-step run is a function of its seeds, so a kill that changes nothing leaves
    them equal, and a batch's runs are then independent of the kill they shared."""
    saved = {b: tables.read_batch(batch_path(out, b)) for b in batches}
    for b, doc in saved.items():
        if "runs" not in doc:
            raise ValueError(f"{batch_path(out, b)} holds a failed batch: nothing to replay")
    lines = []
    stack = EmbeddedStack().start()
    try:
        for b, doc in saved.items():
            again = _stack_batch(stack, b, doc["world"], None, timeout)
            pairs = list(zip(doc["runs"], again["runs"], strict=True))
            same = [all(r[k] == a[k] for k in REPLAYED) for r, a in pairs]
            kill = doc["kill"]
            lines.append(
                f"batch {b} ({doc['world']}; saved with the {kill['worker']} killed after period "
                f"{kill['period']}): without the kill, {sum(same)} of {len(same)} runs have "
                "every per-look score the saved one"
            )
            lines += [
                f"  {r['experiment']} differs in " + ", ".join(k for k in REPLAYED if r[k] != a[k])
                for (r, a), ok in zip(pairs, same, strict=True)
                if not ok
            ]
    finally:
        stack.stop()
    return lines


def meta() -> dict[str, Any]:
    """What every batch of the study shares (saved beside its figures)."""
    return {
        "ladders": LADDERS, "products": PRODUCTS, "days": DAYS, "metric": METRIC,
        "seed": SEED, "kill_seed": KILL_SEED, "first_adapted": FIRST_ADAPTED,
        "worlds": {
            w.name: {"key": w.key, "ratios": list(w.ratios), "cost": w.cost,
                     "arms": [a.name for a in w.arms()]}
            for w in WORLDS.values()
        },
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m streams.live.coverage_adaptive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--batches", type=int, default=0, help="batches to have in --out")
    ap.add_argument("--out", type=Path, required=True, help="the batches' JSON files")
    ap.add_argument(
        "--worlds",
        help="the worlds' keys, comma-separated, cycled over the batches (default: "
        + ",".join(w.key for w in WORLDS.values())
        + ")",
    )
    ap.add_argument("--save", action="store_true", help="aggregate --out into --figures")
    ap.add_argument("--render", action="store_true", help="the table into --doc from --figures")
    ap.add_argument("--figures", type=Path, default=FIGURES)
    ap.add_argument("--doc", type=Path, default=FIGURES.parent / "adaptive.md")
    ap.add_argument("--timeout", type=float, default=DriverConfig.timeout)
    ap.add_argument(
        "--replay",
        help="batches in --out to run again without their kill, comma-separated (e.g. the "
        "ones with a miss): are the runs' scores the saved ones?",
    )
    args = ap.parse_args(argv)
    # a SIGTERM (the study's time is up) stops the workers and the stack on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        worlds = world_order(args.worlds)
        if args.batches < 0:
            raise ValueError(f"--batches must be 0 or more, not {args.batches}")
        if not (args.batches or args.save or args.render or args.replay):
            raise ValueError(
                "nothing to do: give --batches N to run, --save, --render or --replay B,B"
            )
        again = []
        for b in (args.replay or "").split(","):
            if b.strip() and not b.strip().isdigit():
                raise ValueError(f"--replay takes batch numbers separated by commas, not {b!r}")
            if b.strip():
                again.append(int(b))
        if args.batches:
            run_study(args.out, args.batches, worlds, args.timeout)
        if args.save:
            for path in tables.save(args.out, args.figures, meta()):
                print(f"wrote {path}")
        if args.render:
            print(f"wrote {tables.render(args.figures, args.doc)}")
        for line in replay(args.out, again, args.timeout) if again else ():
            print(line)
    except (ValueError, OSError) as e:
        print(f"coverage_adaptive: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
