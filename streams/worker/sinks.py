"""Kafka implementations of the controller's and the analysis worker's output ports."""

from __future__ import annotations

import base64
import math
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from controller.designs import Assignment, PeriodAssignments
from controller.settings import Settings
from core.ports import PublishedEstimate
from streams.worker.kafka import JsonPublisher
from streams.worker.metrics import Metrics
from streams.worker.schemas import (
    AdaptiveMessage,
    AssignmentEncoder,
    AssignmentMessage,
    Command,
    CommandKind,
    DeadLetter,
    DemandMessage,
    EstimateMessage,
    ExperimentEvent,
    VerdictMessage,
    all_plain_ids,
)


def assignment_message(a: Assignment, seq: int, status: str) -> AssignmentMessage:
    return AssignmentMessage(
        experiment=a.experiment,
        product=a.product,
        arm=a.arm.value,  # type: ignore[arg-type]
        arm_name=a.arm_name,
        policy=a.policy,
        price_ratio=a.price_ratio,
        probability=a.probability,
        probabilities=None if a.arm_probabilities is None else dict(a.arm_probabilities),
        period=a.period,
        period_start=a.period_start,
        period_end=a.period_end,
        blackout=a.blackout_until is not None,
        blackout_until=a.blackout_until,
        blackout_reason=a.blackout_reason,
        seq=seq,
        status=status,  # type: ignore[arg-type]
    )


def _message_for(a: Assignment, seq: int, status: str, product: str) -> AssignmentMessage:
    return assignment_message(replace(a, product=product), seq, status)


def template_key(a: Assignment, seq: int, status: str) -> tuple[Any, ...]:
    """Everything an assignment message holds but the product. A template built for one
    decision must never serve another: keyed without ``seq`` and ``status``, a resume once
    went out with the seq and status of the running message before the pause."""
    return (
        a.experiment, a.arm, a.arm_name, a.policy, a.price_ratio, a.probability, a.period,
        a.period_start, a.period_end, a.blackout_until, a.blackout_reason, seq, status,
        a.arm_probabilities,
    )  # fmt: skip


class KafkaAssignmentSink:
    """Assignments keyed by product (compacted topic); lifecycle events on their own topic."""

    def __init__(self, publisher: JsonPublisher, settings: Settings, metrics: Metrics) -> None:
        self.publisher = publisher
        self.topics = settings.topics
        self.metrics = metrics
        # one template per (arm, blackout, ...) instead of a pydantic model per product; for
        # one publish only: a key holds the period and seq, so no later publish meets it (they
        # were kept up to the encoder's bound of 4,096, memory nothing would read again)
        self._encoder = AssignmentEncoder()
        #: the last whole period's products and whether all are plain ids: a flip publishes
        #: the same products every period (the check is ~0.1 s for 1M, the comparison ~5 ms)
        self._plain: tuple[list[str], bool] | None = None

    def _all_plain(self, products: Sequence[str]) -> bool:
        if self._plain is None or self._plain[0] != products:
            self._plain = (list(products), all_plain_ids(products))
        return self._plain[1]

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        topic = self.topics.assignments
        enc = self._encoder.encode

        def message(a: Assignment) -> tuple[Callable[[str], AssignmentMessage], tuple[Any, ...]]:
            return partial(_message_for, a, seq, status), template_key(a, seq, status)

        def items() -> Iterator[tuple[str, bytes]]:
            if isinstance(assignments, PeriodAssignments):
                # a whole period: each distinct assignment's message is built once
                plain = all_plain_ids(assignments.products)
                encoders = [
                    self._encoder.encoder_for(*message(t), plain_ids=plain)
                    for t in assignments.templates
                ]
                for product, c in zip(assignments.products, assignments.codes, strict=True):
                    yield product, encoders[c](product)
                return
            for a in assignments:
                msg, key = message(a)
                yield a.product, enc(msg, key, a.product)

        try:
            if isinstance(assignments, PeriodAssignments):
                templates = [self._encoder.template_for(*message(t)) for t in assignments.templates]
                whole = [t for t in templates if t is not None]
                if len(whole) == len(templates) and self._all_plain(assignments.products):
                    # a whole period of plain ids: built a record batch at a time
                    await self.publisher.send_templated(
                        topic, assignments.products, assignments.codes, whole
                    )
                else:
                    await self.publisher.prime_partitions(topic, assignments.products)
                    await self.publisher.send_keyed_many(topic, items())
            else:
                await self.publisher.send_keyed_many(topic, items())
        finally:
            self._encoder.clear()
        await self.publisher.flush()
        self.metrics.assignments_published.labels(status).inc(len(assignments))

    async def publish_event(
        self,
        experiment: str,
        kind: str,
        at: datetime,
        detail: dict[str, object],
        *,
        flush: bool = True,
    ) -> None:
        msg = ExperimentEvent(experiment=experiment, kind=kind, at=at, detail=detail)
        await self.publisher.send(self.topics.experiment_events, msg, experiment)
        if flush:
            await self.publisher.flush()


