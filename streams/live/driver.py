"""Experiments on simulated markets, run through the live pipeline (demo, studies, tests).

A :class:`LiveDriver` plays the rest of the world for experiments that share one calendar. For
each period it:

1. sets the shared simulated clock to the period's start and waits for every experiment's flip
   on the assignment topic, as a pricing system would read it;
2. moves the clock to 2 ms before the period's end, simulates each market's day under the
   arms in force (:class:`lab.market.Market`) and sends its sales to the sales topic - and,
   for triggered designs, the market's competitor prices to the competitor-prices topic, so
   that the controller's trigger runner fires the windows (run the workers with
   :func:`lockstep_settings`: the prices of a day arrive at its end);
3. waits until every sale is counted in Redis and every trigger due is recorded;
4. moves the clock 1 ms on, to the look's instant, waits for one analysis cycle as of it and
   records what it published: one *look* per period, every experiment seen on the same
   completed periods. No cycle as of that instant can have started before the period's sales
   were all counted.

Lock-step makes a run a function of its seeds: the same seeds give the same looks, however
fast the machine, which is what the restart and coverage studies compare.

The truth of a look is the market's true (global) effect averaged over the cells the
experiment analysed so far (randomised, not blacked out), each scaled by the share of its
day's expected sales that fall in the analysis window (the live panel counts sales after the
washout-length head of every period).

A price ladder (a spec of more than two arms, each with a ``price_ratio``) is played as its
prices: the driver records each cell's arm and listed ratio from the assignment message and
draws the market's period under the ratios in force; its truths are per arm
(:meth:`LiveRun.arm_truth`) and the true profit-maximising ratio
(:meth:`LiveRun.optimal_ratio_truth`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from analysis.verdict import decision_metric, more_days_change
from controller.periods import n_periods, period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import Store
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from controller.triggers import TriggerTracker
from core import status
from core.ports import EFFECT_UNITS, metric_name
from lab.market import DayOutcome, Market, in_force
from lab.price import ladder_ratios
from lab.simulate import competitor_rng, experiment_slots
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import JsonPublisher

Say = Callable[[str], None]


@dataclass
class LiveRun:
    """One experiment of a live simulation and what the driver saw of it."""

    spec: ExperimentSpec
    market: Market
    sales_seed: int = 0
    #: each cell treated (any arm but control)
    arms: np.ndarray = field(init=False, repr=False)
    #: each cell's arm, its index in the spec's arm list
    arm_index: np.ndarray = field(init=False, repr=False)
    #: a price ladder's listed ratio of each cell (1: control's price); None for two arms
    ratios: np.ndarray | None = field(init=False, repr=False)
    analysed: np.ndarray = field(init=False, repr=False)
    true_effect: np.ndarray = field(init=False, repr=False)
    control_units: np.ndarray = field(init=False, repr=False)  # E[units | never treated]
    window_share: np.ndarray = field(init=False, repr=False)
    units_sent: int = 0
    #: the periods played so far (by :meth:`LiveDriver.run`, and the runs it continued)
    played: int = 0
    events_sent: int = 0
    estimates: list[dict[str, Any]] = field(default_factory=list, repr=False)
    verdicts: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: a price ladder's demand curves (kind: demand), one per look
    demands: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: an adaptive ladder's looks (kind: adaptive: its arms and recorded probabilities)
    adaptive: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: an adaptive ladder's probabilities per period as its assignment messages carry them
    #: (arm name -> probability), each period's first message's
    probabilities: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)
    expected_triggers: TriggerTracker | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n, t = len(self.market.product_ids), n_periods(self.spec)
        self.index = {p: i for i, p in enumerate(self.market.product_ids)}
        self.arms = np.zeros((n, t), dtype=bool)
        self.arm_index = np.full((n, t), self.spec.control_index)
        #: a price ladder's listed ratio of each arm (spec order); None for two arms
        self.ladder = ladder_ratios(self.spec)
        self.ratios = None
        if self.ladder is not None:
            self.market.check_price_only()
            self.ratios = np.ones((n, t))
        self.analysed = np.zeros((n, t), dtype=bool)
        self.true_effect = np.zeros((n, t))
        self.control_units = np.zeros((n, t))
        self.window_share = np.ones(t)
        # the spec's unit costs (None: profit is not estimated, so it has no truth either)
        costs = self.spec.costs_of(self.market.product_ids)
        self.unit_cost: np.ndarray | None = None if costs is None else np.array(costs)
        self.rng = np.random.default_rng(self.sales_seed)
        #: the market's view of every period (its day, hours and share of the day's demand)
        self.slots = experiment_slots(self.spec, self.market)
        self.daily = self.slots[0].per_day == 1
        self._competitor_days: dict[int, list[dict[str, Any]]] = {}
        if self.spec.triggered is not None:
            self.expected_triggers = TriggerTracker(self.spec)
            self.expected_triggers.seed_references(dict(self.spec.triggered.reference_prices))

    @property
    def id(self) -> str:
        return self.spec.id

    def record(self, d: int, product: str, msg: dict[str, Any], p_end: datetime) -> None:
        """Cell (``product``, period ``d``) as its assignment message puts it in force: treated
        or not, its arm, a ladder's listed ratio, and whether the analysis uses it (randomised,
        not blacked out for the whole period ending at ``p_end``)."""
        i = self.index[product]
        self.arms[i, d] = msg["arm"] == "treatment"
        self.arm_index[i, d] = assigned_arm(self.spec, msg)
        if self.ratios is not None:
            self.ratios[i, d] = listed_ratio(self.spec, msg)
        until = msg.get("blackout_until")
        whole = until is not None and datetime.fromisoformat(until) >= p_end
        prob = float(msg["probability"])
        self.analysed[i, d] = 0.0 < prob < 1.0 and not whole
        shares = msg.get("probabilities")
        if shares is not None:
            self.probabilities.setdefault(d, {str(k): float(v) for k, v in shares.items()})

    def draw_period(self, d: int) -> DayOutcome:
        """The market's period ``d`` under the arms recorded in force (a ladder: at their
        listed ratios, :meth:`lab.market.Market.period_outcomes` with ``ratio_history``); its
        true effect and expected control units are kept."""
        cols = in_force(self.slots, d, self.market.cfg.carryover_order)
        ratios = None if self.ratios is None else self.ratios[:, cols]
        out = self.market.period_outcomes(self.slots[d], self.arms[:, cols], ratios)
        self.true_effect[:, d] = out.true_effect
        self.control_units[:, d] = out.expected_units_control
        return out

    def truth(
        self, periods: int | None = None, metric: str = "units", relative: bool = False
    ) -> float:
        """The estimand of ``metric`` over the first ``periods`` periods (all by default):
        the absolute effect, or with ``relative`` the effect over the control mean, over the
        cells the experiment analysed, each scaled to its analysis window
        (:meth:`lab.market.Market.metric_truth`; the elasticity:
        :meth:`lab.market.Market.elasticity_truth`). Two arms: a ladder's truths are per arm
        (:meth:`arm_truth`)."""
        if self.ladder is not None:
            raise ValueError(
                f"the {self.spec.n_arms}-arm experiment {self.id!r} has a truth per arm: "
                "ask arm_truth(arm, ...)"
            )
        k = self.arms.shape[1] if periods is None else periods
        cells = self.analysed[:, :k]
        if metric == "elasticity":
            return self.market.elasticity_truth(cells, self.arms[:, :k])
        share = self.window_share[None, :k]
        return self.market.metric_truth(
            cells,
            self.control_units[:, :k] * share,
            self.true_effect[:, :k] * share,
            metric,
            self.unit_cost,
            relative=relative,
        )

    def _ladder_cells(self, periods: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A ladder's analysed cells of the first ``periods`` periods, their expected control
        units and untreated means ``mu0``, both scaled to the analysis window."""
        if self.ladder is None:
            raise ValueError(f"experiment {self.id!r} is no price ladder")
        k = self.arms.shape[1] if periods is None else periods
        share = self.window_share[None, :k]
        untreated = self.market.untreated_means(self.slots[:k]) * share
        return self.analysed[:, :k], self.control_units[:, :k] * share, untreated

    def arm_truth(
        self, arm: str, periods: int | None = None, metric: str = "units", relative: bool = False
    ) -> float:
        """A price ladder's estimand for ``arm`` (a name, not the control) against control
        on ``metric`` over the first ``periods`` periods: over every analysed cell (all arms'),
        the arm's global effect at its listed price, scaled to the analysis window
        (:meth:`lab.market.Market.arm_metric_truth`, as
        :meth:`lab.simulate.SimulatedExperiment.metric_truth` with ``arm``)."""
        names = [a.name for a in self.spec.arm_list()]
        if arm not in names or names.index(arm) == self.spec.control_index:
            raise ValueError(f"{arm!r} is no treatment arm of {self.id!r}")
        cells, control, untreated = self._ladder_cells(periods)
        assert self.ladder is not None
        return self.market.arm_metric_truth(
            cells, control, untreated, metric, self.unit_cost,
            ratio=float(self.ladder[names.index(arm)]), relative=relative,
        )  # fmt: skip

    def optimal_ratio_truth(self, periods: int | None = None) -> float:
        """The listed ratio between the ladder's lowest and highest that maximises the true
        expected profit over the analysed cells of the first ``periods`` periods, every
        product listed at it, with the spec's unit costs (NaN without them;
        :meth:`lab.market.Market.cells_optimal_ratio`, as
        :meth:`lab.simulate.SimulatedExperiment.optimal_ratio_truth`)."""
        cells, _, untreated = self._ladder_cells(periods)
        assert self.ladder is not None
        return self.market.cells_optimal_ratio(
            cells, untreated, self.unit_cost, float(self.ladder.min()), float(self.ladder.max())
        )

    def truths(self, periods: int | None = None) -> dict[str, tuple[float, float]]:
        """metric -> (true absolute effect, true relative effect) for every metric the market
        knows the truth of here (profit: with the spec's costs); the elasticity's relative
        form repeats its value."""
        out = {}
        for metric in ("units", "revenue", "profit", "price"):
            t = self.truth(periods, metric)
            if math.isfinite(t):
                out[metric] = (t, self.truth(periods, metric, relative=True))
        e = self.truth(periods, "elasticity")
        out["elasticity"] = (e, e)
        return out

    @property
    def decision_metric(self) -> str:
        """The metric the verdict decides on (the spec's, as the analysis worker reads it)."""
        return decision_metric(self.spec.model_dump(mode="json"))

    def looks(
        self,
        estimator: str,
        segment: str | None = None,
        metric: str = "units",
        arm: str | None = None,
    ) -> dict[int, dict[str, Any]]:
        """period count -> the estimate of ``estimator`` of ``metric`` (on the whole
        experiment, or on one ``segment``; of a k-arm experiment, of ``arm`` against control)
        published at that look (the last one published as of each look's instant)."""
        out: dict[int, dict[str, Any]] = {}
        for e in self.estimates:
            if (
                e["estimator"] == estimator
                and metric_of(e) == metric
                and e.get("segment") == segment
                and e.get("arm") == arm
                and e.get("_look") is not None
            ):
                out[int(e["_look"])] = e
        return dict(sorted(out.items()))


