"""The example pricing system's book (docs/examples/pricing_system.py) applies the assignment
contract: the highest seq among the messages whose period has begun."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "docs" / "examples"))
from pricing_system import PolicyBook  # noqa: E402

T = datetime(2026, 12, 1, tzinfo=UTC)


def msg(seq: int, status: str, period: int, policy: str = "list") -> dict[str, Any]:
    start = T + timedelta(days=period)
    return {
        "experiment": "e",
        "product": "p",
        "seq": seq,
        "status": status,
        "period": period,
        "policy": policy,
        "period_start": start.isoformat(),
    }


def test_the_highest_seq_wins_and_a_repeat_or_an_older_message_changes_nothing() -> None:
    book = PolicyBook()
    now = T + timedelta(days=1, hours=1)
    assert book.apply(msg(1, "running", 1, "promo"), now)
    assert book.apply(msg(2, "paused", 1), now)
    assert not book.apply(msg(2, "paused", 1), now)  # a redone decision's copy
    assert not book.apply(msg(1, "running", 1, "promo"), now)  # replayed by a rebalance
    assert book.current[("e", "p")]["status"] == "paused"


def test_an_announcement_takes_over_when_its_period_begins() -> None:
    book = PolicyBook()
    now = T + timedelta(days=1, hours=20)
    book.apply(msg(3, "running", 1, "list"), now)
    assert not book.apply(msg(4, "running", 2, "promo"), now)  # a trigger fire for period 2
    assert book.current[("e", "p")]["seq"] == 3  # still period 1's policy
    assert book.due(now) == []
    taken = book.due(T + timedelta(days=2))
    assert [m["seq"] for m in taken] == [4] and book.current[("e", "p")]["policy"] == "promo"


def test_a_later_decision_voids_an_announcement() -> None:
    book = PolicyBook()
    now = T + timedelta(days=1, hours=20)
    book.apply(msg(3, "running", 1), now)
    book.apply(msg(4, "running", 2, "promo"), now)  # announced
    assert book.apply(msg(5, "paused", 1), now)  # then paused: the pause is in force
    assert book.due(T + timedelta(days=2)) == []
    assert book.current[("e", "p")]["status"] == "paused"
