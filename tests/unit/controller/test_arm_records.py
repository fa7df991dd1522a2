"""What a k-arm experiment's assignments say (issue #41, slice S2): the arm's index, name and
price ratio on every assignment of an ``arms:`` spec, the control arm's when control is
forced, and the records the sales path keeps (tests/unit/streams/worker/test_arm_messages.py:
the message a pricing system reads)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.blackout import Freeze
from controller.designs import assign_period, forced_control, period_assignments
from controller.in_force import in_force_one
from controller.spec import Arm, load_spec
from controller.store import decode_record, encode_record
from core import status

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


def test_every_assignment_of_an_arms_spec_names_its_arm():
    spec = load_spec(BASE | {"arms": LADDER})
    arms = spec.arm_list()
    seen = set()
    for a in assign_period(spec, 1):
        arm = arms[a.index]
        seen.add(arm.name)
        assert (a.arm_name, a.policy, a.price_ratio) == (arm.name, arm.policy, arm.price_ratio)
        assert a.arm == (Arm.CONTROL if arm.control else Arm.TREATMENT)
        # the record keeps the arm's index; read back, it names the same arm
        arm_code, p, _, _ = decode_record(encode_record(a))
        assert arm_code == a.index and spec.index_of(arm_code) == a.index
        assert p == a.probability
    assert seen == {"p95", "list", "p105"}
    assert list(period_assignments(spec, 1)) == assign_period(spec, 1)


def test_forced_control_and_a_freeze_name_the_control_arm():
    spec = load_spec(BASE | {"arms": LADDER})
    a = next(a for a in assign_period(spec, 1) if a.arm_name == "p105")
    for mode in (status.PAUSED, status.STOPPED, status.ENDED):
        held = in_force_one(spec, a, mode, ())
        assert (held.arm, held.arm_name, held.policy, held.price_ratio, held.index) == (
            Arm.CONTROL, "list", "list-price", 1.0, 1,
        )  # fmt: skip
        assert encode_record(forced_control(spec, a, mode)).startswith("1|")
    freeze = Freeze(id="f", start=START, end=START + timedelta(days=3))
    frozen = in_force_one(spec, a, status.FROZEN, [freeze])
    assert (frozen.arm_name, frozen.policy) == ("list", "list-price")
    running = in_force_one(spec, a, status.RUNNING, ())
    assert (running.arm_name, running.policy) == ("p105", "price-105")
