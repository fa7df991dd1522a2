"""The console end to end in a real browser: ``pricelab console`` in its own process over the
embedded stack, a controller and an analysis worker driven period by period by the live
driver, and Debian's chromium driven through its chromium-driver (Selenium; nothing is
downloaded).

- the experiment appears in the list;
- each look the analysis worker publishes appears on the open experiment page without a
  reload (the page's marker survives; the look shown is the driver's), and the verdict band
  shows each look's verdict: it changes without a reload when the verdict does (the page is
  opened before the first look, so at least from "No verdict yet" to the first verdict);
- a pause and a freeze made in the browser reach the commands topic with the signed-in user
  as their actor (``pricelab experiment history``); the freeze, cancelled from the page,
  shows its reply;
- from the list's Freezes section an operator freezes every experiment (listed in force; the
  running experiment shows as frozen on the list and on its page without a reload, and a
  pricing system reading the assignments topic with librdkafka sees every product frozen on
  the control's policy), then cancels that freeze (running again everywhere); both acts are
  in the trail with the operator as actor;
- a decision recorded in the browser (by the admin: an analyst's permission) shows on the page
  as the decision that stands and reaches the trail with its actor;
- the experiment page's Health section shows its six checks, each flag written as a word;
  the list shows who created the experiment and its health flags, and a pause made on the
  page reaches the open list's status without a reload (the experiment-events topic's
  ``status`` event);
- a viewer has no pause button, no decision form and no freeze control, and a forged POST
  from their session gets 403 (a freeze of every experiment: with its sentence);
- on the "New experiment" page a bad spec shows the sentence the CLI prints for it, and a
  good one launched by an operator appears in the open list without a reload (its
  ``created`` status), with them as its creator;
- in the lab the console prints a one-time admin password that signs in;
- axe-core finds no serious or critical accessibility violation on the sign-in, the list (also
  with a freeze of every experiment in its Freezes section) and the experiment page, and the
  "New experiment" page with a spec's plan and schedule.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.periods import n_periods
from controller.settings import ConsoleSettings
from controller.store import Store, make_redis
from streams.console.auth import hash_line
from streams.console.launch import ConsoleProcess
from streams.live.driver import LiveDriver, lockstep_settings
from streams.live.embedded import free_port
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.chromium import require_chromium
from tests.integration.conftest import make_settings, pricelab
from tests.integration.live import live_run

pytestmark = pytest.mark.integration

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
USERS = {"olga": ("operator", "olga-pw-1"), "vic": ("viewer", "vic-pw-2")}
#: where the pages' screenshots go besides the test's own directory (docs/ when refreshing
#: the docs' pictures: PRICELAB_CONSOLE_SCREENSHOTS=docs)
SHOTS = os.environ.get("PRICELAB_CONSOLE_SCREENSHOTS")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMEDRIVER).exists(), (
        "chromium-driver is not installed: apt-get install -y chromium-driver (./run test does "
        "it as root)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = require_chromium()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(browser: Any, what: str, cond: Any, timeout: float = 15.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # a live redraw may replace an element between finding and reading it: read again
    try:
        return WebDriverWait(
            browser,
            timeout,
            poll_frequency=0.1,
            ignored_exceptions=[StaleElementReferenceException],
        ).until(cond, message=what)
    except TimeoutException as e:  # where the browser was, for the failure's reader
        try:
            url = browser.current_url
            body = browser.execute_script("return document.body ? document.body.innerText : ''")
        except Exception as gone:  # the browser itself failed: say so, keep the wait's name
            raise TimeoutException(f"{what} (the browser does not answer: {gone})") from e
        raise TimeoutException(
            f"{what} (after {timeout:g} s the browser is at {url}, showing: {str(body)[:300]!r})"
        ) from e


def _text(browser: Any, css: str) -> str:
    """The text of the first element ``css`` finds ("" if none). The page's live parts are
    redrawn by htmx while the test reads them: an element found, then swapped out before
    its text is read, is found again (the read, not a wait, is repeated)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        found = browser.find_elements(By.CSS_SELECTOR, css)
        try:
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} was redrawn on every one of 10 reads")


def _attr(browser: Any, css: str, name: str) -> str | None:
    """An attribute of the first element ``css`` finds, read again when a live redraw
    swapped the element out between finding and reading it (as :func:`_text`)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            value = browser.find_element(By.CSS_SELECTOR, css).get_attribute(name)
            return None if value is None else str(value)
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} was redrawn on every one of 10 reads")


def _sign_in(browser: Any, base: str, user: str, password: str, then: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base}{then}")  # no session: to the sign-in, and back after it
    _wait(browser, "the sign-in page", lambda b: b.current_url.startswith(f"{base}/login"))
    _axe(browser, "the sign-in")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "sign-in").click()
    # the page the sign-in returns to waits on its trail follower of the events topic, as the
    # decision's reply below does: the same 60 s (15 s ran out once in a loaded CI run)
    _wait(browser, f"{then} after signing in", lambda b: b.current_url == f"{base}{then}", 60)
    assert _text(browser, "#who") == user


def _decide(browser: Any, base: str, exp_id: str, admin_password: str) -> None:
    """The admin records a decision on the experiment page (keep the control, with a reason,
    confirmed): the reply is shown, and the page's overview and history redraw with it."""
    from selenium.webdriver.common.by import By

    _sign_in(browser, base, "admin", admin_password, f"/experiments/{exp_id}")
    _axe(browser, "the experiment page with the decision form")
    assert _text(browser, "#decision") == "none recorded"
    browser.find_element(By.ID, "decide-keep").click()
    browser.find_element(By.ID, "decision-reason").send_keys("the promotion does not pay")
    browser.find_element(By.ID, "decide-record").click()
    _wait(browser, "the confirmation", lambda b: b.switch_to.alert).accept()
    _wait(browser, "the decision's reply", lambda b: "decision of" in _text(b, "#reply"), 60)
    assert _text(browser, "#reply").startswith(
        f"decision of {exp_id} accepted, as admin: keep the control (arm 'control')"
    )
    _wait(browser, "the decision that stands",
          lambda b: _text(b, "#decision").startswith("keep the control (arm 'control'), by admin"))  # fmt: skip
    _wait(browser, "the decision in the history",
          lambda b: "decision accepted" in _text(b, "#history"))  # fmt: skip


AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def _axe(browser: Any, page: str) -> None:
    """axe-core on the page as it stands: no serious or critical violation."""
    browser.execute_script(AXE.read_text())
    found = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(r => done(
          r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target).join(' '))));
        """
    )
    assert found == [], (page, found)


def _shot(browser: Any, tmp: Path, name: str) -> None:
    browser.execute_script("window.scrollTo(0, 0)")
    # the page's height, and the window's own frame around it (headless chromium has one)
    height = browser.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        " + window.outerHeight - window.innerHeight"
    )
    browser.set_window_size(1400, max(700, min(int(height) + 40, 2400)))
    path = tmp / name
    browser.save_screenshot(str(path))
    if SHOTS:
        shutil.copy(path, Path(SHOTS) / name)
    browser.set_window_size(1400, 1000)


def _new_experiment(
    browser: Any, base: str, tmp: Path, bad: Path, cli_says: str, good: str, listed: str
) -> str:
    """The "New experiment" page as olga (an operator): ``bad`` uploaded shows the sentence
    the CLI prints for that file (``cli_says``); ``good`` pasted shows its plan and schedule,
    and is saved as a draft and opened from the drafts tab (:func:`_launched_from_its_draft`);
    its launch makes it appear in the list open in the tab ``listed``, without a reload
    (its ``created`` status). Its id."""
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/experiments/new")
    browser.find_element(By.ID, "spec-file").send_keys(str(bad))
    browser.find_element(By.ID, "check").click()
    _wait(
        browser, f"the CLI's sentence {cli_says!r}", lambda b: _text(b, "#spec-error") == cli_says
    )
    # the file put aside, the good spec pasted
    browser.execute_script(
        "document.getElementById('spec-file').value = '';"
        "document.getElementById('spec').value = arguments[0];",
        good,
    )
    browser.find_element(By.ID, "check").click()
    rows = "#preview #schedule tr[data-period]"
    _wait(
        browser, "the schedule preview", lambda b: len(b.find_elements(By.CSS_SELECTOR, rows)) == 7
    )
    assert "random-days" in _text(browser, "#plan")
    _shot(browser, tmp, "console-new-experiment.png")
    _axe(browser, "the new experiment page")
    exp_id = _text(browser, "#preview h2").removeprefix("The plan of ")
    _launched_from_its_draft(browser, base, exp_id)
    browser.find_element(By.ID, "launch").click()
    _wait(browser, "the confirmation", lambda b: b.switch_to.alert).accept()
    _wait(browser, "the launch's reply", lambda b: "create of" in _text(b, "#reply"), 60)
    assert _text(browser, "#reply").startswith(f"create of {exp_id} accepted, as olga"), _text(
        browser, "#reply"
    )
    browser.switch_to.window(listed)
    _wait(browser, "the launched experiment in the list without a reload",
          lambda b: _text(b, f'tr[data-id="{exp_id}"] .state') == "created")  # fmt: skip
    assert browser.execute_script("return window.stillThisPage") == "yes"
    return str(exp_id)


def _launched_from_its_draft(browser: Any, base: str, exp_id: str) -> None:
    """The checked spec saved as a draft ("Save as draft", as olga), found in the list's
    drafts tab and opened from it on the "New experiment" page with its spec, which the
    caller then launches."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "save-draft").click()
    _wait(browser, "the draft's reply", lambda b: "draft of" in _text(b, "#reply"), 60)
    assert _text(browser, "#reply").startswith(f"draft of {exp_id} accepted, as olga"), _text(
        browser, "#reply"
    )
    browser.get(f"{base}/experiments?status=drafts")
    row = f'#drafts tr[data-id="{exp_id}"] a'
    assert _text(browser, "nav.tabs .current").startswith("drafts (")
    _axe(browser, "the drafts tab")
    browser.find_element(By.CSS_SELECTOR, row).click()
    _wait(browser, "the draft opened", lambda b: _text(b, "#draft-of").startswith("Draft"))
    assert f'"id": "{exp_id}"' in (_attr(browser, "#spec", "value") or "")