#: what an estimate message holds (an estimate's diagnostics beyond them stay offline)
_ESTIMATE_FIELDS = frozenset(EstimateMessage.model_fields)


class KafkaEstimateSink:
    def __init__(self, publisher: JsonPublisher, settings: Settings) -> None:
        self.publisher = publisher
        self.topic = settings.topics.estimates

    async def publish(
        self,
        experiment: str,
        result: PublishedEstimate,
        as_of: datetime,
        cs: tuple[float, float] | None,
    ) -> None:
        # imported here, by the analysis role that publishes: a controller worker starts
        # without scipy (streams.worker.runtime)
        from analysis.results import published_fields

        fields = {
            k: _finite_or_none(v)
            for k, v in published_fields(result, cs).items()
            if k in _ESTIMATE_FIELDS
        }
        msg = EstimateMessage(experiment=experiment, as_of=as_of, **fields)
        await self.publisher.send(self.topic, msg, experiment)
        await self.publisher.flush()

    async def publish_verdict(
        self, experiment: str, verdict: Mapping[str, Any], as_of: datetime
    ) -> None:
        """The look's verdict as its own message on the estimates topic (``kind: verdict``)."""
        fields = {k: _finite_or_none(v) for k, v in verdict.items()}
        fields["guardrails"] = [
            {k: _finite_or_none(v) for k, v in g.items()} for g in verdict.get("guardrails", ())
        ]
        msg = VerdictMessage(experiment=experiment, as_of=as_of, **fields)
        await self.publisher.send(self.topic, msg, experiment)
        await self.publisher.flush()

    async def publish_demand(
        self, experiment: str, demand: Mapping[str, Any], as_of: datetime
    ) -> None:
        """A price ladder's curves and recommendation (``analysis.demand.DemandResult
        .to_dict()``) as its own message on the estimates topic (``kind: demand``)."""
        fields = {k: v for k, v in demand.items() if k != "method"}  # JSON values already
        msg = DemandMessage(experiment=experiment, as_of=as_of, **fields)
        await self.publisher.send(self.topic, msg, experiment)
        await self.publisher.flush()

    async def publish_adaptive(
        self, experiment: str, look: Mapping[str, Any], as_of: datetime
    ) -> None:
        """An adaptive ladder's look (``analysis.adaptive_live.AdaptiveFit.to_dict()``) as its
        own message on the estimates topic (``kind: adaptive``)."""
        fields = dict(look)
        fields["arms"] = [{k: _finite_or_none(v) for k, v in a.items()} for a in look["arms"]]
        msg = AdaptiveMessage(experiment=experiment, as_of=as_of, **fields)
        await self.publisher.send(self.topic, msg, experiment)
        await self.publisher.flush()


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities are not JSON numbers."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class DeadLetterSink:
    def __init__(self, publisher: JsonPublisher, settings: Settings, metrics: Metrics) -> None:
        self.publisher = publisher
        self.topic = settings.topics.dead_letter
        self.metrics = metrics

    async def send(
        self,
        source_topic: str,
        raw: bytes | None,
        reason: str,
        error: str,
        at: datetime,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        msg = DeadLetter(
            source_topic=source_topic,
            reason=reason,
            error=error[:1000],
            original_b64=base64.b64encode(raw or b"").decode(),
            partition=partition,
            offset=offset,
            at=at,
        )
        await self.publisher.send(self.topic, msg)
        self.metrics.dead_lettered.labels(source_topic, reason).inc()


class KafkaGuardrailSink:
    """A tripped guardrail stops its experiment: a stop command goes to the controller (the
    kill switch), and the trip is said on the experiment-events topic."""

    def __init__(
        self, publisher: JsonPublisher, settings: Settings, clock_now: Callable[[], datetime]
    ) -> None:
        self.publisher = publisher
        self.topics = settings.topics
        self.now = clock_now
        #: the automatic actor of its stop commands: this analysis worker
        self.worker = f"pricelab-analysis:{os.getpid()}@{socket.gethostname().split('.')[0]}"

    async def trip(self, experiment: str, metric: str, detail: dict[str, Any]) -> None:
        # one arm's breach stops every arm (k arms): the reason names the arm
        arm = detail.get("arm")
        where = "" if arm is None else f" (arm {arm})"
        cmd = Command(
            command_id=f"guardrail-{uuid.uuid4().hex}",
            kind=CommandKind.STOP,
            experiment=experiment,
            reason=f"guardrail {metric}{where}: drop beyond {detail.get('max_drop_pct')}%",
            actor=self.worker,
        )
        await self.publisher.send(self.topics.commands, cmd, experiment)
        event = ExperimentEvent(
            experiment=experiment,
            kind="guardrail_tripped",
            at=self.now(),
            detail=detail | {"worker": self.worker},
        )
        await self.publisher.send(self.topics.experiment_events, event, experiment)
        await self.publisher.flush()
