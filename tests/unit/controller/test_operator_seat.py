"""The operator's seat (issue #54, item 6), its pure parts: an id no experiment has is one
sentence that names it (and the nearest id, for a typo), a stopped or ended experiment's id
is not created again, and a freeze that names unknown ids says which."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.errors import CommandRefused, PricelabError, UnknownExperiment
from controller.lifecycle import Phase, State, check_freeze, check_known, check_recreate

END = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_known_id_passes() -> None:
    check_known("op-test", ["hourly-ladder", "op-test"])


def test_a_typo_is_one_sentence_naming_the_nearest_id() -> None:
    with pytest.raises(UnknownExperiment) as info:
        check_known("op-tset", ["hourly-ladder", "op-test"])
    said = str(info.value)
    assert said == (
        "there is no experiment 'op-tset' (did you mean 'op-test'? pricelab experiment list "
        "shows them)"
    )
    assert info.value.experiments == ("op-tset",)
    # a refusal of the command path and of the error root alike
    assert isinstance(info.value, CommandRefused) and isinstance(info.value, PricelabError)


def test_an_id_like_none_gets_no_guess() -> None:
    with pytest.raises(UnknownExperiment, match=r"^there is no experiment 'zzz' \(pricelab"):
        check_known("zzz", ["hourly-ladder", "op-test"])
    with pytest.raises(UnknownExperiment, match="no experiment 'x'"):
        check_known("x", [])


@pytest.mark.parametrize("phase", [Phase.CREATED, Phase.RUNNING, Phase.PAUSED, Phase.CREATING])
def test_a_live_experiment_may_be_created_again_as_a_retry(phase: Phase) -> None:
    check_recreate("e", phase, END)  # the flipper then compares the specs


def test_a_stopped_experiments_id_is_not_reused() -> None:
    with pytest.raises(CommandRefused) as info:
        check_recreate("op-test", Phase.STOPPED, END)
    said = str(info.value)
    assert said.startswith("experiment 'op-test' was stopped, and ids are not reused")
    assert said.endswith("create the experiment again under a new id") and "\n" not in said


def test_an_ended_experiments_id_is_not_reused_and_says_when_it_ended() -> None:
    with pytest.raises(CommandRefused, match=r"ended at 2026-12-01T00:00:00\+00:00, and ids"):
        check_recreate("e", Phase.ENDED, END)


def test_a_freeze_of_unknown_ids_names_each_of_them() -> None:
    states = {"a": State(Phase.RUNNING), "b": State(Phase.CREATING)}
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(UnknownExperiment) as info:
        check_freeze("f", now, END, ["a", "nope", "b"], states, now)
    assert info.value.experiments == ("nope", "b")  # one being created is not visible yet
    assert "names experiments 'nope', 'b', which do not exist" in str(info.value)
    with pytest.raises(UnknownExperiment, match="names experiment 'nope', which does not exist"):
        check_freeze("f", now, END, ["nope"], states, now)
    check_freeze("f", now, END, ["a"], states, now)
