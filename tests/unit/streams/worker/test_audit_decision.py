"""A decision command on the wire and in the audit trail: what it needs, how it is recorded,
and how the history shows it (and which decision stands)."""

from __future__ import annotations

import pytest

from streams.client.history import assemble, latest_decision, render
from streams.worker.control import command_refusal, trail_records
from streams.worker.schemas import Command, CommandReply, DecodeError, decode


def _cmd(**kw: object) -> Command:
    return Command(command_id="c1", **kw)  # type: ignore[arg-type]


def test_a_decision_names_an_experiment_and_an_arm() -> None:
    with pytest.raises(ValueError, match="a decision command needs an experiment"):
        _cmd(kind="decision", arm="B", actor="a", reason="r")
    with pytest.raises(ValueError, match="needs an arm"):
        _cmd(kind="decision", experiment="e", actor="a", reason="r")
    with pytest.raises(ValueError, match="arm"):
        _cmd(kind="decision", experiment="e", arm="two words", actor="a", reason="r")


def test_a_decision_is_sent_as_v2_and_every_v1_command_still_reads() -> None:
    # the lowest version that carries it: a controller that reads only v2 takes it while the
    # controllers are rolled out to v3
    assert _cmd(kind="decision", experiment="e", arm="B", actor="a").v == 2
    assert _cmd(kind="pause", experiment="e", actor="a", reason="r").v == 2
    assert (
        b'"v":2'
        in _cmd(kind="stop", experiment="e", actor="a", reason="r").model_dump_json().encode()
    )
    old = b'{"v": 1, "command_id": "c", "kind": "stop", "experiment": "e", "reason": "r"}'
    assert decode(Command, old).kind == "stop"
    with pytest.raises(DecodeError) as exc:
        decode(Command, b'{"v": 4, "command_id": "c", "kind": "stop", "experiment": "e"}')
    assert exc.value.reason == "unsupported_version"


def test_a_decision_needs_a_reason_and_an_actor() -> None:
    no_reason = _cmd(kind="decision", experiment="e", arm="B", actor="olga", reason=" ")
    assert command_refusal(no_reason) == (
        "a decision command needs a reason (kept in the experiment's audit trail)"
    )
    nobody = _cmd(kind="decision", experiment="e", arm="B", reason="lift")
    assert "needs an actor" in (command_refusal(nobody) or "")
    listed = _cmd(kind="decision", experiment="e", arm="B", actor="olga@desk", reason="lift")
    assert command_refusal(listed, "olga,bob") is None
    assert "PRICELAB_ACTORS" in (command_refusal(listed, "bob") or "")


def test_the_trail_keeps_what_was_decided_or_what_was_asked() -> None:
    cmd = _cmd(kind="decision", experiment="e", arm="B", stop=True, actor="olga", reason="lift")
    decided = {"arm": "B", "ship": True, "decided": "ship arm 'B'", "stop": True}
    ok = CommandReply(command_id="c1", ok=True, detail={"state": "stopped", "decision": decided})
    [(exp, d)] = trail_records(cmd, ok)
    assert exp == "e"
    assert (d["command"], d["actor"], d["reason"], d["accepted"]) == (
        "decision", "olga", "lift", True
    )  # fmt: skip
    assert d["decision"] == decided
    refused = CommandReply(command_id="c1", ok=False, error="experiment 'e' has no arm 'B'")
    [(_, d)] = trail_records(cmd, refused)
    assert d["decision"] == {"arm": "B", "stop": True} and d["accepted"] is False


def _rec(at: str, command_id: str, **detail: object) -> tuple[int, int, dict[str, object]]:
    detail = {"command_id": command_id, "command": "decision"} | detail
    return (0, int(command_id[1:]), {"experiment": "e", "kind": "command", "at": at,
                                      "detail": detail})  # fmt: skip


def test_the_history_shows_each_decision_and_the_latest_accepted_one_stands() -> None:
    ship = {"arm": "B", "ship": True, "decided": "ship arm 'B'", "stop": False}
    keep = {"arm": "A", "ship": False, "decided": "keep the control (arm 'A')", "stop": True}
    docs = [
        _rec("2026-01-01T10:00:00+00:00", "c1", actor="olga", reason="lift", accepted=True,
             decision=ship),
        _rec("2026-01-02T10:00:00+00:00", "c2", actor="bob", reason="rollback", accepted=True,
             decision=keep),
        _rec("2026-01-03T10:00:00+00:00", "c3", actor="ann", reason="typo", accepted=False,
             refusal="experiment 'e' has no arm 'Z'", decision={"arm": "Z", "stop": False}),
    ]  # fmt: skip
    trail = assemble("e", docs)
    lines = render(trail).splitlines()[1:]
    assert "olga" in lines[0] and "decision accepted: ship arm 'B'; reason: lift" in lines[0]
    assert "decision accepted: keep the control (arm 'A'), and stop; reason: rollback" in lines[1]
    assert "decision REFUSED: arm 'Z': experiment 'e' has no arm 'Z'" in lines[2]
    assert latest_decision(trail) == {
        "decided": "keep the control (arm 'A'), and stop",
        "arm": "A",
        "ship": False,
        "stop": True,
        "actor": "bob",
        "reason": "rollback",
        "at": "2026-01-02T10:00:00+00:00",
    }
    assert latest_decision(assemble("e", docs[2:])) is None


def test_a_comment_needs_its_text_and_the_history_shows_it() -> None:
    with pytest.raises(ValueError, match="a comment command needs an experiment"):
        _cmd(kind="comment", actor="a", reason="note")
    with pytest.raises(ValueError, match="at most 500 characters"):
        _cmd(kind="comment", experiment="e", actor="a", reason="x" * 501)
    empty = _cmd(kind="comment", experiment="e", actor="olga")
    assert command_refusal(empty) == (
        "a comment command needs its text (its reason: kept in the audit trail)"
    )
    note = _cmd(kind="comment", experiment="e", actor="olga", reason="the stock-out hit d3")
    ok = CommandReply(command_id="c1", ok=True, detail={"state": "running"})
    [(exp, d)] = trail_records(note, ok)
    assert (exp, d["command"], d["reason"], d["actor"]) == (
        "e", "comment", "the stock-out hit d3", "olga"
    )  # fmt: skip
    trail = assemble("e", [(0, 0, {"experiment": "e", "kind": "command",
                                   "at": "2026-01-01T10:00:00+00:00", "detail": d})])  # fmt: skip
    line = render(trail).splitlines()[1]
    assert "olga" in line and line.endswith("comment: the stock-out hit d3")
