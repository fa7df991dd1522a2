"""Specs with ``arms:``: the rules (one sentence naming the field each), the views, the JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.errors import SpecError
from controller.spec import Arm, ArmSpec, load_spec

BASE: dict[str, Any] = {
    "id": "ladder",
    "products": ["a", "b", "c", "d"],
    "start": "2026-05-04T00:00:00+00:00",
    "end": "2026-05-18T00:00:00+00:00",
}
SHORTHAND = {"treatment_policy": "price-95", "control_policy": "list-price"}


def arms(*specs: tuple[str, float, float | None, bool]) -> list[dict[str, Any]]:
    out = []
    for name, allocation, ratio, control in specs:
        arm: dict[str, Any] = {"name": name, "policy": f"pol-{name}", "allocation": allocation}
        if ratio is not None:
            arm["price_ratio"] = ratio
        if control:
            arm["control"] = True
        out.append(arm)
    return out


LADDER = arms(("list", 0.4, 1.0, True), ("p95", 0.3, 0.95, False), ("p105", 0.3, 1.05, False))


def refusal(**fields: Any) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(BASE | fields)
    assert info.value.field == "arms" or "arms" in str(info.value), str(info.value)
    text = str(info.value)
    assert len(text.splitlines()) == 1 and text.count(". ") == 0, text
    return text


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"arms": arms(("a", 0.5, None, True), ("a", 0.5, None, False))}, "own name"),
        (
            {
                "arms": [
                    {"name": "x", "policy": "same", "allocation": 0.5, "control": True},
                    {"name": "y", "policy": "same", "allocation": 0.5},
                ]
            },
            "own policy",
        ),
        ({"arms": arms(("x", 0.5, None, False), ("y", 0.5, None, False))}, "none is"),
        ({"arms": arms(("x", 0.5, None, True), ("y", 0.5, None, True))}, "2 are (x, y)"),
        ({"arms": arms(("x", 0.6, None, True), ("y", 0.3, None, False))}, "sum to 0.9, not 1"),
        ({"arms": arms(("x", 1.0, None, True), ("y", 0.0, None, False))}, "strictly between"),
        ({"arms": arms(("x", 1.2, None, True), ("y", -0.2, None, False))}, "strictly between"),
        ({"arms": arms(("x", 0.5, 1.0, True), ("y", 0.5, 0.0, False))}, "above 0"),
        ({"arms": arms(("x", 0.5, 1.0, True), ("y", 0.5, -1.1, False))}, "above 0"),
        ({"arms": arms(("x", 0.5, 1.0, True), ("y", 0.5, float("inf"), False))}, "finite"),
        ({"arms": arms(("x", 0.5, 1.0, True), ("y", 0.5, float("nan"), False))}, "finite"),
        ({"arms": arms(("x", 0.5, 1.0, True), ("y", 0.5, None, False))}, "on every arm or"),
        ({"arms": arms(("x", 0.5, 0.9, True), ("y", 0.5, 1.0, False))}, "must be 1"),
        ({"arms": LADDER, **SHORTHAND}, "not both"),
        ({"arms": LADDER, "allocation": 0.5}, "allocation is given too"),
        ({"arms": LADDER, "price_ratio": 0.9}, "price_ratio is given too"),
        ({"arms": arms(("x", 1.0 - 1e-12, None, True))}, "2 to 8 arms, not 1"),
        (
            {"arms": arms(*[(f"a{i}", 1 / 9, None, i == 0) for i in range(9)])},
            "2 to 8 arms, not 9",
        ),
    ],
)
def test_each_bad_arm_list_gets_one_sentence_naming_arms(fields: dict[str, Any], says: str) -> None:
    assert says in refusal(**fields)


def test_arm_names_follow_the_id_rule() -> None:
    bad = arms(("x", 0.5, None, True), ("y", 0.5, None, False))
    bad[1]["name"] = "no spaces"
    with pytest.raises(SpecError, match=r"^arms\.1\.name: must be 1-64 letters"):
        load_spec(BASE | {"arms": bad})


def test_without_arms_the_policies_are_required() -> None:
    with pytest.raises(SpecError, match="^treatment_policy: is required"):
        load_spec(BASE | {"control_policy": "c"})
    with pytest.raises(SpecError, match="^control_policy: is required"):
        load_spec(BASE | {"treatment_policy": "t"})
    with pytest.raises(SpecError, match="^treatment_policy: must differ from control_policy"):
        load_spec(BASE | {"treatment_policy": "t", "control_policy": "t"})


def test_allocations_that_sum_to_one_in_decimal_are_accepted() -> None:
    # 0.1 + 0.2 + 0.7 is 1.0000000000000002 in floats: a spelling of 1, not an error
    spec = load_spec(BASE | {"arms": arms(("x", 0.1, None, True), ("y", 0.2, None, False),
                                         ("z", 0.7, None, False))})  # fmt: skip
    assert spec.allocations() == (0.1, 0.2, 0.7)


def test_the_shorthand_is_two_arms_treatment_then_control() -> None:
    spec = load_spec(BASE | SHORTHAND | {"allocation": 0.3, "price_ratio": 0.95})
    assert spec.arm_list() == (
        ArmSpec(name="treatment", policy="price-95", price_ratio=0.95, allocation=0.3),
        ArmSpec(name="control", policy="list-price", price_ratio=1.0, allocation=0.7, control=True),
    )
    assert spec.control_index == 1 and spec.n_arms == 2
    assert spec.allocations() == (0.3, 0.7)
    assert [spec.policy(i) for i in range(2)] == ["price-95", "list-price"]
    assert spec.policy(Arm.TREATMENT) == "price-95" and spec.policy("control") == "list-price"
    assert spec.role(0) == Arm.TREATMENT and spec.role(1) == Arm.CONTROL
    no_ratio = load_spec(BASE | SHORTHAND)
    assert [a.price_ratio for a in no_ratio.arm_list()] == [None, None]


def test_views_of_an_arm_list() -> None:
    spec = load_spec(BASE | {"arms": LADDER})
    assert [a.name for a in spec.arm_list()] == ["list", "p95", "p105"]
    assert spec.control_index == 0 and spec.n_arms == 3
    assert spec.allocations() == (0.4, 0.3, 0.3)
    assert [spec.policy(i) for i in range(3)] == ["pol-list", "pol-p95", "pol-p105"]
    assert [spec.role(i) for i in range(3)] == [Arm.CONTROL, Arm.TREATMENT, Arm.TREATMENT]
    assert spec.policy(Arm.CONTROL) == "pol-list"
    # a role names no single arm of three; the shorthand's fields stay empty (never a silent
    # two-arm reading of a three-arm spec); allocation is P(not control)
    with pytest.raises(ValueError, match="names no single arm"):
        spec.policy(Arm.TREATMENT)
    assert spec.treatment_policy is None and spec.control_policy is None
    assert spec.price_ratio is None and spec.allocation == pytest.approx(0.6)


def test_a_two_arm_list_fills_the_shorthands_views() -> None:
    two = arms(("list", 0.25, 1.0, True), ("p95", 0.75, 0.95, False))
    spec = load_spec(BASE | {"arms": two})
    assert spec.control_index == 0
    assert (spec.treatment_policy, spec.control_policy) == ("pol-p95", "pol-list")
    assert spec.allocation == 0.75 and spec.price_ratio == 0.95


def test_a_shorthand_spec_dumps_as_before_arms_existed() -> None:
    spec = load_spec(BASE | SHORTHAND | {"allocation": 0.3})
    text = spec.to_json()
    # the keys and their order of a two-arm spec's JSON (docs/designs.md "The spec")
    assert "arms" not in json.loads(text) and "arms" not in spec.model_dump()
    assert list(json.loads(text))[:7] == [
        "id", "design", "products", "clusters", "treatment_policy", "control_policy",
        "price_ratio",
    ]  # fmt: skip
    assert text.startswith(
        '{"id":"ladder","design":"random-days","products":["a","b","c","d"],"clusters":{},'
        '"treatment_policy":"price-95","control_policy":"list-price","price_ratio":null,'
        '"start":"2026-05-04T00:00:00Z","end":"2026-05-18T00:00:00Z","timezone":"UTC",'
        '"period":"P1D","allocation":0.3,'
    )


def test_an_arm_spec_dumps_without_the_shorthand_and_round_trips() -> None:
    spec = load_spec(BASE | {"arms": LADDER})
    doc = json.loads(spec.to_json())
    assert not {"treatment_policy", "control_policy", "allocation", "price_ratio"} & set(doc)
    assert doc["arms"][1] == {
        "name": "p95", "policy": "pol-p95", "price_ratio": 0.95, "allocation": 0.3,
        "control": False,
    }  # fmt: skip
    assert load_spec(spec.to_json()) == spec
    assert load_spec(spec.model_dump(mode="json")) == spec
    assert load_spec(spec.model_dump(mode="python")) == spec
    assert load_spec(spec.to_json()).to_json() == spec.to_json()


def test_two_arm_only_names_arms_for_more_than_two() -> None:
    load_spec(BASE | SHORTHAND).two_arm_only("x")
    load_spec(BASE | {"arms": LADDER[:1] + [LADDER[1] | {"allocation": 0.6}]}).two_arm_only("x")
    with pytest.raises(SpecError, match=r"^arms: 3-arm experiments cannot run live yet$"):
        load_spec(BASE | {"arms": LADDER}).two_arm_only("cannot run live yet")
