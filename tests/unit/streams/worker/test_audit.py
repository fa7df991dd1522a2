"""The audit trail's pure parts: who may command, which commands need a reason, where each
command is recorded, and how the history is put back together from the topic."""

from __future__ import annotations

import pytest

from streams.client.history import assemble, render
from streams.worker.control import FLEET, command_refusal, experiment_named, trail_records
from streams.worker.schemas import Command, CommandReply, actor_refusal


def _cmd(**kw: object) -> Command:
    return Command(command_id="c1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("actor", "allowed", "says"),
    [
        (None, "", "needs an actor"),
        ("", "", "needs an actor"),
        ("ann smith", "", "is not an actor"),
        ("ann@host name", "", "is not an actor"),
        ("bob@h", "ann,carol", "not one of the configured actors"),
    ],
)
def test_an_actor_is_refused_in_one_sentence(actor: str | None, allowed: str, says: str) -> None:
    assert says in (actor_refusal(actor, allowed) or "")


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [("ann", ""), ("ann@ops-desk", ""), ("ann@ops-desk", "ann, bob"), ("bob", "ann,bob")],
)
def test_well_formed_and_listed_actors_pass(actor: str, allowed: str) -> None:
    assert actor_refusal(actor, allowed) is None


def test_the_wire_refuses_a_malformed_actor() -> None:
    with pytest.raises(ValueError, match="is not an actor"):
        _cmd(kind="resume", experiment="e", actor="two words")


def test_stop_pause_and_freeze_need_a_reason_resume_does_not() -> None:
    assert "needs a reason" in (command_refusal(_cmd(kind="stop", experiment="e", actor="a")) or "")
    assert "needs a reason" in (
        command_refusal(_cmd(kind="pause", experiment="e", actor="a", reason="  ")) or ""
    )
    assert command_refusal(_cmd(kind="resume", experiment="e", actor="a")) is None
    freeze = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    assert "needs a reason" in (
        command_refusal(_cmd(kind="freeze", freeze=freeze, actor="a")) or ""
    )
    given = freeze | {"reason": "stock-take"}
    assert command_refusal(_cmd(kind="freeze", freeze=given, actor="a")) is None
    # the actor comes first: a command from nobody is refused whatever it says
    assert "actor" in (command_refusal(_cmd(kind="stop", experiment="e", reason="r")) or "")


def test_each_command_is_recorded_under_the_experiments_it_names() -> None:
    refused = CommandReply(command_id="c1", ok=False, error="there is no experiment 'x'")
    [(exp, d)] = trail_records(_cmd(kind="stop", experiment="x", actor="ann", reason="r"), refused)
    assert exp == "x" and d["accepted"] is False and d["refusal"].startswith("there is no")
    assert (d["actor"], d["reason"], d["command_id"], d["command"]) == ("ann", "r", "c1", "stop")
    ok = CommandReply(command_id="c1", ok=True, detail={"already": "stopped"})
    [(_, d)] = trail_records(_cmd(kind="stop", experiment="x", actor="ann", reason="r"), ok)
    assert d["accepted"] is True and d["already"] == "stopped"
    create = _cmd(kind="create", spec={"id": "new-exp"}, actor="ann")
    assert [e for e, _ in trail_records(create, ok)] == ["new-exp"]
    listed = {"experiments": ["a", "b"], "reason": "hold", "start": "x", "end": "y"}
    two = trail_records(_cmd(kind="freeze", freeze=listed, actor="ann"), ok)
    assert [e for e, _ in two] == ["a", "b"] and two[0][1]["reason"] == "hold"
    everyone = {"experiments": "all", "reason": "hold", "start": "x", "end": "y"}
    assert [e for e, _ in trail_records(_cmd(kind="freeze", freeze=everyone, actor="a"), ok)] == [
        FLEET
    ]
    un = trail_records(_cmd(kind="unfreeze", freeze_id="f1", actor="a"), ok)
    assert un[0][0] == FLEET and un[0][1]["freeze"] == "f1"
    # an unfreeze: under the experiments of the freeze it cancelled, as its reply names them
    # (it was recorded under the fleet, so it showed in every experiment's history)
    of_b = CommandReply(command_id="c1", ok=True, detail={"freeze": {"experiments": ["b"]}})
    un = trail_records(_cmd(kind="unfreeze", freeze_id="f1", actor="a"), of_b)
    assert [e for e, _ in un] == ["b"] and un[0][1]["freeze"] == "f1"
    of_all = CommandReply(command_id="c1", ok=True, detail={"freeze": {"experiments": "all"}})
    assert [e for e, _ in trail_records(_cmd(kind="unfreeze", freeze_id="f1"), of_all)] == [FLEET]
    # a create whose spec id is not an id: under the fleet, saying what it named
    bad = trail_records(_cmd(kind="create", spec={"id": "no spaces allowed"}, actor="a"), refused)
    assert bad[0][0] == FLEET and bad[0][1]["named"] == ["no spaces allowed"]


