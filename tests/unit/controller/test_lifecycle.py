"""The lifecycle table (controller.lifecycle): complete, final states final, repeats that do
nothing, and a new decision exactly when what a pricing system must do changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.errors import CommandRefused
from controller.lifecycle import (
    COMMANDS,
    RULES,
    Event,
    Kind,
    Phase,
    Records,
    State,
    Window,
    check_create,
    check_freeze,
    decide,
    reason_missing,
    state_of,
    stored_status,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
RUNNING = State(Phase.RUNNING, period=3)
PAUSED = State(Phase.PAUSED, period=3)
CREATED = State(Phase.CREATED)


def test_the_table_has_a_rule_for_every_state_and_event() -> None:
    assert set(RULES) == {(p, k) for p in Phase for k in Kind}


@pytest.mark.parametrize("phase", [Phase.STOPPED, Phase.ENDED])
@pytest.mark.parametrize("kind", list(Kind))
def test_stopped_and_ended_are_final(phase: Phase, kind: Kind) -> None:
    state = State(phase, period=3)
    try:
        out = decide("x", state, Event(kind, period=4, frozen=True))
    except CommandRefused as exc:
        assert kind in COMMANDS and "final" in str(exc)
        return
    assert out.after == state and not out.publish and out.already is not None


@pytest.mark.parametrize(
    ("state", "kind", "word"),
    [
        (PAUSED, Kind.PAUSE, "paused"),
        (RUNNING, Kind.RESUME, "running"),
        (CREATED, Kind.RESUME, "not paused"),
        (State(Phase.STOPPED, period=3), Kind.STOP, "stopped"),
    ],
)
def test_the_same_command_twice_does_nothing_the_second_time(state, kind, word) -> None:
    out = decide("x", state, Event(kind))
    assert out.already == word and out.after == state
    assert not out.publish and out.announce is None and not out.release


def test_pause_resume_stop_each_publish_a_new_decision() -> None:
    paused = decide("x", RUNNING, Event(Kind.PAUSE))
    assert paused.after == PAUSED and paused.publish and paused.announce == "paused"
    resumed = decide("x", PAUSED, Event(Kind.RESUME))
    assert resumed.after == RUNNING and resumed.publish and resumed.announce == "resumed"
    stopped = decide("x", PAUSED, Event(Kind.STOP))
    assert stopped.after.phase is Phase.STOPPED and stopped.publish and stopped.release
    assert stopped.after.mode == "stopped"


def test_before_the_start_nothing_is_published_and_resume_goes_back_to_created() -> None:
    paused = decide("x", CREATED, Event(Kind.PAUSE))
    assert paused.after == State(Phase.PAUSED) and not paused.publish
    assert decide("x", paused.after, Event(Kind.RESUME)).after == CREATED
    # paused at the start: period 0 goes out on the control policy, then resume runs it
    at_start = decide("x", paused.after, Event(Kind.FLIP, period=0, frozen=False))
    assert at_start.after == State(Phase.PAUSED, period=0) and at_start.after.mode == "paused"
    assert at_start.publish
    stopped = decide("x", CREATED, Event(Kind.STOP))
    assert stopped.after.phase is Phase.STOPPED and not stopped.publish and stopped.release


def test_a_flip_moves_the_period_and_carries_the_freeze_overlay() -> None:
    out = decide("x", RUNNING, Event(Kind.FLIP, period=5, frozen=True))
    assert out.after == State(Phase.RUNNING, True, 5) and out.after.mode == "frozen"
    assert out.publish
    # a flip to a period not ahead of the one in force is nothing
    assert decide("x", RUNNING, Event(Kind.FLIP, period=3, frozen=False)).already is not None


def test_a_freeze_under_a_pause_changes_nothing_a_reader_sees() -> None:
    on = decide("x", PAUSED, Event(Kind.FREEZE_ON))
    assert on.after.frozen and on.after.mode == "paused"
    assert not on.publish and on.announce is None
    resumed = decide("x", on.after, Event(Kind.RESUME))
    assert resumed.after.mode == "frozen" and resumed.publish  # resumed into the freeze


def test_a_freeze_on_a_running_experiment_is_a_decision() -> None:
    on = decide("x", RUNNING, Event(Kind.FREEZE_ON))
    assert on.after.mode == "frozen" and on.publish and on.announce == "frozen"
    off = decide("x", on.after, Event(Kind.FREEZE_OFF))
    assert off.after == RUNNING and off.publish and off.announce == "unfrozen"


def test_created_is_running_before_any_period_is_in_force() -> None:
    assert state_of("running", False, -1).phase is Phase.CREATED
    assert state_of("running", False, 0).phase is Phase.RUNNING
    assert stored_status(Phase.CREATED) == "running"


def test_creating_is_a_state_that_refuses_commands_and_that_the_clock_waits_for() -> None:
    creating = state_of("creating", False, -1)
    assert creating.phase is Phase.CREATING and stored_status(Phase.CREATING) == "creating"
    assert not creating.clocked and creating.mode is None
    for kind in COMMANDS:
        with pytest.raises(CommandRefused, match="is still being created"):
            decide("x", creating, Event(kind))
    for kind in set(Kind) - COMMANDS:
        out = decide("x", creating, Event(kind, period=0, frozen=False))
        assert out.after == creating and not out.publish and out.already is not None
    with pytest.raises(CommandRefused, match="takes no command"):
        state_of("halted", False, -1)


def test_each_rule_carries_its_effects() -> None:
    """What a decision does beside moving the state is the table's, not the flipper's: a
    pause or a stop opens an exclusion window first, a resume closes it after, and the
    period's records are rewritten by a flip, a resume and a freeze moving under a running
    experiment (with the control policy while paused)."""
    for state in (CREATED, RUNNING, PAUSED):
        stop = decide("x", state, Event(Kind.STOP))
        assert stop.window is Window.OPEN and stop.release and stop.records is None
    for state in (CREATED, RUNNING):
        assert decide("x", state, Event(Kind.PAUSE)).window is Window.OPEN
    resumed = decide("x", PAUSED, Event(Kind.RESUME))
    assert resumed.window is Window.CLOSE and resumed.rewrite is Records.DESIGN
    assert decide("x", State(Phase.PAUSED), Event(Kind.RESUME)).rewrite is None  # no period
    flip = Event(Kind.FLIP, period=4, frozen=False)
    assert decide("x", RUNNING, flip).rewrite is Records.DESIGN and decide("x", RUNNING, flip).flip
    assert decide("x", PAUSED, flip).rewrite is Records.CONTROL
    assert decide("x", CREATED, flip).rewrite is Records.DESIGN
    assert decide("x", RUNNING, Event(Kind.FREEZE_ON)).rewrite is Records.DESIGN
    assert decide("x", CREATED, Event(Kind.FREEZE_ON)).rewrite is None
    assert decide("x", PAUSED, Event(Kind.FREEZE_ON)).rewrite is None
    end = decide("x", RUNNING, Event(Kind.END))
    assert end.release and end.window is None and end.rewrite is None and not end.flip


def test_the_reason_rule_is_one_predicate() -> None:
    assert reason_missing("pause", None) and reason_missing("stop", "  ")
    assert reason_missing("freeze", "") and not reason_missing("freeze", "stock-take")
    assert not reason_missing("resume", None) and not reason_missing("unfreeze", None)


def test_a_start_before_now_needs_a_backfill_and_an_end_before_now_is_refused() -> None:
    check_create("x", NOW, NOW + timedelta(days=1), NOW, backfill=False)  # starts now
    with pytest.raises(CommandRefused, match="--backfill"):
        check_create("x", NOW - timedelta(days=23), NOW + timedelta(days=9), NOW, backfill=False)
    check_create("x", NOW - timedelta(days=23), NOW + timedelta(days=9), NOW, backfill=True)
    with pytest.raises(CommandRefused, match="nothing left to run"):
        check_create("x", NOW - timedelta(days=9), NOW, NOW, backfill=True)


def test_a_freeze_must_reach_the_future_and_name_live_experiments() -> None:
    states = {"a": RUNNING, "gone": State(Phase.STOPPED, period=2)}
    later = NOW + timedelta(hours=1)
    check_freeze("f", NOW - timedelta(hours=1), later, ["a"], states, NOW)
    check_freeze("f", NOW, later, None, states, NOW)  # every experiment
    with pytest.raises(CommandRefused, match="in the past"):
        check_freeze("f", NOW - timedelta(hours=2), NOW, ["a"], states, NOW)
    with pytest.raises(CommandRefused, match="'nope', which does not exist"):
        check_freeze("f", NOW, later, ["a", "nope"], states, NOW)
    with pytest.raises(CommandRefused, match="stopped"):
        check_freeze("f", NOW, later, ["gone"], states, NOW)


def test_the_runbook_shows_the_table_as_the_code_has_it() -> None:
    from pathlib import Path

    from controller.lifecycle import effects_markdown, table_markdown

    doc = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    assert table_markdown() in doc
    assert effects_markdown() in doc


def test_a_backfill_is_counted_apart_from_missed_and_late_flips() -> None:
    """The catch-up of a --backfill experiment is expected: it must not feed the series that
    PricelabMissedFlips and PricelabLateFlip alert on."""
    from prometheus_client import CollectorRegistry

    from streams.worker.metrics import Metrics

    m = Metrics(registry=CollectorRegistry())

    def value(name: str, **labels: str) -> float:
        return m.registry.get_sample_value(name, labels) or 0.0

    m.flipped("bf", 10, 0.1, missed=0, lateness=45_228.0, backfilled=24)
    assert value("pricelab_backfilled_flips_total", experiment="bf") == 24
    assert value("pricelab_missed_flips_total", experiment="bf") == 0
    assert value("pricelab_flip_lateness_seconds_count") == 0
    m.flipped("bf", 10, 0.1, missed=2, lateness=90.0)  # a later outage is one
    assert value("pricelab_missed_flips_total", experiment="bf") == 2
    assert value("pricelab_flip_lateness_seconds_count") == 1
