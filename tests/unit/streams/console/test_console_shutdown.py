"""The console's shutdown stops a heatmap being made (docs/console.md, "Charts"): the tasks
that await a build are cancelled and awaited, so none is left pending, and the shutdown does
not wait for the build's thread, which cannot be killed: the build sees its stop flag before
its next period and ends there. A build here blocks on an event inside its first period's
draws; nothing waits on time."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import streams.client.heatmap as heatmap
from controller.settings import ConsoleSettings, Settings
from streams.client.heatmap import BuildStopped, schedule_matrices
from streams.console import auth
from streams.console.app import Console, build_app
from tests.unit.streams.console.test_console_app import PASSWORDS, _Feed, _state, hash_line
from tests.unit.streams.console.test_console_charts import _ChartStore


class _Blocked:
    """``period_assignments`` that blocks in experiment ``shoes``' first period until
    ``release``; the periods drawn, and how each build ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started, self.release, self.finished = (threading.Event() for _ in range(3))
        self.drawn: list[tuple[str, int]] = []
        self.ended: list[BaseException | None] = []
        draw, make = heatmap.period_assignments, heatmap.schedule_heatmap

        def blocking(spec: Any, k: int, context: Any = None) -> Any:
            self.drawn.append((spec.id, k))
            if spec.id == "shoes" and k == 0:
                self.started.set()
                self.release.wait(30)  # the test releases it; 30 s only bounds a failure
            return draw(spec, k, context)

        def watched(spec: Any, *args: Any, **kw: Any) -> Any:
            try:
                out = make(spec, *args, **kw)
            except BaseException as exc:
                self.ended.append(exc)
                raise
            else:
                self.ended.append(None)
                return out
            finally:
                self.finished.set()

        monkeypatch.setattr(heatmap, "period_assignments", blocking)
        monkeypatch.setattr(heatmap, "schedule_heatmap", watched)


def test_a_set_stop_flag_ends_the_build_before_its_next_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _state("shoes", 2).spec  # 5 daily periods
    stop = threading.Event()
    drawn: list[int] = []
    draw = heatmap.period_assignments

    def stopping(spec: Any, k: int, context: Any = None) -> Any:
        drawn.append(k)
        if k == 1:
            stop.set()  # as the console's shutdown would, during period 1's draws
        return draw(spec, k, context)

    monkeypatch.setattr(heatmap, "period_assignments", stopping)
    with pytest.raises(BuildStopped, match="before period 2 of 5"):
        schedule_matrices(spec, stop=stop)
    assert drawn == [0, 1]
    drawn.clear()
    stop.clear()
    arm, _ = schedule_matrices(spec, stop=threading.Event())  # never set: every period
    assert drawn == [0, 1, 2, 3, 4] and arm.shape == (4, 5)


async def test_shutdown_cancels_the_build_and_does_not_wait_for_its_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocked = _Blocked(monkeypatch)
    users = tmp_path / "users"
    users.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))
    store = _ChartStore([_state("shoes", 2), _state("hats", -1)])
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        store,  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
    )
    app = build_app(console)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        console.heatmaps.warm(store, "shoes")  # made in the background, as on its creation
        console.heatmaps.warm(store, "hats")  # due after it
        assert await asyncio.to_thread(blocked.started.wait, 10)
        warming = console.heatmaps._warming
        building = list(console.heatmaps._made.values())
        assert warming is not None and len(building) == 1 and not building[0].done()
        # the shutdown returns while the build's thread is still blocked in period 0
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), 10)
        assert not blocked.release.is_set() and not blocked.finished.is_set()
        assert warming.cancelled() and building[0].cancelled()
        assert blocked.drawn == [("shoes", 0)]  # hats, due after it, never started
    finally:
        blocked.release.set()
    # released, the thread sees the stop flag before its next period and ends there
    assert await asyncio.to_thread(blocked.finished.wait, 10)
    assert len(blocked.ended) == 1 and isinstance(blocked.ended[0], BuildStopped)
    assert blocked.drawn == [("shoes", 0)]
    console.heatmaps.warm(store, "hats")  # after the shutdown: nothing is made
    assert console.heatmaps._warming is warming and console.heatmaps._due == {}