#: the Health section's checks, in order (streams.client.health)
HEALTH_CHECKS = ["sample_ratio", "sales", "dead_letters", "flips", "freshness", "balance",
                 "exposure"]  # fmt: skip


def _health_and_list(browser: Any, marker: dict[str, Any], exp_id: str) -> None:
    """Before the pause: the page's Health section drawn (each flag a word, each check a
    sentence; the lockstep controller flips on time); on the open list, who created the
    experiment, its health flags, and a listener that notes the live ``status`` event."""
    from selenium.webdriver.common.by import By

    from streams.client.commands import default_actor

    rows = "#health-checks tr[data-check]"
    _wait(browser, "the health checks",
          lambda b: len(b.find_elements(By.CSS_SELECTOR, rows)) == len(HEALTH_CHECKS), 60)  # fmt: skip
    # the rows read in one go: the section is redrawn by htmx on each look and status
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(r => ["
        " r.dataset.check, r.dataset.flag, r.querySelector('.flag-word').innerText,"
        " r.querySelector('.sentence').innerText])",
        rows,
    )
    checks = {}
    for check, flag, word, sentence in shown:
        assert flag in ("ok", "warn", "problem"), flag
        assert word == flag.upper()
        assert sentence.strip()
        checks[check] = flag
    assert list(checks) == HEALTH_CHECKS
    assert checks["flips"] == "ok", _text(browser, '#health tr[data-check="flips"]')
    assert _text(browser, "#health-flag").startswith("Overall: ")
    # no pause yet: nobody saw two arms within a period
    assert checks["exposure"] == "ok", _text(browser, '#health tr[data-check="exposure"]')
    # the traffic over time: a line per arm over the completed periods, and its table
    _wait(browser, "the traffic chart",
          lambda b: b.find_elements(By.CSS_SELECTOR, "#traffic-chart[data-drawn] figure canvas"))  # fmt: skip
    assert browser.find_elements(By.CSS_SELECTOR, "#traffic tr[data-period]")
    browser.switch_to.window(marker["list"])
    row = f'tr[data-id="{exp_id}"]'
    assert _text(browser, f"{row} .created-by") == default_actor()  # the driver's create
    assert _text(browser, f"{row} .health-cell").split()[0] in ("OK", "WARN", "PROBLEM")
    browser.execute_script(
        "document.body.addEventListener('status', function () { window.sawStatus = 'yes'; });"
    )
    browser.switch_to.window(marker["page"])


def _list_follows_the_pause(browser: Any, marker: dict[str, Any], exp_id: str) -> None:
    """After the pause: the open list shows it paused, without a reload, on the live
    ``status`` event."""
    browser.switch_to.window(marker["list"])
    _wait(browser, "the list's status paused without a reload",
          lambda b: _text(b, f'tr[data-id="{exp_id}"] .state') == "paused")  # fmt: skip
    assert browser.execute_script("return window.stillThisPage") == "yes"
    assert browser.execute_script("return window.sawStatus") == "yes"
    browser.switch_to.window(marker["page"])


def _charts_drawn(browser: Any, looks: int) -> None:
    """The Over time chart is drawn (a uPlot canvas per metric) with at least ``looks`` looks,
    after the live redraw that a look makes: each figure's series named in its legend (an
    effect and its four interval lines per arm), the verdict's changes in words."""
    from selenium.webdriver.common.by import By

    def drawn(b: Any) -> bool:  # read in one go: another look may redraw it meanwhile
        found = b.find_elements(By.CSS_SELECTOR, "#over-time-chart[data-drawn]")
        if not found or int(found[0].get_attribute("data-looks") or 0) < looks:
            return False
        figures = found[0].find_elements(By.CSS_SELECTOR, "figure[data-metric]")
        legends = " ".join(f.find_element(By.CSS_SELECTOR, ".u-legend").text for f in figures)
        return (
            bool(figures)
            and all(f.find_elements(By.CSS_SELECTOR, "canvas") for f in figures)
            and all(w in legends for w in ("effect", "anytime-valid low", "95% high"))
            and bool(found[0].find_element(By.ID, "verdict-changes").text)
        )

    _wait(browser, f"the over-time chart with {looks} looks", drawn)


def _assignments(browser: Any, products: list[str], periods: int, tmp: Path) -> None:
    """The heatmap is drawn (a cell a product-period for a small experiment), and the product
    search shows a product's message in force and its history, and an unknown product's
    sentence."""
    from selenium.webdriver.common.by import By

    def cells(b: Any) -> tuple[str, str] | None:  # read in one go: a look may redraw it
        found = b.find_elements(By.CSS_SELECTOR, "#heatmap figure")
        if not found or not found[0].find_elements(By.CSS_SELECTOR, "canvas"):
            return None
        return (found[0].get_attribute("data-rows"), found[0].get_attribute("data-cols"))

    assert _wait(browser, "the heatmap", cells) == (str(len(products)), str(periods))
    search = browser.find_element(By.ID, "product")
    search.send_keys(products[1])
    browser.find_element(By.ID, "find-product").click()
    _wait(browser, "the product's history",
          lambda b: len(b.find_elements(By.CSS_SELECTOR, "#product-history tr[data-period]"))
          == periods)  # fmt: skip
    assert "In force (experiment" in _text(browser, "#product-in-force")
    section = browser.find_element(By.ID, "assignments")
    section.screenshot(str(tmp / "console-assignments.png"))
    if SHOTS:
        shutil.copy(tmp / "console-assignments.png", Path(SHOTS) / "console-assignments.png")
    search.clear()
    search.send_keys("no-such-product")
    browser.find_element(By.ID, "find-product").click()
    _wait(browser, "the unknown product's sentence",
          lambda b: "is not a product of experiment" in _text(b, "#product-result .error"))  # fmt: skip


def _heatmap_frozen(browser: Any) -> None:
    """After a freeze made from the page, the heatmap is drawn again (no reload) with the
    frozen periods' cells in blackout of kind freeze."""
    from selenium.webdriver.common.by import By

    def frozen(b: Any) -> bool:
        found = b.find_elements(By.CSS_SELECTOR, "#heatmap figure[data-blackouts]")
        held = found[0].get_attribute("data-blackouts") if found else ""
        kinds = dict(kv.split("=") for kv in held.split(";") if kv)  # "washout=3;freeze=2;..."
        return int(kinds.get("freeze", 0)) > 0

    _wait(browser, "the freeze in the heatmap", frozen)


def _heatmap_paused(browser: Any) -> None:
    """After a pause made from the page, the heatmap is drawn again (no reload) with the
    pause's layer over its periods, and the pause listed in words."""
    from selenium.webdriver.common.by import By

    def paused(b: Any) -> bool:
        found = b.find_elements(By.CSS_SELECTOR, "#heatmap figure[data-blackouts]")
        held = found[0].get_attribute("data-blackouts") if found else ""
        kinds = dict(kv.split("=") for kv in held.split(";") if kv)
        listed = b.find_elements(By.CSS_SELECTOR, "#heatmap-pauses li")
        return int(kinds.get("pause", 0)) > 0 and any(
            "stock count in the warehouse" in li.text for li in listed
        )

    _wait(browser, "the pause in the heatmap", paused)


class _Seat:
    """A pricing system's seat: a librdkafka consumer (confluent-kafka, as the pricing
    system's own software) of the assignments topic from its beginning, in a thread, keeping
    each product's message in force (the highest ``seq``) of one experiment. It reads its
    partitions by assignment, not in a consumer group: a group's join on Tansu takes seconds
    (docs/examples/pricing_system.py)."""

    def __init__(self, settings: Any, experiment: str) -> None:
        import threading

        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.experiment = experiment
        self.in_force: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        topic = settings.topics.assignments
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": "console-seat",
                "enable.auto.commit": False,
            }
        )
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is None:
                continue
            doc = json.loads(value)
            if doc.get("experiment") != self.experiment:
                continue
            with self._changed:
                held = self.in_force.get(doc["product"])
                if held is None or held["seq"] < doc["seq"]:
                    self.in_force[doc["product"]] = doc
                    self._changed.notify_all()

    def wait(self, what: str, products: list[str], cond: Any, timeout: float = 30.0) -> None:
        """Wait until every one of ``products``' messages in force meets ``cond``."""

        def met() -> bool:
            held = [self.in_force.get(p) for p in products]
            return all(m is not None and cond(m) for m in held)

        with self._changed:
            if not self._changed.wait_for(met, timeout):
                raise AssertionError(f"the pricing system's seat never saw {what}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _freeze_every_experiment(
    browser: Any, marker: dict[str, Any], exp_id: str, seat: _Seat, spec: Any
) -> None:
    """On the open list (olga, an operator): the Freezes section freezes every experiment,
    with a reason and a confirmation; the freeze is listed in force, the running experiment
    shows as frozen on the list and on its page without a reload (the ``status`` event), and
    the pricing system's seat reads every product on the control's policy, status frozen.
    The freeze cancelled from the section: the experiment is running again everywhere. The
    list's listener of ``status`` events is reset, for the pause's own check after."""
    from selenium.webdriver.common.by import By

    products, control = spec.all_products(), spec.control_arm.policy
    row = f'tr[data-id="{exp_id}"] .state'
    browser.switch_to.window(marker["list"])
    _wait(browser, "the experiment running in the list", lambda b: _text(b, row) == "running")
    _wait(browser, "the Freezes section", lambda b: _text(b, "#no-freeze") != "")
    # what the live stream said, every status and look (the element's text is overwritten)
    browser.execute_script(
        "window.liveSaid = [];"
        "new MutationObserver(() => window.liveSaid.push(document.getElementById('live')"
        ".textContent)).observe(document.getElementById('live'), {childList: true,"
        " characterData: true, subtree: true});"
    )
    browser.find_element(By.ID, "freeze-all-end").send_keys("+1d")
    browser.find_element(By.ID, "freeze-all-reason").send_keys("the whole catalogue reprices")
    browser.find_element(By.ID, "freeze-all").click()
    alert = _wait(browser, "the confirmation", lambda b: b.switch_to.alert)
    assert "every experiment" in alert.text
    alert.accept()
    _wait(browser, "the freeze's reply", lambda b: "freeze of" in _text(b, "#freezes-reply"), 60)
    assert _text(browser, "#freezes-reply").startswith(
        "freeze of every experiment accepted, as olga: freeze "
    ), _text(browser, "#freezes-reply")
    listed = "#freezes-active tr[data-freeze]"
    _wait(browser, "the freeze listed in force",
          lambda b: _text(b, f"{listed} .now") == "in force")  # fmt: skip
    assert _text(browser, f"{listed} .scope") == "every experiment"
    assert "the whole catalogue reprices" in _text(browser, listed)
    _wait(browser, "the list's experiment frozen", lambda b: _text(b, row) == "running (frozen)")
    _wait(browser, "the status event of the freeze", lambda b: b.execute_script(
        "return window.liveSaid.includes(arguments[0])", f"{exp_id} is running (frozen)"))  # fmt: skip
    assert browser.execute_script("return window.stillThisPage") == "yes"
    _axe(browser, "the list's Freezes section with a freeze in force")
    seat.wait("every product frozen, on the control's policy", products,
              lambda m: m["status"] == "frozen" and m["policy"] == control)  # fmt: skip
    browser.switch_to.window(marker["page"])
    _wait(browser, "the page's status frozen", lambda b: _text(b, "#state") == "running (frozen)")
    browser.switch_to.window(marker["list"])
    # cancelled from the section, with a reason and a confirmation
    freeze_id = _attr(browser, listed, "data-freeze")
    form = browser.find_element(By.ID, f"unfreeze-{freeze_id}")
    form.find_element(By.NAME, "reason").send_keys("done")
    # the section redrawn (as each status change redraws it) keeps the reason being typed
    browser.execute_script(
        "document.getElementById('freezes-list').dataset.old = 'yes';"
        "htmx.trigger(document.body, 'freezes');"
    )
    _wait(browser, "the section redrawn", lambda b: b.execute_script(
        "return document.getElementById('freezes-list').dataset.old") is None)  # fmt: skip
    assert form.find_element(By.NAME, "reason").get_attribute("value") == "done"
    form.find_element(By.TAG_NAME, "button").click()
    alert = _wait(browser, "the unfreeze's confirmation", lambda b: b.switch_to.alert)
    assert alert.text == f"Cancel the freeze {freeze_id}?"
    alert.accept()
    _wait(browser, "the unfreeze's reply",
          lambda b: "unfreeze of" in _text(b, "#freezes-reply"), 60)  # fmt: skip
    assert _text(browser, "#freezes-reply").startswith(
        f"unfreeze of {freeze_id} accepted, as olga"
    ), _text(browser, "#freezes-reply")
    _wait(browser, "no freeze listed", lambda b: _text(b, "#no-freeze") != "")
    _wait(browser, "the list's experiment running", lambda b: _text(b, row) == "running")
    _wait(browser, "the status event of the unfreeze", lambda b: b.execute_script(
        "return window.liveSaid.includes(arguments[0])", f"{exp_id} is running"))  # fmt: skip
    seat.wait("every product running again", products, lambda m: m["status"] == "running")
    browser.execute_script("window.sawStatus = undefined;")  # the pause's check is its own
    browser.switch_to.window(marker["page"])
    _wait(browser, "the page's status running", lambda b: _text(b, "#state") == "running")


