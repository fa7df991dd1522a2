"""Software nobody here wrote, plugged in where a user would plug in theirs.

A pricing system built on librdkafka (confluent-kafka, docs/examples/pricing_system.py) follows
the assignments of a real controller worker on the embedded broker, as a consumer group. It
must end with every product's current assignment: the arm and policy the controller recorded
for the period in force, at the experiment's latest sequence number. A second pricing system
that joins only after the flips, with a fresh group, must reach the same view from the topic.

A three-arm experiment (a spec with ``arms:``, issue #41) is read by the same client through
a pause, a resume, a freeze and a stop: every arm's policy while running, the control arm's
otherwise, each message naming its arm and price ratio, ``seq`` strictly rising per product.
Its exported panel names each cell's arm, and ``pricelab analyze --arm arm --control NAME``
compares every arm with the control on it. A librdkafka consumer of the estimates topic reads
the analysis worker's estimate of every (metric, estimator, arm) against the control, each
naming its arm, with the simultaneous interval beside its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from controller.settings import Settings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import JsonPublisher
from tests.integration.conftest import command_ok, outside_reader, pricelab, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "docs" / "examples" / "pricing_system.py"
START = datetime(2026, 6, 1, tzinfo=UTC)
PRODUCTS = [f"Q{i:03d}" for i in range(60)]


class PricingSystem:
    """The example client as a child process; its stdout lines are its policy changes."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(CLIENT),
                settings.kafka.bootstrap_servers,
                settings.topics.assignments,
                group,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")},
        )
        self.started = time.monotonic()
        self.first_at: float | None = None
        self.view: dict[tuple[str, str], dict[str, Any]] = {}
        # every policy change it printed, per (experiment, product), in order
        self.history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        # its lines for people (stderr), drained so that a full pipe never blocks it
        self.said: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._talker = threading.Thread(target=self._listen, daemon=True)
        self._talker.start()

    def _listen(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.said.append(line.rstrip("\n"))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if self.first_at is None:
                    self.first_at = time.monotonic() - self.started
                if "error" in msg:
                    self.errors.append(msg["error"])
                else:
                    key = (msg["experiment"], msg["product"])
                    self.view[key] = msg
                    self.history.setdefault(key, []).append(msg)

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            return dict(self.view)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        self._talker.join(5)
        return code


def _spec(exp_id: str) -> dict[str, Any]:
    return {
        "id": exp_id,
        "products": PRODUCTS,
        "treatment_policy": "new",
        "control_policy": "old",
        "start": START.isoformat(),
        "end": (START + timedelta(days=10)).isoformat(),
        "timezone": "UTC",
        "seed": 11,
    }


async def test_a_librdkafka_pricing_system_ends_with_every_current_assignment(settings) -> None:
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    await clock.set(START + timedelta(minutes=5))
    worker: WorkerProcess | None = None
    live: PricingSystem | None = None
    late: PricingSystem | None = None
    codes: list[int] = []
    try:
        worker = WorkerProcess(settings).start()
        live = PricingSystem(settings, f"{settings.app_id}-pricing-live")
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=_spec("ox")
            )
        )

        async def flipped(k: int) -> bool:
            return (await store.get_experiment("ox")).published_through(k)

        await wait_until(lambda: flipped(0), 30, "the first flip")
        for day in (1, 2, 3):
            await clock.set(START + timedelta(days=day, minutes=1))
            await wait_until(lambda d=day: flipped(d), 30, f"flip {day}")

        state = await store.get_experiment("ox")
        records = await store.assignment_records("ox", state.flipped_period)
        assert sorted(records) == PRODUCTS
        policy = {"T": "new", "C": "old"}

        def current(client: PricingSystem) -> bool:
            view = client.snapshot()
            return len(view) == len(PRODUCTS) and all(
                (m := view.get(("ox", p))) is not None
                and m["seq"] == state.seq
                and m["period"] == state.flipped_period
                and m["arm"][0].upper() == rec[0]
                and m["policy"] == policy[rec[0]]
                for p, rec in records.items()
            )

        await wait_until(lambda: current(live), 60, "the live pricing system to catch up")
        late = PricingSystem(settings, f"{settings.app_id}-pricing-late")
        await wait_until(lambda: current(late), 60, "a pricing system started late to catch up")
        for client in (live, late):
            assert client.errors == []
            assert client.first_at is not None
        # both arms are in force somewhere (the view is not trivially all-control)
        assert {rec[0] for rec in records.values()} == {"T", "C"}
    finally:
        codes = [c.stop() for c in (live, late) if c is not None]
        if worker is not None:
            worker.stop()
        await redis.aclose()
    assert codes == [0] * len(codes), "a pricing system did not close cleanly on SIGTERM"


