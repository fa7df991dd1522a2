"""The templated assignment encoder writes exactly the bytes the pydantic model writes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from pydantic import ValidationError

from controller.designs import assign_period, forced_control
from controller.spec import load_spec
from streams.schemas import AssignmentEncoder, encode
from streams.sinks import _message_for, assignment_message

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
        got = enc.encode(partial(_message_for, a, seq, status), key, a.product)
        assert got == encode(assignment_message(a, seq, status))


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
