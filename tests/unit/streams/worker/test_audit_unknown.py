"""A command refused because it names an experiment that does not exist leaves no record under
that id (a typo's commands once made ``experiment history op-tset`` a two-record trail of an
experiment that never was); the ids it names that do exist keep theirs."""

from __future__ import annotations

from streams.worker.control import FLEET, trail_records
from streams.worker.schemas import Command, CommandReply

REFUSED = CommandReply(command_id="c1", ok=False, error="there is no experiment 'op-tset'")


def _cmd(**kw: object) -> Command:
    return Command(command_id="c1", actor="ann", **kw)  # type: ignore[arg-type]


def test_a_command_to_an_unknown_id_is_recorded_nowhere() -> None:
    stop = _cmd(kind="stop", experiment="op-tset", reason="typo")
    assert trail_records(stop, REFUSED, ("op-tset",)) == []
    # neither under the fleet: it would show in every experiment's trail
    assert all(e != FLEET for e, _ in trail_records(stop, REFUSED, ("op-tset",)))


def test_a_freeze_naming_known_and_unknown_ids_is_recorded_under_the_known_ones() -> None:
    listed = {"experiments": ["op-test", "nope"], "reason": "r", "start": "x", "end": "y"}
    records = trail_records(_cmd(kind="freeze", freeze=listed), REFUSED, ("nope",))
    assert [e for e, _ in records] == ["op-test"]
    assert records[0][1]["accepted"] is False


def test_other_refusals_keep_their_record() -> None:
    final = CommandReply(command_id="c1", ok=False, error="experiment 'e' was stopped")
    [(exp, d)] = trail_records(_cmd(kind="pause", experiment="e", reason="r"), final)
    assert exp == "e" and d["refusal"] == "experiment 'e' was stopped"