#: the k-arm experiment: a four-price ladder around the list price (the control)
LADDER = [
    {"name": "list", "policy": "list-price", "price_ratio": 1.0, "allocation": 0.4,
     "control": True},
    {"name": "p90", "policy": "price-90", "price_ratio": 0.90, "allocation": 0.2},
    {"name": "p95", "policy": "price-95", "price_ratio": 0.95, "allocation": 0.2},
    {"name": "p105", "policy": "price-105", "price_ratio": 1.05, "allocation": 0.2},
]  # fmt: skip
ARM_OF = {a["policy"]: a for a in LADDER}
OTHERS = ("p90", "p95", "p105")
POLICIES = {a["policy"] for a in LADDER}
#: units a product sells per period on each arm, above its own base
LIFT = {"list": 0, "p90": 5, "p95": 3, "p105": -2}
#: every product's unit cost (its list price is 10): the panel has profit
UNIT_COST = 6.0


def _ladder_spec(exp_id: str) -> dict[str, Any]:
    doc = {k: v for k, v in _spec(exp_id).items() if not k.endswith("_policy")}
    return doc | {"arms": LADDER, "unit_costs": {p: UNIT_COST for p in PRODUCTS}}


def _sale(exp_id: str, product: str, k: int, arm: dict[str, Any], at: datetime) -> bytes:
    units = 5 + PRODUCTS.index(product) % 7 + k + LIFT[arm["name"]]
    price = round(10 * arm["price_ratio"], 2)
    return json.dumps(
        {
            "v": 1,
            "event_id": f"{exp_id}-{product}-{k}",
            "product": product,
            "units": units,
            "revenue": round(units * price, 2),
            "unit_price": price,
            "occurred_at": at.isoformat(),
        }
    ).encode()


