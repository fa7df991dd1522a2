"""A recorded decision's rules (controller.decision): which arm a decision names, and which
states take one."""

from __future__ import annotations

import pytest

from controller.arms import ArmSpec
from controller.decision import Decision, check, command_fields, resolve
from controller.errors import CommandRefused
from controller.lifecycle import Phase
from controller.spec import load_spec


def _arms(*names: str, control: str) -> tuple[ArmSpec, ...]:
    share = 1.0 / len(names)
    return tuple(
        ArmSpec(name=n, policy=f"p-{n}", allocation=share, control=n == control) for n in names
    )


LADDER = _arms("list", "p95", "p105", control="list")


def test_an_arm_by_its_name_ships_and_the_control_is_kept_by_its_name_or_the_word() -> None:
    assert resolve("e", LADDER, "p95") == Decision("p95", ship=True)
    assert resolve("e", LADDER, "control") == Decision("list", ship=False)
    assert resolve("e", LADDER, "list") == Decision("list", ship=False)


def test_the_two_arm_shorthand_names_its_arms_treatment_and_control() -> None:
    spec = load_spec(
        {
            "id": "short",
            "products": ["a", "b"],
            "treatment_policy": "promo",
            "control_policy": "list",
            "start": "2026-09-01T00:00:00+00:00",
            "end": "2026-09-08T00:00:00+00:00",
        }
    )
    arms = spec.arm_list()
    assert resolve("short", arms, "treatment") == Decision("treatment", ship=True)
    assert resolve("short", arms, "control") == Decision("control", ship=False)


def test_an_unknown_arm_is_one_sentence_naming_the_arms_and_the_nearest() -> None:
    with pytest.raises(CommandRefused) as exc:
        resolve("e", LADDER, "p59")
    said = str(exc.value)
    assert said.startswith("experiment 'e' has no arm 'p59' (did you mean 'p95'?")
    assert "its arms: list, p95, p105" in said and "'control'" in said
    assert "\n" not in said
    with pytest.raises(CommandRefused, match="has no arm 'zzz' \\(its arms"):
        resolve("e", LADDER, "zzz")


def test_the_word_control_is_refused_where_another_arm_is_named_so() -> None:
    odd = _arms("base", "control", control="base")
    with pytest.raises(CommandRefused, match="'control' is ambiguous.*by its name, 'base'"):
        resolve("e", odd, "control")
    # each arm stays reachable by its own name
    assert resolve("e", odd, "base") == Decision("base", ship=False)


def test_words_as_the_trail_shows_them() -> None:
    assert Decision("p95", ship=True).describe() == "ship arm 'p95'"
    assert Decision("list", ship=False).describe() == "keep the control (arm 'list')"
    assert Decision("p95", ship=True).view() == {
        "arm": "p95",
        "ship": True,
        "decided": "ship arm 'p95'",
    }


@pytest.mark.parametrize("phase", [Phase.CREATED, Phase.RUNNING, Phase.PAUSED, Phase.STOPPED])
@pytest.mark.parametrize("stop", [False, True])
def test_a_decision_is_taken_in_every_settled_state(phase: Phase, stop: bool) -> None:
    check("e", phase, stop)  # nothing raised: a stopped one's stop is a repeat (already)


def test_an_ended_experiment_takes_a_decision_but_not_a_stop() -> None:
    check("e", Phase.ENDED, stop=False)
    with pytest.raises(CommandRefused, match="has ended, so nothing is left to stop: record"):
        check("e", Phase.ENDED, stop=True)


@pytest.mark.parametrize("stop", [False, True])
def test_none_while_it_is_being_created(stop: bool) -> None:
    with pytest.raises(CommandRefused, match="still being created"):
        check("e", Phase.CREATING, stop)


def test_an_arm_named_control_that_is_not_the_control_can_be_shipped() -> None:
    """A decision that says it ships (``ship`` true) names the arm exactly: an arm other than
    the control named ``control`` ships (before, the word was refused as ambiguous and the
    arm could not be shipped at all); one that says it keeps the control keeps it."""
    odd = _arms("base", "control", control="base")
    assert resolve("e", odd, "control", ship=True) == Decision("control", ship=True)
    assert resolve("e", odd, "control", ship=False) == Decision("base", ship=False)
    assert resolve("e", odd, "base", ship=False) == Decision("base", ship=False)
    # shipping the control arm is keeping it; keeping names the control, not another arm
    assert resolve("e", odd, "base", ship=True) == Decision("base", ship=False)
    with pytest.raises(CommandRefused, match="keeps arm 'base', not arm 'p95': ship 'p95'"):
        resolve("e", _arms("base", "p95", control="base"), "p95", ship=False)
    with pytest.raises(CommandRefused, match="has no arm 'zzz'"):
        resolve("e", odd, "zzz", ship=True)
    # the word alone, with no ship said (an older client): still refused as ambiguous
    with pytest.raises(CommandRefused, match="ambiguous"):
        resolve("e", odd, "control")


def test_a_client_sends_ship_only_where_the_arm_does_not_say_it() -> None:
    """A controller from before ``ship`` refuses a command that carries it: the usual
    decisions (ship an arm by its name, keep the control by the word) go without it, and
    each decision means the same to the controller's rule with or without it."""
    cases = [
        (("p95", True), {"arm": "p95"}),
        (("control", False), {"arm": "control"}),
        (("control", True), {"arm": "control", "ship": True}),  # an arm named control
        (("base", False), {"arm": "base", "ship": False}),  # the control kept by its name
    ]
    for (arm, ship), wire in cases:
        assert command_fields(arm, ship) == wire, (arm, ship)
    odd = [ArmSpec(name="base", policy="a", allocation=0.5, control=True),
           ArmSpec(name="control", policy="b", allocation=0.5)]  # fmt: skip
    sent = command_fields("control", True)
    assert resolve("e", odd, sent["arm"], sent.get("ship")) == Decision("control", ship=True)
    sent = command_fields("base", False)
    assert resolve("e", odd, sent["arm"], sent.get("ship")) == Decision("base", ship=False)
    sent = command_fields("p95", True)
    assert resolve("e", LADDER, sent["arm"], sent.get("ship")) == Decision("p95", ship=True)