def _ladder_doc() -> dict[str, Any]:
    """A real ladder look as the console's series API gives it: the analysis worker replayed
    on a simulated price ladder (the report's ladder test), its latest demand curve."""
    from analysis.report import replay_estimates
    from streams.client.estimates import latest_verdict
    from streams.client.series import ladder_curves
    from streams.console.views import finite
    from tests.unit.analysis.report.test_report_ladder import _ladder, _spec

    est = replay_estimates(
        _ladder(n=60, periods=8), experiment="ladder", design="random-days",
        estimators=["fe"], params=_spec(60, 8).model_dump(mode="json"),
    )  # fmt: skip
    docs = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in est.astype(object).where(est.notna(), None).to_dict("records")
    ]
    doc = ladder_curves(docs, latest_verdict(docs))
    assert doc is not None
    return dict(json.loads(json.dumps(finite(doc))))


def _ladder_drawn(browser: Any, doc: dict[str, Any], tmp: Path) -> None:
    """The ladder's curves render: the page's own chart script draws a real ladder look (the
    browser flow runs random days, not a ladder), in place of the page's content."""
    from selenium.webdriver.common.by import By

    # the box has an id of its own: the page's live script redraws "#ladder-chart" from the
    # page's own series (not a ladder) when a fetch it started before lands, which wiped the
    # drawn curves in one run of five
    browser.execute_script(
        """
        const main = document.querySelector('main');  // its stylesheet and scripts stay
        main.querySelectorAll(':scope > :not(link):not(script)').forEach(e => e.remove());
        main.insertAdjacentHTML('afterbegin',
          '<section aria-label="price ladder"><h2>Price ladder</h2>' +
          '<div id="ladder-drawn" class="charts"></div></section>');
        window.pricelabCharts.ladder(document.getElementById('ladder-drawn'), arguments[0]);
        """,
        doc,
    )
    for curve in ("demand", "profit"):
        fig = browser.find_element(By.CSS_SELECTOR, f'#ladder-drawn figure[data-curve="{curve}"]')
        assert fig.find_elements(By.CSS_SELECTOR, "canvas")
        assert fig.get_attribute("data-points") == str(len(doc["curve"]))
        legend = fig.find_element(By.CSS_SELECTOR, ".u-legend").text
        assert f"fitted {curve} curve" in legend and f"arms' {curve} points" in legend
    assert _text(browser, ".ladder-reading").startswith(str(doc["headline"]))
    _shot(browser, tmp, "console-ladder.png")
    _axe(browser, "the ladder's charts")