def _arm_estimates(settings: Settings, exp: str, want: int, timeout: float) -> list[dict]:
    """The messages of ``exp`` on the estimates topic (estimates and the demand curve), read
    from the beginning by a librdkafka consumer (a fresh group), until one look has ``want``
    of them."""
    group = f"{settings.app_id}-estimates-{exp}"
    consumer = outside_reader(settings, settings.topics.estimates, group)
    looks: dict[str, list[dict]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            doc = json.loads(msg.value())
            if doc.get("experiment") == exp:
                looks.setdefault(doc.get("as_of", ""), []).append(doc)
                if len(looks[doc.get("as_of", "")]) >= want:
                    return looks[doc["as_of"]]
    finally:
        consumer.close()
    got = sorted(map(len, looks.values()))
    raise AssertionError(f"no look of {want} estimates of {exp}: {got}")


async def test_a_librdkafka_pricing_system_follows_a_four_price_ladder(settings, tmp_path) -> None:
    exp = "ladder"
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    await clock.set(START + timedelta(hours=1))
    worker: WorkerProcess | None = None
    analysis: WorkerProcess | None = None
    client: PricingSystem | None = None
    pub = JsonPublisher(settings)
    await pub.start()
    code = None
    try:
        worker = WorkerProcess(settings).start()
        client = PricingSystem(settings, f"{settings.app_id}-pricing-ladder")
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=_ladder_spec(exp)
            )
        )

        async def flipped(k: int) -> bool:
            return (await store.get_experiment(exp)).published_through(k)

        async def sell(k: int) -> None:
            """One sale per product in period k, its units by the arm the controller recorded."""
            records = await store.assignment_records(exp, k)
            assert sorted(records) == PRODUCTS
            at = START + timedelta(days=k, minutes=30)
            for p, rec in records.items():
                arm = LADDER[int(rec.split("|", 1)[0])]  # an arms: spec records the arm's index
                await pub.send(settings.topics.sales, _sale(exp, p, k, arm, at), p)
            await pub.flush()

        async def counted(n: int) -> bool:
            t = await store.totals(exp)
            return sum(v for k, v in t.items() if k.startswith("events:")) >= n

        await wait_until(lambda: flipped(0), 30, "the first flip")
        await sell(0)
        for day in (1, 2):
            await clock.set(START + timedelta(days=day, hours=1))
            await wait_until(lambda d=day: flipped(d), 30, f"flip {day}")
            if day == 1:
                await sell(1)
        await wait_until(lambda: counted(2 * len(PRODUCTS)), 40, "the sales counted")

        # the analysis worker's estimates of periods 0 and 1 (started once their sales are
        # counted, so that its first look has them all), read by librdkafka: every (metric,
        # estimator, arm) against the control once per look (random days: fe, dm, ht of units,
        # revenue and the price paid), ht not identified per arm
        quick = settings.model_copy(update={"analysis_interval": 0.5})
        analysis = WorkerProcess(quick, ("analysis",)).start()
        loop = asyncio.get_running_loop()
        # every (metric, estimator, arm) of the look, and its demand curve
        metrics = ("units", "revenue", "profit", "price")
        want = len(metrics) * 3 * len(OTHERS) + 2
        messages = await loop.run_in_executor(None, _arm_estimates, settings, exp, want, 120.0)
        (demand,) = [d for d in messages if d.get("kind") == "demand"]
        (verdict,) = [d for d in messages if d.get("kind") == "verdict"]
        look = [d for d in messages if d.get("kind") is None]
        keys = sorted((d["metric"], d["estimator"], d["arm"]) for d in look)
        assert keys == sorted(
            (m, e, a) for m in metrics for e in ("fe", "dm", "ht") for a in OTHERS
        )
        for d in look:
            if d["estimator"] == "ht":
                assert d["identified"] is False and "design probability" in d["note"]
                assert d["cs_low"] is None
                continue
            assert d["cs_split"] == len(OTHERS)  # each arm's sequence at alpha / 3
            if d["se"] > 0:
                assert d["cs_low"] < d["ci_low"] and d["ci_high"] < d["cs_high"], d
            assert d["sim_ci_low"] <= d["ci_low"] <= d["ci_high"] <= d["sim_ci_high"], d
            if d["se"] > 0:  # (the price paid here is exact: 10 x the arm's ratio, SE 0)
                assert d["sim_ci_low"] < d["ci_low"] and d["ci_high"] < d["sim_ci_high"], d
            dunnett = d["estimator"] == "dm" and d["metric"] != "price"
            assert d["sim_method"] == ("dunnett-t" if dunnett else "bonferroni"), d
        # the verdict on profit (every product has a unit cost) names an arm: the one it
        # ships, or the leading one whose figures it gives, with every arm's sequence
        assert verdict["metric"] == "profit" and verdict["arm"] in OTHERS
        assert verdict["verdict"] in ("ship", "do_not_ship", "keep_running")
        assert {a["arm"] for a in verdict["arms"]} == set(OTHERS)
        # the ladder's demand curve and recommended price, as the pricing team reads them
        assert demand["as_of"] == look[0]["as_of"] and demand["estimator"] == "demand"
        assert [p["arm"] for p in demand["points"]] == ["p90", "p95", "list", "p105"]
        assert [p["price_ratio"] for p in demand["points"]] == [0.9, 0.95, 1.0, 1.05]
        assert demand["elasticity"] < 0 and len(demand["curve"]) == 101
        low, best, high = (demand[f"optimal_price_ratio{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert 0.9 <= best <= 1.05
        # a look of two periods: an interval inside the ladder, or none, with the reason
        if demand["identified"]:
            assert 0.9 <= low <= best <= high <= 1.05
        else:
            assert low is None and high is None and demand["reason"] in demand["notes"]
        # labelled beside the look's verdict: evidence, not a second decision
        assert demand["reading"]["verdict"] == verdict["verdict"], demand["reading"]
        assert isinstance(demand["at_range_edge"], bool)
        assert demand["control_cost_per_cell"] > 0  # the costs reached the worker as profit
        dm = {d["arm"]: d for d in look if (d["estimator"], d["metric"]) == ("dm", "units")}
        assert dm["p95"]["effect"] > 0 > dm["p105"]["effect"]

        async def settled(status: str) -> dict[str, dict[str, Any]]:
            """Once the client holds every product's message of the experiment's latest
            decision (``status``), its view by product."""
            seq = (await store.get_experiment(exp)).seq

            def done() -> bool:
                view = client.snapshot()
                return all(
                    (m := view.get((exp, p))) is not None
                    and m["seq"] == seq
                    and m["status"] == status
                    for p in PRODUCTS
                )

            await wait_until(done, 60, f"the pricing system to read the {status} messages")
            return {p: client.snapshot()[(exp, p)] for p in PRODUCTS}

        def named(view: dict[str, dict[str, Any]]) -> set[str]:
            """The policies in force; each message names its arm, its role and price ratio."""
            for m in view.values():
                arm = ARM_OF[m["policy"]]
                assert m["arm_name"] == arm["name"]
                assert m["price_ratio"] == arm["price_ratio"]
                assert m["arm"] == ("control" if arm.get("control") else "treatment")
            return {m["policy"] for m in view.values()}

        running = await settled("running")
        # what the controller recorded for the period in force is what the client holds
        records = await store.assignment_records(exp, 2)
        assert {p: LADDER[int(r[0])]["policy"] for p, r in records.items()} == {
            p: m["policy"] for p, m in running.items()
        }
        assert named(running) == POLICIES
        phases = [running]
        for kind, fields, status in (
            ("pause", {"experiment": exp, "reason": "price check"}, "paused"),
            ("resume", {"experiment": exp}, "running"),
            (
                "freeze",
                {
                    "freeze": {
                        "id": "stock-take",
                        "start": (START + timedelta(days=2)).isoformat(),
                        "end": (START + timedelta(days=2, hours=12)).isoformat(),
                        "experiments": [exp],
                        "reason": "stock-take",
                    }
                },
                "frozen",
            ),
            ("stop", {"experiment": exp, "reason": "done"}, "stopped"),
        ):
            command_ok(await send_command_async(settings, kind, timeout=60, **fields))
            view = await settled(status)
            assert named(view) == (POLICIES if status == "running" else {"list-price"}), status
            phases.append(view)
        for p in PRODUCTS:
            seqs = [view[p]["seq"] for view in phases]
            assert seqs == sorted(set(seqs)), (p, seqs)  # strictly rising through the phases
            printed = [m["seq"] for m in client.history[(exp, p)]]
            assert printed == sorted(set(printed)), (p, printed)
        assert client.errors == []
        # its lines for people name each policy's arm
        first = running[PRODUCTS[0]]
        line = (
            f"{exp} {PRODUCTS[0]}: {first['policy']} ({first['arm_name']}) seq {first['seq']} "
            "running"
        )
        assert line in client.said, client.said[:5]

        # the panel the worker would analyse names each cell's arm; analysed offline, every
        # arm against the control
        out = tmp_path / "ladder.csv"
        exported = pricelab(settings, "panel", "export", exp, "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        lines = exported.stdout.splitlines()
        (hint,) = [line for line in lines if line.startswith("analyse it:")]
        assert "--arm arm --control list" in hint, hint
        panel = pd.read_csv(out)
        assert set(panel["arm"]) == set(ARM_OF[p]["name"] for p in POLICIES)
        assert (panel["treated"] == (panel["arm"] != "list").astype(int)).all()
        ratio = {a["name"]: a["price_ratio"] for a in LADDER}
        assert (panel["price_ratio"] == panel["arm"].map(ratio)).all()
        usable = panel[~panel["blackout"]]
        assert sorted(usable["period"].unique()) == [0, 1]  # period 2: paused, then stopped
        assert usable["units"].sum() == sum(
            5 + i % 7 + k for i in range(len(PRODUCTS)) for k in (0, 1)
        ) + sum(LIFT[a] for a in usable["arm"])
        command = hint.split("pricelab ", 1)[1].split()
        offline = pricelab(settings, *command, "--json")
        assert offline.returncode == 0, offline.stderr
        got = json.loads(offline.stdout)
        assert got["control"] == "list"
        by_arm = {a["arm"]: a for a in got["arms"]}
        assert set(by_arm) == set(OTHERS)
        assert by_arm["p95"]["effect"] > 0 > by_arm["p105"]["effect"]
        # the export's demand command gives the figures the worker published
        (curve,) = [line for line in lines if line.startswith("its demand curve:")]
        offline = pricelab(settings, *curve.split("pricelab ", 1)[1].split(), "--json")
        assert offline.returncode == 0, offline.stderr
        mine = json.loads(offline.stdout)
        for key in ("elasticity", "elasticity_ci_low", "elasticity_ci_high",
                    "optimal_price_ratio", "optimal_price_ratio_ci_low",
                    "optimal_price_ratio_ci_high", "at_range_edge", "profit_change_at_optimum",
                    "identified", "reason"):  # fmt: skip
            want = demand[key]  # a number, or null / a flag / a sentence, the same
            assert mine[key] == (pytest.approx(want, rel=1e-9) if isinstance(want, float)
                                 else want), key  # fmt: skip
    finally:
        await pub.stop()
        if client is not None:
            code = client.stop()
        if worker is not None:
            worker.stop()
        if analysis is not None:
            analysis.stop()
        await redis.aclose()
    assert code == 0, "the pricing system did not close cleanly on SIGTERM"
