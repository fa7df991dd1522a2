"""The assignment message of a k-arm experiment (issue #41, slice S2): ``arm_name`` and
``price_ratio`` for an ``arms:`` spec, neither key for a two-arm shorthand spec (its bytes as
before arms existed), and the templated encoder's bytes equal to the model's for every arm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from controller.designs import assign_period, period_assignments
from controller.spec import load_spec
from controller.store import encode_record
from streams.worker.schemas import AssignmentEncoder
from streams.worker.sinks import _message_for, assignment_message, template_key

START = datetime(2026, 6, 1, tzinfo=UTC)
LADDER = [
    {"name": "p95", "policy": "price-95", "price_ratio": 0.95, "allocation": 0.3},
    {"name": "list", "policy": "list-price", "price_ratio": 1.0, "allocation": 0.4,
     "control": True},
    {"name": "p105", "policy": "price-105", "price_ratio": 1.05, "allocation": 0.3},
]  # fmt: skip
BASE = {
    "id": "ladder",
    "products": [f"p{i}" for i in range(40)],
    "start": START.isoformat(),
    "end": (START + timedelta(days=5)).isoformat(),
    "timezone": "UTC",
    "washout": "PT2H",
    "seed": 4,
}


def test_the_message_names_the_arm_only_for_an_arms_spec():
    ladder = load_spec(BASE | {"arms": LADDER})
    shorthand = load_spec(BASE | {"treatment_policy": "new", "control_policy": "old"})
    for a in assign_period(ladder, 2):
        doc = json.loads(assignment_message(a, 7, "running").model_dump_json())
        assert (doc["arm_name"], doc["price_ratio"]) == (a.arm_name, a.price_ratio)
    for a in assign_period(shorthand, 2):
        assert a.arm_name is None and a.price_ratio is None
        raw = assignment_message(a, 7, "running").model_dump_json()
        assert "arm_name" not in raw and "price_ratio" not in raw
        assert encode_record(a)[:2] in ("T|", "C|")  # the records of before arms existed
    # arms without price ratios: the name, no ratio
    plain = load_spec(
        BASE | {"arms": [{k: v for k, v in arm.items() if k != "price_ratio"} for arm in LADDER]}
    )
    doc = json.loads(assignment_message(assign_period(plain, 0)[0], 1, "running").model_dump_json())
    assert "arm_name" in doc and "price_ratio" not in doc


def test_the_templated_encoder_writes_the_models_bytes_for_every_arm():
    spec = load_spec(BASE | {"arms": LADDER})
    enc = AssignmentEncoder()
    for a in period_assignments(spec, 3):
        key = template_key(a, 5, "running")
        got = enc.encode(lambda p, a=a: _message_for(a, 5, "running", p), key, a.product)
        assert got == assignment_message(a, 5, "running").model_dump_json().encode()