@dataclass
class DriverConfig:
    duplicates_per_day: int = 0  # sales sent twice: must be counted once
    malformed_per_day: int = 0  # undecodable sales: must go to the dead-letter topic
    timeout: float = 120.0  # seconds any one wait may take


class Watched(Protocol):
    """A worker the driver watches: a process it started (``WorkerProcess``) or one it did
    not (``streams.live.play.RemoteWorker``)."""

    def check_alive(self) -> None: ...

    def metrics(self) -> str: ...


class LiveDriver:
    """Drives :class:`LiveRun` experiments through running workers (see the module)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        controller: Sequence[Watched],
        analysis: Watched,
        cfg: DriverConfig | None = None,
        say: Say | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = SharedSimulatedClock(store.redis, clock_key(settings.key_prefix))
        self.controller = list(controller)
        self.analysis = analysis
        self.cfg = cfg or DriverConfig()
        self.say = say or (lambda _msg: None)
        self._assigned: dict[tuple[str, int, str], tuple[int, dict[str, Any]]] = {}
        #: the first message of each (experiment, period, product): the flip's, which a
        #: continued run's replay of the periods played before it reads (:meth:`resume`)
        self._flip_msg: dict[tuple[str, int, str], tuple[int, dict[str, Any]]] = {}
        self._looks: dict[float, set[tuple[str, str | None, str, str, str]]] = {}
        self._instants: dict[float, int] = {}  # look instant -> periods complete at it
        self._runs: dict[str, LiveRun] = {}
        self.wall: dict[str, float] = {}

    # ------------------------------------------------------------------ plumbing
    async def __aenter__(self) -> LiveDriver:
        kw = self.settings.kafka.client_kwargs()
        self.consumer = AIOKafkaConsumer(**kw, enable_auto_commit=False)  # type: ignore[arg-type]
        await self.consumer.start()
        topics = [self.settings.topics.assignments, self.settings.topics.estimates]
        parts = [
            TopicPartition(t, p) for t in topics for p in range(self.settings.kafka.partitions)
        ]
        self.consumer.assign(parts)
        await self.consumer.seek_to_beginning(*parts)
        self.publisher = JsonPublisher(self.settings, linger_ms=20)
        await self.publisher.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.publisher.stop()
        await self.consumer.stop()

    def _check_workers(self) -> None:
        for w in [*self.controller, self.analysis]:
            w.check_alive()

    async def _poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=50)
        for records in batch.values():
            for r in records:
                doc = json.loads(r.value)
                if "estimator" in doc:
                    self._estimate(doc)
                elif "period" in doc and "seq" in doc:
                    key = (doc["experiment"], int(doc["period"]), doc["product"])
                    seen = self._assigned.get(key)
                    if seen is None or doc["seq"] >= seen[0]:
                        self._assigned[key] = (int(doc["seq"]), doc)
                    first = self._flip_msg.get(key)
                    if first is None or doc["seq"] < first[0]:
                        self._flip_msg[key] = (int(doc["seq"]), doc)

    def _estimate(self, doc: dict[str, Any]) -> None:
        """An estimate, a verdict (``kind: verdict``), a demand curve (``kind: demand``) or an
        adaptive ladder's look (``kind: adaptive``):
        counted towards its cycle's messages and kept on its run, each in its own list."""
        as_of = datetime.fromisoformat(doc["as_of"]).timestamp()
        kind = doc.get("kind") or doc.get("metric")
        # one key per message of a cycle: a k-arm experiment's estimates differ by arm
        key = (doc["experiment"], kind, doc["estimator"], doc.get("segment") or "",
               doc.get("arm") or "")  # fmt: skip
        self._looks.setdefault(as_of, set()).add(key)
        run = self._runs.get(doc["experiment"])
        if run is None:
            return
        # an estimate belongs to a look only when it was computed as of the look's instant;
        # cycles that ran between looks (the clock at a period start) saw other panels
        doc["_look"] = self._instants.get(as_of)
        lists = {"verdict": run.verdicts, "demand": run.demands, "adaptive": run.adaptive}
        lists.get(str(doc.get("kind")), run.estimates).append(doc)

    async def _until(
        self,
        what: str,
        done: Callable[[], Awaitable[bool]],
        detail: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        deadline = time.monotonic() + self.cfg.timeout
        t0 = time.monotonic()
        while not await done():
            self._check_workers()
            if time.monotonic() > deadline:
                said = f" ({await detail()})" if detail is not None else ""
                raise TimeoutError(f"{what}: not within {self.cfg.timeout:.0f}s{said}")
            await self._poll()
        self.wall[what.split(" ")[0]] = self.wall.get(what.split(" ")[0], 0.0) + (
            time.monotonic() - t0
        )

    # ------------------------------------------------------------------ the run
    async def create(self, runs: Sequence[LiveRun]) -> None:
        """Create every experiment through the commands topic, as an operator would."""
        start = min(r.spec.start for r in runs)
        await self.clock.set(start - timedelta(hours=1))
        for run in runs:
            self._runs[run.id] = run
            reply = await send_command_async(
                self.settings, "create", timeout=90.0, spec=run.spec.model_dump(mode="json")
            )
            if not reply.get("ok"):
                raise RuntimeError(f"create {run.id} refused: {reply.get('error')}")

    async def resume(self, run: LiveRun, first: int) -> None:
        """Take over ``run``'s experiment, which an earlier run played up to period ``first``
        (its looks done; the experiment running): the periods before are replayed without
        sending anything - their flips' assignments read back from the topic, the market's
        periods and sales drawn again from the same seeds - so the run goes on as one that
        was never interrupted would, truths included; their looks' estimates are read back
        as theirs. Raises ValueError when the sales counted in Redis are not the ones the
        replay draws (another seed or market than the first run's)."""
        self._runs[run.id] = run
        for d in range(first):
            p_start, p_end = period_bounds(run.spec, d)
            if p_start != p_end:
                self._instants[(p_end - timedelta(milliseconds=1)).timestamp()] = d

        async def flips_read() -> bool:
            return all(
                (run.id, d, p) in self._flip_msg
                for d in range(first)
                if period_bounds(run.spec, d)[0] != period_bounds(run.spec, d)[1]
                for p in run.index
            )

        await self._until(f"assignments of the {first} periods played", flips_read)
        run.played = first
        drawn = 0.0
        for d in range(first):
            p_start, p_end = period_bounds(run.spec, d)
            if p_start == p_end:
                continue
            for product in run.index:
                run.record(d, product, self._flip_msg[(run.id, d, product)][1], p_end)
            slot = run.slots[d]
            profile = None if run.daily else slot.hour_weights
            run.window_share[d] = run.market.window_share(p_start, p_end, run.spec.washout, profile)
            _, events = self._day(run, d, p_start, p_end)
            drawn += sum(e["units"] for e in events)
            run.events_sent += len(events)
        totals = await self.store.totals(run.id)
        counted = sum(v for k, v in totals.items() if k.startswith("units:"))
        if abs(counted - drawn) > 1e-6 * max(1.0, abs(drawn)):
            raise ValueError(
                f"the {counted:g} units counted for {run.id!r} in its {first} periods played are "
                f"not the {drawn:g} this market's seed draws for them: continue it with the "
                "--seed (and --market) of the run that created it"
            )
        run.units_sent = round(drawn)  # the market draws whole units; the store counted them

    async def run(
        self,
        runs: Sequence[LiveRun],
        before_look: Callable[[int], Awaitable[None]] | None = None,
        after_look: Callable[[int], Awaitable[None]] | None = None,
        periods: int | None = None,
        first: int = 0,
        after_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """Every period of the runs (which share their calendar), then the final look; or
        only ``periods`` periods, leaving the experiments running. ``first``: the period to
        begin with (a continued run: :meth:`resume`).

        ``after_send(d)`` runs once period d's sales are sent to the broker and before the
        driver waits for them to be counted (they are in flight: a kill there tests that each
        is counted once), ``before_look(d)`` once they are in (the clock 2 ms before the
        period's end), ``after_look(d)`` once the look, 1 ms later, is recorded."""
        spec0 = runs[0].spec
        left = n_periods(spec0) - first
        days = first + (left if periods is None else min(periods, left))
        for run in runs:
            if (run.spec.start, run.spec.end, run.spec.timezone, run.spec.period) != (
                spec0.start, spec0.end, spec0.timezone, spec0.period,
            ):  # fmt: skip
                raise ValueError("the runs of one driver must share their calendar")
        triggered = any(r.expected_triggers is not None for r in runs)
        if triggered and self.settings.trigger_watermark_lag < spec0.period:
            raise ValueError(
                "the driver delivers a period's competitor prices at its end: run the workers "
                "with trigger_watermark_lag of at least one period (lockstep_settings)"
            )
        for d in range(first, days):
            p_start, p_end = period_bounds(spec0, d)
            if p_start == p_end:  # an hour the spring-forward night skips: no flip, no sale
                continue
            await self.clock.set(p_start)
            await self._until(f"flip of period {d}", partial(self._flipped, runs, d))
            for run in runs:
                self._record_period(run, d, p_start, p_end)
            # the day's events are sent once the clock stands at its end: none is in the future.
            # It stands 1 ms before the look's instant: a cycle that runs while the sales are
            # still coming in sees part of the day, and must not be taken for the look's
            await self.clock.set(p_end - timedelta(milliseconds=2))
            await self._send_day(runs, d, p_start, p_end)
            if after_send is not None:
                await after_send(d)
            await self._until(
                f"sales of period {d}", partial(self._accounted, runs), partial(self._counts, runs)
            )
            await self._until(f"triggers of period {d}", partial(self._triggered, runs, d))
            if before_look is not None:
                await before_look(d)
            await self._look(p_end - timedelta(milliseconds=1), d)
            for run in runs:
                run.played = d + 1
            if after_look is not None:
                await after_look(d)
        if days < n_periods(spec0):
            return
        await self.clock.set(spec0.end + timedelta(minutes=1))
        await self._until("end of the experiments", partial(self._ended, runs))
        # a cycle as of a later instant started after every experiment had ended
        await self._look(spec0.end + timedelta(minutes=2), days)

    async def _ended(self, runs: Sequence[LiveRun]) -> bool:
        """Every experiment marked ended: its last period is complete for the analysis."""
        for run in runs:
            if (await self.store.get_experiment(run.id)).status != status.ENDED:
                return False
        return True

    async def _flipped(self, runs: Sequence[LiveRun], d: int) -> bool:
        return all((run.id, d, p) in self._assigned for run in runs for p in run.index)

    def _record_period(self, run: LiveRun, d: int, p_start: datetime, p_end: datetime) -> None:
        for product in run.index:
            run.record(d, product, self._assigned[(run.id, d, product)][1], p_end)
        slot = run.slots[d]
        profile = None if run.daily else slot.hour_weights  # a day: 24 equal slices, as ever
        run.window_share[d] = run.market.window_share(p_start, p_end, run.spec.washout, profile)

    def _competitor_events(self, run: LiveRun, d: int) -> list[dict[str, Any]]:
        """Period d's competitor observations: its day's (episodes are a day's), those that
        fall in the period."""
        day = run.slots[d].day
        if day not in run._competitor_days:
            start, end = (t.astimezone(UTC) for t in run.market.day_window(day))
            rng = competitor_rng(run.market, day)
            run._competitor_days[day] = run.market.competitor_events(day, start, end, rng)
        if run.daily:
            return run._competitor_days[day]
        slot = run.slots[d]
        return [e for e in run._competitor_days[day] if slot.start <= e["observed_at"] < slot.end]

    async def _send_day(
        self, runs: Sequence[LiveRun], d: int, p_start: datetime, p_end: datetime
    ) -> None:
        topics = self.settings.topics
        for run in runs:
            prices, events = self._day(run, d, p_start, p_end)
            for e in prices:
                await self.publisher.send(topics.competitor_prices, _price_bytes(e), e["product"])
            for e in events:
                await self.publisher.send(topics.sales, _sale_bytes(e), e["product"])
                run.units_sent += e["units"]
            for e in events[: self.cfg.duplicates_per_day]:
                await self.publisher.send(topics.sales, _sale_bytes(e), e["product"])
            for j in range(self.cfg.malformed_per_day):
                await self.publisher.send(topics.sales, _malformed(j, p_start), None)
            run.events_sent += len(events)
        await self.publisher.flush()

    def _day(
        self, run: LiveRun, d: int, p_start: datetime, p_end: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Period d of ``run``'s world: its competitor prices (a triggered design's, observed
        by the run's trigger tracker) and the market's sales under the arms in force, drawn
        from the run's streams (so a replay of the same periods draws the same)."""
        prices: list[dict[str, Any]] = []
        if run.expected_triggers is not None:
            prices = _with_end_of_day(self._competitor_events(run, d), p_end)
            for e in prices:
                run.expected_triggers.observe_competitor(
                    e["product"], e["competitor"], e["price"], e["observed_at"]
                )
            run.expected_triggers.advance(p_end - timedelta(milliseconds=2))
        out = run.draw_period(d)
        profile = None if run.daily else run.slots[d].hour_weights
        return prices, run.market.sale_events(d, p_start, p_end, out, run.rng, profile)

    async def _accounted(self, runs: Sequence[LiveRun]) -> bool:
        for run in runs:
            totals = await self.store.totals(run.id)
            if sum(v for k, v in totals.items() if k.startswith("units:")) < run.units_sent:
                return False
        return True

    async def _counts(self, runs: Sequence[LiveRun]) -> str:
        out = []
        for run in runs:
            totals = await self.store.totals(run.id)
            out.append(f"{run.id}: {run.units_sent} units sent, counted {totals}")
        return "; ".join(out)

    async def _triggered(self, runs: Sequence[LiveRun], d: int) -> bool:
        """Every fire the controller must have recorded before the flip of period d + 1."""
        for run in runs:
            if run.expected_triggers is None:
                continue
            due = {p: k for p, k in run.expected_triggers.triggers.items() if k <= d + 1}
            if not due:
                continue
            have = await self.store.triggers(run.id)
            if any(have.get(p) != k for p, k in due.items()):
                return False
        return True

    async def _look(self, at: datetime, periods: int) -> None:
        """Move the clock to ``at`` (when ``periods`` periods are complete) and wait for an
        analysis cycle as of it and for everything it published.

        The clock has stood before ``at`` until now, so every cycle as of ``at`` read the
        panel after the driver had seen the whole period counted: a cycle that started while
        sales were coming in cannot pass for the look's, however late its estimates arrive."""
        target = at.timestamp()
        if self._looks.get(target):
            raise RuntimeError(f"estimates as of {at.isoformat()} came before its look")
        self._instants[target] = periods
        await self.clock.set(at)
        loop = asyncio.get_running_loop()

        async def cycle_done() -> bool:
            try:
                text = await loop.run_in_executor(None, self.analysis.metrics)
            except OSError:  # restarting: its metrics server is not up yet
                return False
            last = metric_value(text, "pricelab_analysis_last_cycle_timestamp_seconds")
            if last < target - 0.0005:
                return False
            want = int(metric_value(text, "pricelab_analysis_last_cycle_estimates"))
            return len(self._looks.get(last, set())) >= want

        await self._until(f"look at {at.isoformat()}", cycle_done)

    async def restart_controller(self, i: int = 0) -> tuple[WorkerProcess, int | None]:
        """Kill the ``i``-th controller worker with SIGKILL, start a new one with the same
        settings (off the event loop) and watch it from now on; returns the new worker and the
        old one's exit status."""
        return await _respawn(self.controller[i], lambda new: self.controller.__setitem__(i, new))

    def replace_analysis(self, worker: Watched) -> None:
        """The analysis worker was restarted: read the new process's metrics from now on."""
        self.analysis = worker

    async def restart_analysis(self) -> tuple[WorkerProcess, int | None]:
        """Kill the analysis worker with SIGKILL, start a new one (off the event loop) and read
        its metrics from now on; returns the new worker and the old one's exit status."""
        return await _respawn(self.analysis, self.replace_analysis)


async def _respawn(
    old: Watched, watch: Callable[[WorkerProcess], None]
) -> tuple[WorkerProcess, int | None]:
    """Kill ``old`` with SIGKILL and start its like; the new process is handed to ``watch``
    before it is waited for (so whoever stops the driver's workers stops it too: a start that
    never becomes healthy must not leave its process behind). The new worker and the old
    one's exit status."""
    if not isinstance(old, WorkerProcess):
        raise TypeError("only a worker this process started can be restarted")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, old.kill9)
    code = None if old.proc is None else old.proc.returncode
    new = WorkerProcess(old.settings, old.roles, env=old.env).launch()
    watch(new)
    await loop.run_in_executor(None, new.wait_healthy)
    return new, code


def assigned_arm(spec: ExperimentSpec, msg: dict[str, Any]) -> int:
    """The index in ``spec``'s arm list of the arm an assignment message puts in force: its
    ``arm_name`` (an ``arms:`` spec's messages name it), else its role (two arms)."""
    name = msg.get("arm_name")
    if name is None:
        return spec.index_of(str(msg["arm"]))
    names = [a.name for a in spec.arm_list()]
    if name not in names:
        raise ValueError(f"assignment of {msg.get('product')!r} names arm {name!r}, not in {names}")
    return names.index(name)


def listed_ratio(spec: ExperimentSpec, msg: dict[str, Any]) -> float:
    """The listed price ratio an assignment message puts in force (1: control's price): its
    ``price_ratio``, as a pricing system reads it, else the spec's ratio of the arm it names."""
    ratio = msg.get("price_ratio")
    if ratio is None:
        ratio = spec.arm_list()[assigned_arm(spec, msg)].price_ratio
    if ratio is None:
        raise ValueError(f"assignment of {msg.get('product')!r} gives no price ratio")
    return float(ratio)


def lockstep_settings(settings: Settings) -> Settings:
    """Settings for workers driven in lock-step: quick flip and analysis timers, and a trigger
    watermark lag of a day (a day's competitor prices arrive at its end, all at once)."""
    return settings.model_copy(
        update={
            "clock": "simulated",
            "tick_interval": 0.1,
            "analysis_interval": 0.5,
            "trigger_watermark_lag": timedelta(days=1),
        }
    )


def _with_end_of_day(events: list[dict[str, Any]], p_end: datetime) -> list[dict[str, Any]]:
    """The day's competitor observations plus, for each product and competitor, one more at the
    end of the day at its last price (a poll before the boundary): a sustained undercut whose
    duration elapsed during the day is then reported by an event, before the next flip."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        last[(e["product"], e["competitor"])] = e
    at = p_end - timedelta(milliseconds=2)
    closing = [e | {"observed_at": at} for e in last.values()]
    return events + sorted(closing, key=lambda e: (e["product"], e["competitor"]))


def _sale_bytes(e: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "event_id": e["event_id"],
            "product": e["product"],
            "units": e["units"],
            "revenue": round(e["revenue"], 6),
            "unit_price": e["unit_price"],
            "occurred_at": e["occurred_at"].astimezone(UTC).isoformat(),
        }
    ).encode()


def _price_bytes(e: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "product": e["product"],
            "competitor": e["competitor"],
            "price": e["price"],
            "observed_at": e["observed_at"].astimezone(UTC).isoformat(),
        }
    ).encode()


def _malformed(j: int, at: datetime) -> bytes:
    bad = [
        b'{"v": 1, "event_id": "x", "product": "P0001", "units": -3',
        json.dumps(
            {
                "v": 1,
                "event_id": f"bad-{uuid.uuid4().hex}",
                "product": "P0001",
                "units": 2,
                "revenue": 10.0,
                "unit_price": "NaN",
                "occurred_at": at.isoformat(),
            }
        ).encode(),
        "\u00ff\u00fe not json at all \u2603".encode(),
    ]
    return bad[j % len(bad)]


async def wait_healthy(workers: Sequence[WorkerProcess]) -> None:
    """Wait (without blocking the loop) until every worker's /health answers."""
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: [w.wait_healthy() for w in workers]
    )


def print_looks(say: Callable[[str], None], run: LiveRun, printed: set[tuple[str, int]]) -> None:
    """Say each look's verdict in one line, then every estimate of the decision metric of
    ``run`` published at a look and not said yet (``printed``); the other metrics are in the
    final :func:`scorecard`."""
    previous: dict[str, Any] | None = None
    for v in run.verdicts:
        look = v.get("_look")
        if look is None or ("verdict", look) in printed:
            previous = v if look is not None else previous
            continue
        printed.add(("verdict", int(look)))
        say(f"   verdict after {look:>2} periods: {verdict_line(v, previous)}")
        previous = v
    metric = run.decision_metric
    for name in sorted({e["estimator"] for e in run.estimates if metric_of(e) == metric}):
        for look, e in run.looks(name, metric=metric).items():
            if (name, look) in printed:
                continue
            printed.add((name, look))
            if e.get("identified") is False:
                say(f"   estimate {name:<4} after {look:>2} periods: {e.get('note')}")
                continue
            cs = (
                ""
                if e.get("cs_low") is None
                else f"  anytime CS [{e['cs_low']:+.2f}, {e['cs_high']:+.2f}]"
            )
            rel = e.get("relative_effect")
            say(
                f"   estimate {name:<4} after {look:>2} periods: {e['effect']:+.2f} {metric}/"
                f"product-{'day' if run.daily else 'period'}"
                + ("" if rel is None else f" ({rel:+.1%})")
                + f" (se {e['se']:.2f}, 95% CI [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]){cs}"
            )


def verdict_figure(v: dict[str, Any]) -> str:
    """The decision metric's figures of a verdict: relative with its anytime-valid sequence,
    or, while the relative sequence is unbounded (early looks), the effect in the metric's
    unit and percent where the point is known."""
    metric, rel = v["metric"], v.get("relative_effect")
    if rel is not None and v.get("relative_cs_low") is not None:
        return (
            f"{metric} {rel:+.1%} [{v['relative_cs_low']:+.1%}, {v['relative_cs_high']:+.1%}] "
            "anytime-valid"
        )
    unit = EFFECT_UNITS.get(metric, "")
    cs = (
        f" [{v['cs_low']:+.3g}, {v['cs_high']:+.3g}] anytime-valid"
        if v.get("cs_low") is not None and v.get("cs_high") is not None
        else ""
    )
    pct = f" ({rel:+.1%}, relative interval not bounded yet)" if rel is not None else ""
    return f"{metric} {v['effect']:+.3g}{cs} {unit}{pct}".rstrip()


def verdict_line(v: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    """A verdict in one line: the word, the decision metric's figures (k arms: of the arm it
    names), and for keep running the days still needed, with why they moved since the
    ``previous`` look's verdict when they did (:func:`analysis.verdict.more_days_change`)."""
    word = str(v["verdict"]).replace("_", " ")
    fig = verdict_figure(v)
    if v.get("arm") is not None:  # k arms: the figures are the named arm's
        fig = f"arm {v['arm']}: {fig}"
    tail = ""
    if v["verdict"] == "keep_running" and v.get("more_days"):
        tail = f"; about {math.ceil(v['more_days'])} more days for 80% power at {v['mde_pct']:g}%"
    elif v.get("decided_at") is not None and v["decided_at"] != v.get("n_periods"):
        tail = f"; decided after {v['decided_at']} periods"
    change = more_days_change(previous, v)
    if change:
        tail += f" ({change})"
    return f"{word} ({fig}{tail})"


def verdict_at(run: LiveRun, look: int) -> dict[str, Any] | None:
    """The verdict the worker published at ``look`` (the last one as of its instant)."""
    return next((v for v in reversed(run.verdicts) if v.get("_look") == look), None)


def metric_of(doc: dict[str, Any]) -> str:
    """An estimate message's metric: before metrics the worker published units as
    ``"outcome"`` (v1), and a message without the field is units too."""
    return metric_name(doc.get("metric"))


def primary_estimate(run: LiveRun, metric: str, look: int) -> dict[str, Any] | None:
    """The estimate of ``metric`` at ``look`` by the design's primary estimator of it: the
    first the worker published at that look (it publishes the design's estimators in order,
    so this is the first that measured the metric there), as the report's scorecard picks."""
    for e in run.estimates:
        if e.get("_look") == look and metric_of(e) == metric and e.get("segment") is None:
            if e.get("identified") is False and metric != "elasticity":
                continue  # said, not estimated (spillover for a design without a variance)
            return e
    return None


def _interval(lo: Any, hi: Any, fmt: str) -> str:
    return "no bounded interval" if lo is None or hi is None else f"[{lo:{fmt}}, {hi:{fmt}}]"


def scorecard(run: LiveRun, look: int) -> tuple[list[str], dict[str, bool]]:
    """The decision scorecard at ``look``: per metric the primary estimate, absolute and
    relative with their 95% intervals, and the truth the simulated market knows; then the
    elasticity; then a one-line reading. Returns the lines and, per metric and form, whether
    the interval covers the truth."""
    lines = [
        f"{'metric':<10} {'effect [95% CI]':<34} {'relative [95% CI]':<30} {'control':>9}  "
        "truth (abs, rel)"
    ]
    covered: dict[str, bool] = {}
    reading = []
    for metric, unit in EFFECT_UNITS.items():
        e = primary_estimate(run, metric, look)
        if e is None:
            if metric == "profit" and run.unit_cost is None:
                lines.append(f"{metric:<10} not estimated: the spec gives no unit costs")
            continue
        truth, rel_truth = run.truth(look, metric), run.truth(look, metric, relative=True)
        rel = e.get("relative_effect")
        rel_text = (
            f"{rel:+.2%} " + _interval(e.get("relative_ci_low"), e.get("relative_ci_high"), "+.2%")
            if rel is not None
            else "-"
        )
        absolute = f"{e['effect']:+.3f} {_interval(e['ci_low'], e['ci_high'], '+.3f')}"
        lines.append(
            f"{metric:<10} {absolute:<34} {rel_text:<30} {e.get('control_mean') or math.nan:>9.3f}  "
            f"{truth:+.3f}, {rel_truth:+.2%}   ({e['estimator']}; {unit})"
        )
        covered[metric] = e["ci_low"] <= truth <= e["ci_high"]
        if e.get("relative_ci_low") is not None:
            covered[f"{metric} relative"] = (
                e["relative_ci_low"] <= rel_truth <= e["relative_ci_high"]
            )
            reading.append(
                f"{metric} {rel:+.1%} [{e['relative_ci_low']:+.1%}, {e['relative_ci_high']:+.1%}]"
            )
    el = primary_estimate(run, "elasticity", look)
    if el is not None:
        truth = run.truth(look, "elasticity")
        if el.get("identified", True):
            lines.append(
                f"{'elasticity':<10} {el['effect']:+.3f} {_interval(el['ci_low'], el['ci_high'], '+.3f')}"
                f"{'':<10} true {truth:+.3f}   (within-product Wald, Fieller interval)"
            )
            covered["elasticity"] = el["ci_low"] <= truth <= el["ci_high"]
            reading.append(f"elasticity {el['effect']:+.2f}")
        else:
            lines.append(f"{'elasticity':<10} {el.get('note')}")
    lines.append("reading: " + "; ".join(reading))
    return lines, covered
