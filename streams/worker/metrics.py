"""Prometheus metrics, created once per process with an injectable registry.

The catalogue (also in README.md):

    pricelab_events_consumed_total{topic}                 events read from a topic
    pricelab_dead_letter_total{topic,reason}              events sent to the dead-letter topic
    pricelab_sales_total{status}                          sales by outcome (ok, head, dup, washout, ...)
    pricelab_sales_excluded_total{reason}                 sales kept for audit but not analysed
    pricelab_sales_batch_size                             events per sales batch (histogram)
    pricelab_sales_batch_duration_seconds                 time to apply one batch (histogram)
    pricelab_flips_total{experiment}                      period flips completed
    pricelab_missed_flips_total{experiment}               boundaries caught up after downtime
    pricelab_flip_duration_seconds                        time to write and publish one flip
    pricelab_flip_lateness_seconds                        clock time from boundary to published flip
    pricelab_assignments_published_total{status}          assignment messages published
    pricelab_commands_total{kind,outcome}                 operator commands handled
    pricelab_estimator_runtime_seconds{estimator}         time to fit one estimator
    pricelab_estimates_published_total{estimator}         estimates published
    pricelab_estimate_age_seconds{experiment,estimator}   clock time since the last estimate, of
                                                          the experiments this worker publishes
    pricelab_guardrail_trips_total{experiment,metric}     guardrails that stopped an experiment
    pricelab_consumer_lag{topic}                          events on the broker not yet processed
                                                          and committed by this worker (gauge)
    pricelab_redis_retries_total{component}               Redis calls retried after a failure
    pricelab_redis_waits_short_total                      sales batches retried, decisions and
                                                          replies held back, because fewer
                                                          replicas than PRICELAB_REDIS__WAIT_
                                                          REPLICAS acknowledged them in time
    pricelab_broker_retries_total{component}              timer ticks tried again after the
                                                          broker failed a request
    pricelab_competitor_batch_size                        events per competitor-price batch
    pricelab_trigger_stage_seconds{stage}                 a competitor batch's time per stage:
                                                          turn_wait, apply, save, publish, commit;
                                                          timer_turn (the trigger timer's turn)
    pricelab_trigger_fire_latency_seconds                 from a batch handed to the trigger
                                                          runner to its fires' assignments
                                                          acknowledged by the brokers
    pricelab_malloc_bytes{state}                          glibc malloc's bytes in use and freed
                                                          but kept (streams/worker/memory.py)
    pricelab_experiments_held{by}                         experiments a controller keeps (store,
                                                          routing, triggers): not the retired
    pricelab_python_blocks                                memory blocks the interpreter holds
    pricelab_gc_full_duration_seconds                     time of one full garbage collection
                                                          (a controller's with malloc's trim)
                                                          (every 60 s; the loop waits for it)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.worker.memory import MemoryCollector

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: trigger stages take 0.1-100 ms; finer than _FAST where the 50 ms target is judged
_TRIGGER = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _EstimateAge(Collector):
    """The age of each estimate series; ``now`` None: the newest estimate is now. The loop's
    thread adds to ``last`` and replaces it (``Metrics.reporting``) while the HTTP server's
    thread collects: a collect reads one snapshot of it."""

    def __init__(self, now: Callable[[], datetime] | None) -> None:
        self._now = now
        self.last: dict[tuple[str, str], datetime] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "pricelab_estimate_age_seconds",
            "Clock time since the last estimate was published",
            labels=["experiment", "estimator"],
        )
        last = list(self.last.items())  # one snapshot (see the class)
        if last:
            newest = max(t for _, t in last)
            try:
                now = newest if self._now is None else self._now()
            except RuntimeError:  # simulated clock not set yet
                now = newest
            for (exp, est), t in last:
                g.add_metric([exp, est], max(0.0, (now - t).total_seconds()))
        yield g


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        r = self.registry = registry or CollectorRegistry()
        if registry is None:
            # process_start_time_seconds, memory and CPU: on-call's standard process metrics;
            # and the live memory behind the RSS (streams/worker/memory.py)
            ProcessCollector(registry=r)
            r.register(MemoryCollector())
        self.events_consumed = Counter(
            "pricelab_events_consumed", "Events read from a topic", ["topic"], registry=r
        )
        self.dead_lettered = Counter(
            "pricelab_dead_letter",
            "Events sent to the dead-letter topic",
            ["topic", "reason"],
            registry=r,
        )
        self.sales = Counter("pricelab_sales", "Sales by outcome", ["status"], registry=r)
        self.sales_excluded = Counter(
            "pricelab_sales_excluded",
            "Sales kept for audit but excluded from analysis",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "pricelab_sales_batch_size",
            "Events per sales batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "pricelab_sales_batch_duration_seconds",
            "Time to apply one sales batch",
            buckets=_FAST,
            registry=r,
        )
        self.flips = Counter("pricelab_flips", "Period flips completed", ["experiment"], registry=r)
        self.missed_flips = Counter(
            "pricelab_missed_flips",
            "Boundaries caught up after downtime",
            ["experiment"],
            registry=r,
        )
        self.backfilled_flips = Counter(
            "pricelab_backfilled_flips",
            "Boundaries that passed before a --backfill experiment was created, caught up at "
            "its first flip (expected: no alert)",
            ["experiment"],
            registry=r,
        )
        self.flip_seconds = Histogram(
            "pricelab_flip_duration_seconds",
            "Time to write and publish one flip",
            buckets=_SLOW,
            registry=r,
        )
        self.next_flip_due = Gauge(
            "pricelab_next_flip_due_timestamp_seconds",
            "Clock time (Unix seconds) at which the experiment's next flip is due: the boundary "
            "after the last period flipped",
            ["experiment"],
            registry=r,
        )
        self.unpublished_since = Gauge(
            "pricelab_decision_unpublished_since_timestamp_seconds",
            "Clock time (Unix seconds) since which this worker's ticks have found the "
            "experiment's decision in force kept but not all of its messages taken by the broker",
            ["experiment"],
            registry=r,
        )
        self.ready = Gauge(
            "pricelab_ready", "1 while the worker is ready (see /ready), else 0", registry=r
        )
        self.group_assigned = Gauge(
            "pricelab_consumer_group_assigned",
            "1 while the worker's member of the consumer group holds an assignment, else 0",
            ["group"],
            registry=r,
        )
        self.flip_lateness = Histogram(
            "pricelab_flip_lateness_seconds",
            "Clock time from a period boundary to its flip being published",
            buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
            registry=r,
        )
        self.assignments_published = Counter(
            "pricelab_assignments_published",
            "Assignment messages published",
            ["status"],
            registry=r,
        )
        self.commands = Counter(
            "pricelab_commands", "Operator commands handled", ["kind", "outcome"], registry=r
        )
        self.estimator_runtime = Histogram(
            "pricelab_estimator_runtime_seconds",
            "Time to fit one estimator",
            ["estimator"],
            buckets=_SLOW,
            registry=r,
        )
        self.estimates_published = Counter(
            "pricelab_estimates_published", "Estimates published", ["estimator"], registry=r
        )
        self.analysis_cycles = Counter(
            "pricelab_analysis_cycles",
            "Analysis cycles completed (every experiment looked at)",
            registry=r,
        )
        self.analysis_cycle_seconds = Histogram(
            "pricelab_analysis_cycle_duration_seconds",
            "Time of one analysis cycle",
            buckets=_SLOW,
            registry=r,
        )
        self.analysis_last_cycle = Gauge(
            "pricelab_analysis_last_cycle_timestamp_seconds",
            "Clock time (Unix seconds) as of which the last analysis cycle looked",
            registry=r,
        )
        self.analysis_last_cycle_estimates = Gauge(
            "pricelab_analysis_last_cycle_estimates",
            "Messages the last analysis cycle published on the estimates topic "
            "(estimates and verdicts)",
            registry=r,
        )
        self.analysis_last_cycle_experiments = Gauge(
            "pricelab_analysis_last_cycle_experiments",
            "Experiments the last analysis cycle looked at as the worker that publishes them "
            "(a stopped or ended one no more once its final look is out)",
            registry=r,
        )
        self.experiments_held = Gauge(
            "pricelab_experiments_held",
            "Experiments a controller worker keeps, by what keeps them (store: the specs it "
            "keeps parsed; routing: the sales routing table's; triggers: the trigger runner's): "
            "those not retired, bounded by the experiments in force, not by those ever run",
            ["by"],
            registry=r,
        )
        self.analysis_experiments_held = Gauge(
            "pricelab_analysis_experiments_held",
            "Experiments the analysis worker keeps something of between cycles (compacted "
            "periods read, chunked sums, what it said once)",
            registry=r,
        )
        self.guardrail_trips = Counter(
            "pricelab_guardrail_trips",
            "Guardrails that stopped an experiment",
            ["experiment", "metric"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "pricelab_consumer_lag",
            "Events on the broker not yet processed and committed by this worker",
            ["topic"],
            registry=r,
        )
        self.redis_retries = Counter(
            "pricelab_redis_retries",
            "Redis calls retried after a connection failure or timeout",
            ["component"],
            registry=r,
        )
        self.redis_waits_short = Counter(
            "pricelab_redis_waits_short",
            "Sales batches retried, and decisions and command replies held back, because fewer "
            "replicas than PRICELAB_REDIS__WAIT_REPLICAS acknowledged them within "
            "PRICELAB_REDIS__WAIT_TIMEOUT_MS",
            registry=r,
        )
        self.broker_retries = Counter(
            "pricelab_broker_retries",
            "Timer ticks tried again after the broker failed a request (a restart, a timeout)",
            ["component"],
            registry=r,
        )
        self.competitor_batch_size = Histogram(
            "pricelab_competitor_batch_size",
            "Events per competitor-price batch",
            buckets=(1, 5, 10, 20, 50, 100, 250, 500),
            registry=r,
        )
        self.trigger_stage_seconds = Histogram(
            "pricelab_trigger_stage_seconds",
            "Time a competitor batch spends per stage of the trigger path",
            ["stage"],
            buckets=_TRIGGER,
            registry=r,
        )
        self.trigger_fires_kept = Counter(
            "pricelab_trigger_fires_kept",
            "Trigger fires a save kept in Redis because a decision of their experiment was "
            "still to publish (issue #56); the later save that announces them counts them in "
            "pricelab_trigger_fires_released_total. Summed over the workers, kept minus released "
            "is what waits now",
            ["experiment"],
            registry=r,
        )
        self.trigger_fires_released = Counter(
            "pricelab_trigger_fires_released",
            "Kept trigger fires a later save carried out and announced, or a later lifecycle "
            "decision took in",
            ["experiment"],
            registry=r,
        )
        self.trigger_fire_latency = Histogram(
            "pricelab_trigger_fire_latency_seconds",
            "From a competitor batch handed to the trigger runner to its fires' assignments "
            "acknowledged by the brokers (one observation per fire)",
            buckets=_TRIGGER,
            registry=r,
        )
        self.gc_full_seconds = Histogram(
            "pricelab_gc_full_duration_seconds",
            "Time of one full garbage collection, a controller's with malloc's trim (every 60 s; "
            "the event loop waits for it)",
            buckets=_FAST,
            registry=r,
        )
        self._age = _EstimateAge(now)
        r.register(self._age)

    # FlipObserver
    def flipped(
        self,
        experiment: str,
        n: int,
        seconds: float,
        missed: int,
        lateness: float = 0.0,
        backfilled: int = 0,
    ) -> None:
        self.flips.labels(experiment).inc()
        self.flip_seconds.observe(seconds)
        if backfilled:  # a backfill's catch-up is neither late nor missed
            self.backfilled_flips.labels(experiment).inc(backfilled)
            return
        self.flip_lateness.observe(max(0.0, lateness))
        if missed:
            self.missed_flips.labels(experiment).inc(missed)

    def unpublished(self, experiment: str, since: datetime | None) -> None:
        if since is None:
            with contextlib.suppress(KeyError):
                self.unpublished_since.remove(experiment)
            return
        self.unpublished_since.labels(experiment).set(since.timestamp())

    def retired(self, experiment: str) -> None:
        # over for the controller (controller.retirement): its series go, so that a worker's
        # memory and its /metrics do not grow with every experiment ever run. Its counters
        # stopped moving at its end, days before; a rate over them ends with them
        for family in (
            self.flips,
            self.missed_flips,
            self.backfilled_flips,
            self.next_flip_due,
            self.unpublished_since,
            self.trigger_fires_kept,
            self.trigger_fires_released,
        ):
            with contextlib.suppress(KeyError):
                family.remove(experiment)

    def replicas_short(self) -> None:
        self.redis_waits_short.inc()

    def next_boundary(self, experiment: str, at: datetime | None) -> None:
        if at is None:
            with contextlib.suppress(KeyError):
                self.next_flip_due.remove(experiment)
            return
        self.next_flip_due.labels(experiment).set(at.timestamp())
        # the missed flips' series at 0 from the experiment's first tick on: a later catch-up
        # is then an increase that PricelabMissedFlips's increase() sees
        self.missed_flips.labels(experiment)

    # WorkerObserver
    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None:
        self.estimator_runtime.labels(estimator).observe(seconds)

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None:
        self.estimates_published.labels(estimator).inc()
        self._age.last[(experiment, estimator)] = as_of

    def guardrail_tripped(self, experiment: str, metric: str) -> None:
        self.guardrail_trips.labels(experiment, metric).inc()

    def reporting(self, experiments: frozenset[str]) -> None:
        # an experiment now merged by another worker of the group: this worker's last
        # estimate of it would age, and PricelabEstimateStale fire, while the other publishes
        age = self._age
        age.last = {k: t for k, t in age.last.items() if k[0] in experiments}

    def holding(self, looked: int, held: int) -> None:
        self.analysis_last_cycle_experiments.set(looked)
        self.analysis_experiments_held.set(held)

    def cycle_done(self, as_of: datetime, seconds: float, published: int) -> None:
        self.analysis_cycles.inc()
        self.analysis_cycle_seconds.observe(seconds)
        # the count first: a reader that sees the new timestamp sees this cycle's count
        self.analysis_last_cycle_estimates.set(published)
        self.analysis_last_cycle.set(as_of.timestamp())

    # TriggerObserver
    def trigger_stage(self, stage: str, seconds: float) -> None:
        self.trigger_stage_seconds.labels(stage).observe(seconds)

    def trigger_fired(self, seconds: float, n: int) -> None:
        h = self.trigger_fire_latency
        for _ in range(n):
            h.observe(seconds)

    def trigger_redis_retry(self) -> None:
        self.redis_retries.labels("competitor prices").inc()

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        if kept:
            self.trigger_fires_kept.labels(experiment).inc(kept)
        if released:
            self.trigger_fires_released.labels(experiment).inc(released)

    def lag(self, by_topic: dict[str, int]) -> None:
        for topic, n in by_topic.items():
            self.consumer_lag.labels(topic).set(n)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
