"""``pricelab dead-letters`` without a broker: letters read off records, grouped by reason,
chosen by reason and offset, and which of them a replay sends."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest

from controller.settings import Settings, TopicSettings
from streams.client.dead_letters import (
    Letter,
    as_json,
    by_reason,
    letter_of,
    plan_replay,
    render,
    select,
)
from streams.errors import DeadLetterChoiceError

SETTINGS = Settings(
    topics=TopicSettings(sales="s.sales", dead_letter="s.dlq"), app_id="dl", clock="wall"
)


def sale(eid: str, product: Any = "A", units: Any = 1, price: float = 5.0) -> bytes:
    return json.dumps(
        {
            "event_id": eid,
            "product": product,
            "units": units,
            "revenue": units * price if isinstance(units, int | float) else 1.0,
            "unit_price": price,
            "occurred_at": "2026-06-01T10:00:00Z",
        }
    ).encode()


def letter(
    offset: int, reason: str, original: bytes, partition: int = 0, topic: str = "s.sales"
) -> Letter:
    return Letter(partition, offset, reason, f"{reason}!", topic, original, "2026-06-01T11:00Z")


LETTERS = [
    letter(0, "invalid_field", sale("r1", units=-2)),  # a return: passes now
    letter(1, "invalid_field", sale("n1", product=121)),  # a number for an id: refused now
    letter(2, "late", sale("l1")),
    letter(0, "currency", sale("c1"), partition=1),
    letter(3, "malformed_json", b"{nope", topic="s.sales"),
    letter(4, "invalid_field", b"{}", topic="s.prices"),
]


def test_a_record_is_read_as_a_letter_and_junk_is_not() -> None:
    doc = {
        "v": 1, "source_topic": "s.sales", "reason": "late", "error": "e", "at": "t",
        "original_b64": base64.b64encode(b"raw").decode(), "partition": 1, "offset": 9,
    }  # fmt: skip
    got = letter_of(SimpleNamespace(value=json.dumps(doc).encode(), partition=2, offset=5))
    assert got is not None
    x = Letter(**got)
    assert (x.position, x.reason, x.original, x.source_offset) == ("2:5", "late", b"raw", 9)
    assert letter_of(SimpleNamespace(value=b"{", partition=0, offset=0)) is None
    bad = doc | {"original_b64": "**"}
    assert letter_of(SimpleNamespace(value=json.dumps(bad).encode(), partition=0, offset=0)) is None


def test_letters_are_grouped_by_reason_most_frequent_first() -> None:
    groups = by_reason(LETTERS)
    assert list(groups) == ["invalid_field", "currency", "late", "malformed_json"]
    assert [x.position for x in groups["invalid_field"]] == ["0:0", "0:1", "0:4"]


def test_letters_are_chosen_by_reason_and_by_offset() -> None:
    assert [x.position for x in select(LETTERS, ["late", "currency"])] == ["0:2", "1:0"]
    assert [x.position for x in select(LETTERS, (), ["1:0", "3"])] == ["1:0", "0:3"]
    assert [x.position for x in select(LETTERS, ["invalid_field"], ["0:1"])] == ["0:1"]
    assert select(LETTERS) == LETTERS


@pytest.mark.parametrize(
    ("reasons", "positions", "said"),
    [
        (["nope"], [], "no dead letter has reason 'nope' (the reasons on the topic: currency,"),
        ([], ["0"], "offset 0 has a dead letter in partitions 0, 1: write it PARTITION:OFFSET"),
        ([], ["7:0"], "no dead letter is at offset 7:0"),
        ([], ["a:b"], "'a:b' is not PARTITION:OFFSET"),
        (["late"], ["0:0"], "no dead letter is at the given offsets with that reason"),
    ],
)
def test_a_choice_with_no_letter_is_one_sentence(
    reasons: list[str], positions: list[str], said: str
) -> None:
    with pytest.raises(DeadLetterChoiceError) as info:
        select(LETTERS, reasons, positions)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_a_replay_sends_only_the_sales_that_pass_the_decoder_now_and_never_a_late_one() -> None:
    plan = plan_replay(LETTERS, SETTINGS)
    assert [x.position for x in plan.sent] == ["0:0", "1:0"]  # the return; the currency one
    held = {x.position: why for x, why in plan.held}
    assert held["0:1"].startswith("invalid_field: product: is the number 121: send the id as")
    assert held["0:2"].startswith("its period is closed")
    assert held["0:3"].startswith("malformed_json")
    assert held["0:4"] == "from s.prices: only sales are replayed"


def test_the_listing_says_per_reason_how_many_pass_now_with_examples() -> None:
    text = render(LETTERS, SETTINGS, examples=1)
    assert text.splitlines()[0].startswith("6 dead letters on s.dlq, 4 reasons")
    assert "\ninvalid_field: 3 (1 pass the decoder now)\n  0:0  invalid_field!\n" in text
    assert "0:1" not in text  # one example a reason
    # it passes the decoder, yet is not replayed
    assert "late: 1 (1 pass the decoder now)" in text
    assert "passes now, not replayed: its period is closed" in text
    assert render([], SETTINGS) == "no dead letters on s.dlq"
    docs = as_json(LETTERS[:2], SETTINGS)
    assert [(d["passes_now"], d["offset"]) for d in docs] == [(True, 0), (False, 1)]
