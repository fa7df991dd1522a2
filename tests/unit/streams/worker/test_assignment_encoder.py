"""The templated assignment encoder writes exactly the bytes the pydantic model writes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from pydantic import ValidationError

from controller.designs import assign_period, forced_control, period_assignments
from controller.spec import load_spec
from streams.worker.schemas import AssignmentEncoder, encode
from streams.worker.sinks import _message_for, assignment_message, template_key

START = datetime(2026, 6, 1, tzinfo=UTC)


def _spec(design: str = "random-days"):
    return load_spec(
        {
            "id": "enc",
            "design": design,
            "products": [f"sku-{i}" for i in range(300)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=6)).isoformat(),
            "timezone": "Europe/Berlin",
            "period": "PT6H",
            "washout": "PT1H",
            "seed": 3,
        }
    )


def _check(enc: AssignmentEncoder, assignments, seq: int, status: str) -> None:
    for a in assignments:
        got = enc.encode(
            partial(_message_for, a, seq, status), template_key(a, seq, status), a.product
        )
        assert got == encode(assignment_message(a, seq, status))


class _Capture:
    """A publisher that keeps what the sink sends (the sink's own logic is under test)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def prime_partitions(self, topic: str, products) -> None:  # type: ignore[no-untyped-def]
        return None

    async def send_keyed_many(self, topic: str, items) -> int:  # type: ignore[no-untyped-def]
        got = list(items)
        self.sent += got
        return len(got)

    async def send_templated(self, topic: str, keys, codes, templates) -> int:  # type: ignore[no-untyped-def]
        # the values the publisher's batches carry (tests/unit/streams/worker/test_record_batch.py)
        values = [
            templates[c][0] + k.encode() + templates[c][1] for k, c in zip(keys, codes, strict=True)
        ]
        return await self.send_keyed_many(topic, list(zip(keys, values, strict=True)))

    async def flush(self) -> None:
        return None


async def test_the_same_period_published_again_carries_its_new_seq_and_status():
    # regression: the sink's template cache was keyed without seq and status, so a resume
    # republished period k's running messages with the seq of the first ones (1 after 2)
    from controller.settings import Settings
    from streams.worker.metrics import Metrics
    from streams.worker.sinks import KafkaAssignmentSink

    spec = _spec()
    pub = _Capture()
    sink = KafkaAssignmentSink(pub, Settings(), Metrics())  # type: ignore[arg-type]
    running = period_assignments(spec, 2)
    paused = running.map(lambda a: forced_control(spec, a, "paused"))
    for records, seq, status in [
        (running, 1, "running"),
        (paused, 2, "paused"),
        (running, 3, "running"),
        (list(running), 4, "running"),
    ]:
        pub.sent.clear()
        await sink.publish_assignments(records, seq, status)
        docs = [json.loads(raw) for _, raw in pub.sent]
        assert len(docs) == len(spec.all_products())
        assert {(d["seq"], d["status"]) for d in docs} == {(seq, status)}


async def test_the_sink_holds_no_template_between_publishes():
    """A template's key holds its period and seq, so no later publish meets it: the sink
    forgets them after each publish (kept, they filled a controller's memory up to the
    encoder's bound over a soak), whichever path the publish took or if it failed."""
    from controller.designs import PeriodAssignments
    from controller.settings import Settings
    from streams.worker.metrics import Metrics
    from streams.worker.sinks import KafkaAssignmentSink

    spec = _spec()
    pub = _Capture()
    sink = KafkaAssignmentSink(pub, Settings(), Metrics())  # type: ignore[arg-type]
    for k in range(6):
        whole = period_assignments(spec, k)
        await sink.publish_assignments(whole, k + 1, "running")  # the record-batch path
        assert len(sink._encoder) == 0
        await sink.publish_assignments(list(whole)[:7], k + 1, "running")  # one by one
        assert len(sink._encoder) == 0
    assert len(pub.sent) == 6 * (len(spec.all_products()) + 7)
    whole = period_assignments(spec, 2)
    odd = PeriodAssignments([*whole.products[:-1], "with space"], whole.codes, whole.templates)
    with pytest.raises(ValidationError):
        await sink.publish_assignments(odd, 9, "running")  # the model's path, refused
    assert len(sink._encoder) == 0


async def test_a_period_whose_products_changed_is_checked_again_for_plain_ids():
    # the sink remembers that the last whole period's products were all plain ids: another
    # list with one that is not must take the model's path (and its refusal), not a template
    from controller.designs import PeriodAssignments
    from controller.settings import Settings
    from streams.worker.metrics import Metrics
    from streams.worker.sinks import KafkaAssignmentSink

    spec = _spec()
    pub = _Capture()
    sink = KafkaAssignmentSink(pub, Settings(), Metrics())  # type: ignore[arg-type]
    whole = period_assignments(spec, 2)
    await sink.publish_assignments(whole, 1, "running")
    assert len(pub.sent) == len(whole)
    odd = PeriodAssignments([*whole.products[:-1], "with space"], whole.codes, whole.templates)
    with pytest.raises(ValidationError):
        await sink.publish_assignments(odd, 2, "running")
    pub.sent.clear()
    await sink.publish_assignments(whole, 3, "running")
    assert [raw for _, raw in pub.sent] == [
        encode(assignment_message(a, 3, "running")) for a in whole
    ]


def test_same_bytes_as_the_model_across_periods_statuses_and_blackouts():
    spec = _spec()
    enc = AssignmentEncoder()
    for k in range(0, 8):
        records = assign_period(spec, k)
        _check(enc, records, seq=k + 1, status="running")
        _check(enc, [forced_control(spec, a, "paused") for a in records], seq=99, status="paused")
        _check(enc, [forced_control(spec, a, "freeze") for a in records], seq=7, status="frozen")


def test_products_that_are_not_plain_ids_are_refused_like_the_model_refuses_them():
    spec = _spec()
    a = assign_period(spec, 1)[0]
    odd = replace(a, product='we"ird\\ünï')
    enc = AssignmentEncoder()
    _check(enc, [a], seq=3, status="running")  # a template exists for this key now
    key = (
        a.experiment,
        a.arm,
        a.policy,
        a.probability,
        a.period,
        a.period_start,
        a.period_end,
        a.blackout_until,
        a.blackout_reason,
    )
    with pytest.raises(ValidationError):
        enc.encode(partial(_message_for, odd, 3, "running"), key, odd.product)
    with pytest.raises(ValidationError):
        assignment_message(odd, 3, "running")


def test_template_cache_is_bounded():
    spec = _spec()
    enc = AssignmentEncoder(max_templates=3)
    for k in range(6):
        _check(enc, assign_period(spec, k)[:5], seq=k, status="running")
    assert len(enc._templates) <= 3


def test_whole_period_encoders_write_the_model_bytes_for_every_product():
    from controller.designs import PeriodAssignments, period_assignments
    from streams.worker.schemas import all_plain_ids

    spec = _spec()
    enc = AssignmentEncoder()
    for k, status in [(0, "running"), (3, "running"), (5, "paused")]:
        whole = period_assignments(spec, k)
        if status == "paused":
            whole = whole.map(lambda a: forced_control(spec, a, "paused"))
        # a product that is not a plain id takes the model's own path (and its refusal)
        odd = PeriodAssignments(["sku-1", "with space", "ünï"], [0, 0, 0], whole.templates[:1])
        assert all_plain_ids(whole.products) and not all_plain_ids(odd.products)
        for batch in (whole, odd):
            encoders = [
                enc.encoder_for(
                    partial(_message_for, t, k, status),
                    (t.arm, t.blackout_until, k),
                    plain_ids=all_plain_ids(batch.products),
                )
                for t in batch.templates
            ]
            for a, c in zip(batch, batch.codes, strict=True):
                if batch is odd and a.product != "sku-1":
                    with pytest.raises(ValidationError):
                        encoders[c](a.product)
                    with pytest.raises(ValidationError):
                        assignment_message(a, k, status)
                    continue
                assert encoders[c](a.product) == encode(assignment_message(a, k, status))


@pytest.mark.parametrize(
    "products, plain",
    [
        ([], True),
        (["a", "b-1", "c.d:e_f", "x" * 128], True),
        (["a", "x" * 129], False),
        (["a", ""], False),
        (["a\nb"], False),
        (["a", "b\n"], False),
        (["ok", "ünï"], False),
        (["ok", "with space"], False),
    ],
)
def test_plain_id_check_over_a_whole_list_agrees_with_the_model(products, plain):
    from streams.worker.schemas import all_plain_ids

    assert all_plain_ids(products) is plain
    spec_ok = []
    for p in products:
        try:
            assignment_message(replace(assign_period(_spec(), 1)[0], product=p), 1, "running")
            spec_ok.append(True)
        except ValidationError:
            spec_ok.append(False)
    assert all(spec_ok) is plain
