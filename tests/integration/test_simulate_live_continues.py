"""``pricelab simulate --live`` run a second time on the same experiment continues it.

Issue #54: a second ``simulate --live --days 14`` replayed day 1, its sales were dead-lettered
as ``late``, and it ended with ``error: estimates ... came before its look``. Now the second
run takes the experiment over from the period after the last one played, replaying the
periods before without sending anything, so that its looks are the ones an uninterrupted run
publishes (lock-step: a run is a function of its seeds). What cannot be continued is one
sentence, exit 2, saying what to do: another seed, another spec, more days than are left, a
stopped experiment.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from controller.settings import Settings
from streams.live.driver import lockstep_settings
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings, pricelab

pytestmark = pytest.mark.integration

SPEC = """
id: live-cont
design: random-days
products: [{products}]
treatment_policy: promo
control_policy: list
start: 2026-05-04T00:00:00+02:00
end: 2026-05-10T00:00:00+02:00
timezone: Europe/Berlin
seed: 5
"""


def _spec(tmp_path: Path, name: str = "spec.yaml", n: int = 16) -> Path:
    path = tmp_path / name
    path.write_text(SPEC.format(products=", ".join(f"C{i:02d}" for i in range(n))))
    return path


class Stack:
    """A controller and an analysis worker (real processes) on settings of their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = [
            WorkerProcess(settings, (role,)).launch() for role in ("controller", "analysis")
        ]

    def __enter__(self) -> Stack:
        for w in self.workers:
            w.wait_healthy()
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.stop()

    def simulate(self, spec: Path, *args: str) -> tuple[int, str, str]:
        metrics = f"http://127.0.0.1:{self.workers[1].metrics_port}/metrics"
        res = pricelab(
            self.settings, "simulate", "--live", "--spec", str(spec), "--analysis-metrics",
            metrics, *args, timeout=600,
        )  # fmt: skip
        return res.returncode, res.stdout, res.stderr


def _looks(out: str) -> list[str]:
    """The estimate lines of the looks a run printed (look, estimator, numbers)."""
    return re.findall(r"^\s+estimate .*$", out, re.M)


def test_a_second_run_continues_where_the_first_stopped(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(tmp_path)
    # an uninterrupted run of five periods, on a stack of its own
    settings = lockstep_settings(make_settings(stack))
    asyncio.run(ensure_topics(settings))
    with Stack(settings) as whole:
        code, straight, err = whole.simulate(spec, "--days", "5")
    assert code == 0, err
    # the same, in two runs: 2 periods, then 3 more
    settings = lockstep_settings(make_settings(stack))
    asyncio.run(ensure_topics(settings))
    with Stack(settings) as s:
        code, first, err = s.simulate(spec, "--days", "2")
        assert code == 0, err
        code, second, err = s.simulate(spec, "--days", "3")
        assert code == 0, err
        assert "came before its look" not in second + err
        assert "continuing live-cont from period 3/6 (periods 1..2 were played" in second
        played = re.findall(r"^period\s+(\d+)/(\d+) ", second, re.M)
        assert played == [("3", "5"), ("4", "5"), ("5", "5")], second
        # what cannot be continued: one sentence, exit 2, what to do
        code, out, err = s.simulate(spec, "--days", "2")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert "--days must be 1..1 (the periods of 'live-cont' left to play)" in err
        code, out, err = s.simulate(spec, "--days", "1", "--seed", "99")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "continue it with the --seed (and --market) of the run that created it" in err
        code, out, err = s.simulate(_spec(tmp_path, "other.yaml", 12), "--days", "1")
        assert code == 2 and "exists with another spec" in err and "new id" in err, err
        stopped = pricelab(s.settings, "experiment", "stop", "live-cont", "--reason", "done")
        assert stopped.returncode == 0, stopped.stderr
        code, out, err = s.simulate(spec)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "experiment 'live-cont' is stopped: there is nothing left to play" in err
    # the looks of the two runs are the uninterrupted run's, to the printed digit
    assert _looks(first) + _looks(second) == _looks(straight), (first, second, straight)
    assert _looks(second), second
    assert straight.split("scorecard after", 1)[1] == second.split("scorecard after", 1)[1]
