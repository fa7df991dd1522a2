"""The console's pages in a real browser where the stack is not needed: the console's own
application served by uvicorn over the unit tests' stand-in store and feed, and Debian's
chromium driven through its chromium-driver (Selenium).

- a 503 (the broker or Redis not answering) is drawn with its one sentence where
  the reply goes, and in the Health section, as a 4xx is (before, htmx left the reply empty
  and the section "Reading the health checks ..." for ever);
- in a window narrower than the heatmap, pointing at a cell names that cell (before, the
  pointer's place on the shrunk canvas was read as the canvas's own pixels: another cell's
  figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.settings import ConsoleSettings, Settings
from streams.client.history import Trail
from streams.console import app as console_app
from streams.console import auth, views
from streams.console.app import Console
from streams.console.server import build_console_app
from streams.errors import ServiceUnavailable
from streams.live.embedded import free_port
from tests.integration.test_console_browser import _sign_in, _text, _wait, browser  # noqa: F401
from tests.unit.streams.console.test_console_app import _Feed, _state
from tests.unit.streams.console.test_console_charts import _ChartStore

pytestmark = pytest.mark.integration

ADMIN = ("ada", "ada-pw-1")
#: what the stand-in says when asked to send a command or read the health checks
DOWN = "the Kafka broker at 127.0.0.1:9 does not answer (KafkaConnectionError)"
PERIODS = 30


class _LiveFeed(_Feed):
    @contextlib.asynccontextmanager
    async def listen(self, exp_id: str) -> AsyncIterator[Any]:
        yield asyncio.Queue()


class _Trails:
    async def trail(self, exp_id: str) -> Trail:
        return Trail(exp_id)

    async def close(self) -> None:
        return None


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import uvicorn

    users = tmp_path / "users"
    users.write_text(auth.hash_line(ADMIN[0], "admin", ADMIN[1]) + "\n")

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **f: Any) -> Any:
        raise ServiceUnavailable(DOWN)

    async def health_down(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable(DOWN)

    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])
    monkeypatch.setattr(console_app, "health_view", health_down)
    held = _state("shoes", 2)
    spec = held.spec.model_copy(update={"end": held.spec.start + timedelta(days=PERIODS)})
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        _ChartStore([replace(held, spec=spec)]),  # type: ignore[arg-type]
        _LiveFeed({}),  # type: ignore[arg-type]
        send,
        trails=_Trails(),  # type: ignore[arg-type]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_console_app(console), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(200):  # until it listens (uvicorn sets started)
            if server.started:
                started.set()
                break
            threading.Event().wait(0.05)
        assert started.is_set(), "the console did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_503_is_drawn_and_the_heatmap_names_the_cell_pointed_at(
    served: str,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.set_window_size(700, 1000)
    _sign_in(browser, served, ADMIN[0], ADMIN[1], "/experiments/shoes")
    # the Health section: its sentence, not "Reading the health checks ..." for ever
    _wait(browser, "the health section's sentence",
          lambda b: DOWN in _text(b, "#health-error"))  # fmt: skip
    # an act: the reply says why nothing was done
    browser.find_element(By.ID, "comment-text").send_keys("the controller is down?")
    browser.find_element(By.ID, "comment-send").click()
    _wait(browser, "the act's reply", lambda b: DOWN in _text(b, "#reply .error"))
    # the heatmap, shrunk to the window: the last column's cell is period 29's
    canvas = _wait(
        browser,
        "the heatmap",
        lambda b: (b.find_elements(By.CSS_SELECTOR, "#heatmap canvas") or [None])[0],
    )
    shown, own = canvas.size["width"], int(canvas.get_attribute("width"))
    assert shown < own, (shown, own)  # the window is narrower than the heatmap
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    at = shown // 2 - max(1, shown // (2 * PERIODS))  # the last column, from the centre
    ActionChains(browser).move_to_element_with_offset(canvas, at, 0).perform()
    _wait(browser, "the pointed cell's figures",
          lambda b: "period " in _text(b, "#heatmap-cell"))  # fmt: skip
    assert f"period {PERIODS - 1}:" in _text(browser, "#heatmap-cell"), _text(
        browser, "#heatmap-cell"
    )