def test_a_reply_names_the_experiment_its_command_is_about() -> None:
    """The reply's ``experiment``: a freeze of one experiment names it (it said null), a
    create its spec's id, an unfreeze the scope of the freeze it cancelled."""
    one = {"experiments": ["walkthrough"], "reason": "holidays", "start": "x", "end": "y"}
    assert experiment_named(_cmd(kind="freeze", freeze=one, actor="a")) == "walkthrough"
    two = one | {"experiments": ["a", "b"]}
    assert experiment_named(_cmd(kind="freeze", freeze=two, actor="a")) == "a,b"
    every = one | {"experiments": "all"}
    assert experiment_named(_cmd(kind="freeze", freeze=every, actor="a")) == FLEET
    create = _cmd(kind="create", spec={"id": "walk2"}, actor="a")
    assert experiment_named(create) == "walk2"
    un = _cmd(kind="unfreeze", freeze_id="holidays", actor="a")
    assert experiment_named(un, {"freeze": {"id": "holidays", "experiments": ["w"]}}) == "w"
    assert experiment_named(un) is None  # refused: there was no such freeze
    assert experiment_named(_cmd(kind="pause", experiment="w", actor="a", reason="r")) == "w"


def _rec(exp: str, kind: str, at: str, **detail: object) -> dict[str, object]:
    return {"experiment": exp, "kind": kind, "at": at, "detail": detail}


def test_the_history_is_one_experiments_and_the_fleets_in_time_order_each_fact_once() -> None:
    docs = [
        (0, 0, _rec("e", "command", "2026-01-01T10:00:00+00:00", command_id="c1", command="create",
                    actor="ann", accepted=True)),
        (1, 0, _rec("other", "command", "2026-01-01T10:01:00+00:00", command_id="c2")),
        (0, 1, _rec("e", "started", "2026-01-01T11:00:00+00:00", period=0, worker="w1")),
        (2, 0, _rec(FLEET, "command", "2026-01-01T10:30:00+00:00", command_id="c3",
                    command="unfreeze", actor="bob", accepted=False, refusal="no freeze 'f'")),
        # a redelivered command and a redone decision: the same facts again
        (0, 2, _rec("e", "command", "2026-01-01T10:00:00+00:00", command_id="c1", command="create",
                    actor="ann", accepted=True)),
        (0, 3, _rec("e", "started", "2026-01-01T11:00:05+00:00", period=0, worker="w2")),
    ]  # fmt: skip
    trail = assemble("e", docs)
    assert [(r["kind"], r["at"][11:16]) for r in trail.records] == [
        ("command", "10:00"), ("command", "10:30"), ("started", "11:00")
    ]  # fmt: skip
    assert trail.repeats == 2
    text = render(trail)
    head, *lines = text.splitlines()
    assert head.startswith("trail of e: 3 record(s)") and "nothing expired" in head
    assert "2 repeated record(s) left out" in head
    assert "ann" in lines[0] and "create accepted" in lines[0]
    assert "REFUSED: no freeze 'f'" in lines[1] and lines[1].endswith("[all experiments]")
    assert "worker w1" in lines[2] and "period=0" in lines[2]
    trail.log_start = {0: 0, 1: 57}
    assert "older records have expired (the topic now starts at p1@57)" in render(trail)
    assert render(assemble("ghost", docs)).startswith("no record of experiment 'ghost'")


def test_the_history_follows_the_trails_order_when_the_clock_ties() -> None:
    """Every record at one instant (a clock that stands still), the experiment's on partition
    1 and the fleet's on partition 0, each effect written before its command's record: the
    places the controller numbered them with give the order; a record without one (the
    analysis worker's guardrail trip) goes before the first numbered record of a later
    instant, or of its instant and after it on its partition."""
    t = "2026-12-14T00:00:00+00:00"
    docs = [
        (0, 0, _rec(FLEET, "command", t, command_id="u", command="unfreeze", order=9)),
        (1, 0, _rec("e", "created", t, order=2)),
        (1, 1, _rec("e", "command", t, command_id="c", command="create", order=1)),
        (1, 2, _rec("e", "started", t, period=0, order=3)),
        (1, 3, _rec("e", "paused", t, order=5)),
        (1, 4, _rec("e", "command", t, command_id="p", command="pause", order=4)),
        (1, 5, _rec("e", "frozen", t, order=8)),
        (0, 1, _rec(FLEET, "command", t, command_id="f", command="freeze", order=7)),
        (1, 6, _rec("e", "unfrozen", t, order=10)),
        (1, 7, _rec("e", "guardrail_tripped", t, metric="profit")),
        (1, 8, _rec("e", "command", t, command_id="s", command="stop", order=12)),
        (1, 9, _rec("e", "stopped", t, order=13)),
        # an earlier instant's record without a place: by time, before all of these
        (1, 10, _rec("e", "command", "2026-12-13T23:00:00+00:00", command_id="old")),
    ]
    got = [(r["kind"], r["detail"].get("command")) for r in assemble("e", docs).records]
    assert got == [
        ("command", None),  # the old, unnumbered record
        ("command", "create"), ("created", None), ("started", None),
        ("command", "pause"), ("paused", None),
        ("command", "freeze"), ("frozen", None),
        ("command", "unfreeze"), ("unfrozen", None),
        ("guardrail_tripped", None), ("command", "stop"), ("stopped", None),
    ]  # fmt: skip