async def test_the_console_in_a_browser(stack: Any, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    settings = make_settings(stack)
    await ensure_topics(settings)
    users = tmp_path / "users"
    users.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in USERS.items()))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = settings.model_copy(
        update={"console": ConsoleSettings(port=port, users_file=users, estimates_idle=0.5)}
    )
    console = ConsoleProcess(served, log=tmp_path / "console.log")
    run = live_run("random-days", 8, 6, 7, "con")
    workers = lockstep_settings(settings)
    controller = WorkerProcess(workers, ("controller",))
    analysis = WorkerProcess(workers, ("analysis",))
    redis = make_redis(settings)
    seat: _Seat | None = None
    try:
        await asyncio.to_thread(console.start)
        assert console.url == base
        # the lab (a simulated clock): a one-time admin password, printed once
        assert console.password
        controller.launch()
        analysis.launch()
        controller.wait_healthy()
        analysis.wait_healthy()
        store = Store(redis, settings.key_prefix)
        async with LiveDriver(workers, store, [controller], analysis) as driver:
            await driver.create([run])
            marker: dict[str, Any] = {}

            async def after_look(d: int) -> None:
                look = [v for v in run.verdicts if v.get("_look") == d]
                if not look:  # too few periods for a verdict yet
                    return
                shown = f"Look of {look[-1]['as_of']}, after {look[-1]['n_periods']} period(s)."
                listed = f"after {look[-1]['n_periods']} periods (as of {look[-1]['as_of']})"
                # every look arrives live on the pages opened before the first
                await asyncio.to_thread(later_look, shown, listed)
                # over time: a row for each look so far that had a verdict
                seen = {v["as_of"] for v in run.verdicts if v.get("_look") is not None}

                def over_time(b: Any) -> bool:
                    cells = b.find_elements(By.CSS_SELECTOR, "#over-time tr[data-as-of]")
                    return seen <= {e.get_attribute("data-as-of") for e in cells}

                await asyncio.to_thread(_wait, browser, f"looks {seen} over time", over_time)
                await asyncio.to_thread(_charts_drawn, browser, len(seen))
                # the band shows this look's verdict (the driver's, as published): so it
                # changes, without a reload, when the verdict does
                band = await asyncio.to_thread(_attr, browser, "#verdict", "data-verdict")
                marker.setdefault("bands", []).append((band, look[-1]["verdict"]))
                marker.setdefault("looks", []).append(d)

            def open_pages() -> None:
                """Before the first look: the list, and the experiment page with no verdict
                yet, each in a tab of its own; every look then arrives on them live."""
                o_pw = USERS["olga"][1]
                _sign_in(browser, base, "olga", o_pw, "/experiments")
                row = f'tr[data-id="{run.id}"]'
                _wait(browser, "the experiment in the list",
                      lambda b: _text(b, f"{row} .state") in ("created", "running"))  # fmt: skip
                assert len(browser.find_elements(By.CSS_SELECTOR, row)) == 1
                _shot(browser, tmp_path, "console-experiments.png")
                _axe(browser, "the list")
                browser.execute_script("window.stillThisPage = 'yes';")  # gone on a reload
                marker["list"] = browser.current_window_handle
                # the experiment page in a tab of its own; the list stays open in the first
                browser.switch_to.new_window("tab")
                marker["page"] = browser.current_window_handle
                browser.get(f"{base}/experiments/{run.id}")
                band = _attr(browser, "#verdict", "data-verdict")
                assert band == "none", band  # no look yet: the band says so in words
                assert _text(browser, "#verdict .word") == "No verdict yet"
                browser.execute_script("window.stillThisPage = 'yes';")  # gone on a reload
                marker["bands"] = [(band, "none")]

            def later_look(shown: str, listed: str) -> None:
                _wait(browser, f"the look {shown!r} without a reload",
                      lambda b: _text(b, "#looks") == shown)  # fmt: skip
                assert browser.execute_script("return window.stillThisPage") == "yes"
                assert _text(browser, "#verdict .word").startswith("VERDICT after")
                # the list, open since the first look, shows the new verdict too
                browser.switch_to.window(marker["list"])
                cell = f'tr[data-id="{run.id}"] .verdict-cell'
                _wait(browser, f"the list's verdict {listed!r} without a reload",
                      lambda b: listed in _text(b, cell))  # fmt: skip
                assert browser.execute_script("return window.stillThisPage") == "yes"
                browser.switch_to.window(marker["page"])

            await asyncio.to_thread(open_pages)
            await driver.run([run], after_look=after_look, periods=4)
            assert len(marker["looks"]) >= 2, marker  # every look arrived live
            # the band showed each look's verdict, and changed (from none) without a reload
            assert all(shown == published for shown, published in marker["bands"]), marker
            assert len({shown for shown, _ in marker["bands"]}) >= 2, marker

        # a pricing system's seat on the assignments topic, catching up meanwhile
        seat = await asyncio.to_thread(_Seat, settings, run.id)

        # a pause from the browser: the reply shown, the command on the topic as olga
        def pause() -> None:
            _health_and_list(browser, marker, run.id)
            _assignments(browser, run.spec.all_products(), n_periods(run.spec), tmp_path)
            _shot(browser, tmp_path, "console-experiment.png")
            _axe(browser, "the experiment page")
            # the design section's schedule preview: a row a period
            # (fetched by the page once it has loaded)
            rows = "#design #schedule tr[data-period]"
            _wait(browser, "the design's schedule, a row a period",
                  lambda b: len(b.find_elements(By.CSS_SELECTOR, rows)) == n_periods(run.spec))  # fmt: skip
            # every experiment frozen from the list, and the freeze cancelled: before the
            # pause, while the experiment runs (a pricing system sees it frozen), after the
            # checks that no one saw two arms in a period
            assert seat is not None
            _freeze_every_experiment(browser, marker, run.id, seat, run.spec)
            browser.find_element(By.ID, "reason").send_keys("stock count in the warehouse")
            browser.find_element(By.ID, "pause").click()
            _wait(browser, "the confirmation", lambda b: b.switch_to.alert).accept()
            _wait(browser, "the pause's reply", lambda b: "accepted" in _text(b, "#reply"), 60)
            assert _text(browser, "#reply").startswith(f"pause of {run.id} accepted, as olga")
            # the page redraws its live parts (no reload): the status is paused
            _wait(browser, "the status paused", lambda b: _text(b, "#state") == "paused")
            assert browser.execute_script("return window.stillThisPage") == "yes"
            _list_follows_the_pause(browser, marker, run.id)
            _heatmap_paused(browser)

        await asyncio.to_thread(pause)

        # a freeze from the browser, as the CLI's: from the controller's now, for a day
        def freeze() -> None:
            browser.find_element(By.ID, "freeze-end").send_keys("+1d")
            browser.find_element(By.ID, "freeze-reason").send_keys("competitor sale")
            browser.find_element(By.ID, "freeze").click()
            _wait(browser, "the confirmation", lambda b: b.switch_to.alert).accept()
            _wait(browser, "the freeze's reply", lambda b: "freeze of" in _text(b, "#reply"), 60)
            assert _text(browser, "#reply").startswith(f"freeze of {run.id} accepted, as olga")
            # the page lists the freezes that apply: the list's freeze of every experiment,
            # cancelled, and this one
            now = "#freezes tr[data-freeze] .now"
            _wait(browser, "the freeze in force", lambda b: b.execute_script(
                "return Array.from(document.querySelectorAll(arguments[0]))"
                ".map(e => e.innerText).sort().join()", now) == "cancelled,in force")  # fmt: skip
            _heatmap_frozen(browser)
            # cancelled from the page's list of freezes: its reply shown where the acts' are
            mine = browser.find_element(By.CSS_SELECTOR, "#freezes tr[data-freeze] form")
            mine.find_element(By.NAME, "reason").send_keys("the sale is over")
            mine.find_element(By.TAG_NAME, "button").click()
            _wait(browser, "the unfreeze's confirmation", lambda b: b.switch_to.alert).accept()
            _wait(browser, "the unfreeze's reply",
                  lambda b: "unfreeze of" in _text(b, "#reply"), 60)  # fmt: skip
            assert _text(browser, "#reply").startswith(f"unfreeze of {run.id} accepted, as olga")
            _wait(browser, "both freezes cancelled", lambda b: b.execute_script(
                "return Array.from(document.querySelectorAll(arguments[0]))"
                ".map(e => e.innerText).join()", now) == "cancelled,cancelled")  # fmt: skip

        await asyncio.to_thread(freeze)

        # a new experiment: a bad spec shows the CLI's sentence; a good one launched as olga
        start = run.spec.end + timedelta(days=30)
        good = (
            "id: con-launched\ndesign: random-days\n"
            "products: [launch-a, launch-b, launch-c, launch-d]\n"
            "treatment_policy: new-price\ncontrol_policy: old-price\n"
            f"start: {start.isoformat()}\nend: {(start + timedelta(days=7)).isoformat()}\n"
            "timezone: UTC\nperiod: P1D\nseed: 5\n"
        )
        bad = tmp_path / "broken-spec.yaml"
        bad.write_text(good.replace("launch-d]", "launch-d"))
        said = await asyncio.to_thread(pricelab, settings, "experiment", "create", str(bad))
        assert said.returncode == 2 and said.stderr.startswith("error: "), said.stderr
        cli_says = said.stderr.removeprefix("error: ").strip()
        launched = await asyncio.to_thread(
            _new_experiment, browser, base, tmp_path, bad, cli_says, good, marker["list"]
        )
        history = await asyncio.to_thread(
            pricelab, settings, "experiment", "history", launched, "--json"
        )
        creates = [r["detail"] for r in json.loads(history.stdout)["records"]
                   if r.get("kind") == "command" and r["detail"].get("command") == "create"]  # fmt: skip
        assert [(c["actor"], c["accepted"]) for c in creates] == [("olga", True)], creates
        # a decision, by the admin (an analyst's permission; olga, an operator, has none)
        await asyncio.to_thread(_decide, browser, base, run.id, console.password or "")
        history = await asyncio.to_thread(
            pricelab, settings, "experiment", "history", run.id, "--json"
        )
        assert history.returncode == 0, history.stderr
        pauses = [
            r["detail"]
            for r in json.loads(history.stdout)["records"]
            if r.get("kind") == "command" and r["detail"].get("command") == "pause"
        ]
        assert len(pauses) == 1 and pauses[0]["accepted"], pauses
        assert pauses[0]["actor"] == "olga"
        assert pauses[0]["reason"] == "stock count in the warehouse"
        freezes = [
            r["detail"]
            for r in json.loads(history.stdout)["records"]
            if r.get("kind") == "command" and r["detail"].get("command") == "freeze"
        ]
        # the list's freeze of every experiment is in the trail too (the fleet's records)
        assert [(f["actor"], f["accepted"], f["reason"]) for f in freezes] == [
            ("olga", True, "the whole catalogue reprices"),
            ("olga", True, "competitor sale"),
        ], freezes
        # both unfreezes, as olga (an unfreeze names no experiment: the fleet's records)
        unfreezes = [
            (r["detail"]["actor"], r["detail"]["accepted"], r["detail"]["reason"])
            for r in json.loads(history.stdout)["records"]
            if r.get("kind") == "command" and r["detail"].get("command") == "unfreeze"
        ]
        assert unfreezes == [("olga", True, "done"), ("olga", True, "the sale is over")], unfreezes
        decisions = [
            r["detail"]
            for r in json.loads(history.stdout)["records"]
            if r.get("kind") == "command" and r["detail"].get("command") == "decision"
        ]
        assert [
            (d["actor"], d["accepted"], d["reason"], d["decision"]["arm"]) for d in decisions
        ] == [("admin", True, "the promotion does not pay", "control")], decisions

        # a viewer: no act buttons; a forged POST with their own session and token is 403
        def viewer() -> None:
            _sign_in(browser, base, "vic", USERS["vic"][1], "/experiments")
            # the list's Freezes section, with no act for a viewer: both freezes are over
            _wait(browser, "the viewer's Freezes section",
                  lambda b: _text(b, "#freezes-past").startswith("2 more are over or cancelled"))  # fmt: skip
            assert _text(browser, "#no-freeze") == "No freeze is ahead or in force."
            assert browser.find_elements(By.CSS_SELECTOR, "#catalogue-freezes form") == []
            browser.get(f"{base}/experiments/{run.id}")
            assert browser.find_elements(By.ID, "pause") == []
            assert browser.find_elements(By.ID, "decision-form") == []
            assert "paused" in _text(browser, "#state")
            forged = browser.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
                const post = (headers) => fetch(arguments[0], {
                  method: 'POST', headers: Object.assign({'Content-Type': 'application/json'}, headers),
                  body: JSON.stringify({reason: 'forged'})}).then(r => r.status);
                Promise.all([post({'X-CSRF-Token': token}), post({}),
                             fetch(arguments[1], {method: 'POST', headers: {
                               'Content-Type': 'application/json', 'X-CSRF-Token': token},
                               body: JSON.stringify({arm: 'treatment', reason: 'forged'})})
                             .then(r => r.status),
                             fetch(arguments[2], {method: 'POST', headers: {
                               'Content-Type': 'application/json', 'X-CSRF-Token': token},
                               body: JSON.stringify({end: '+1h', reason: 'forged'})})
                             .then(r => r.text().then(t => [r.status, t]))]).then(done);
                """,
                f"/api/experiments/{run.id}/resume",
                f"/api/experiments/{run.id}/decision",
                "/api/freezes",
            )
            assert forged[:3] == [403, 403, 403]
            # a freeze of every experiment: 403 with one sentence
            said = json.loads(forged[3][1])["error"]
            assert forged[3][0] == 403 and said and "\n" not in said, forged[3]

        await asyncio.to_thread(viewer)
        ladder = await asyncio.to_thread(_ladder_doc)
        await asyncio.to_thread(_ladder_drawn, browser, ladder, tmp_path)
        history = await asyncio.to_thread(
            pricelab, settings, "experiment", "history", run.id, "--json"
        )
        kinds = [r["detail"].get("command") for r in json.loads(history.stdout)["records"]
                 if r.get("kind") == "command"]  # fmt: skip
        # the viewer's POSTs never reached the topic
        assert "resume" not in kinds and kinds.count("decision") == 1
        assert kinds.count("freeze") == 2  # olga's two

        # the one-time admin password signs in (JSON sign-in)
        req = urllib.request.Request(
            f"{base}/api/login",
            data=json.dumps({"user": "admin", "password": console.password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
            assert json.loads(r.read())["role"] == "admin"
    except BaseException:  # the console's own log, for the failure's reader (pytest prints it)
        log = tmp_path / "console.log"
        text = log.read_text() if log.exists() else ""
        csrf = [line for line in text.splitlines() if "CSRF" in line]
        print("the console's CSRF refusals:\n" + "\n".join(csrf))
        print("the console's log ends:\n" + text[-4000:])
        raise
    finally:
        if seat is not None:
            seat.close()
        await redis.aclose()
        controller.stop()
        analysis.stop()
        console.stop()
