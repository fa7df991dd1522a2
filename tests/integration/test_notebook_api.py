"""The notebook API against the real broker and Redis: docs/notebook.md's worked example on a
live experiment (inside a running event loop, as Jupyter runs it, and as a plain ``python``
process configured by the environment), the live panel's columns, the estimates topic read
with verdicts set apart, and the one-sentence refusals."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

import pricelab
from controller.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from streams.errors import ServiceUnavailable
from streams.live.driver import LiveRun
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import cli_env, make_settings
from tests.integration.live import drive, live_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def example_blocks() -> list[str]:
    """docs/notebook.md's worked example: its python blocks, in order."""
    text = (ROOT / "docs" / "notebook.md").read_text()
    section = text.split("## A worked example", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def live(stack: Any) -> dict[str, Any]:
    """A 4-day random-days experiment named as the example names it, on 12 products in two
    segments, played through real controller and analysis workers; they are stopped after
    its last look, the broker and Redis keep what they wrote."""
    settings = make_settings(stack)
    run = live_run("random-days", 12, 4, 5, "nb")
    products = list(run.spec.all_products())
    segments = {"north": tuple(products[:6]), "south": tuple(products[6:])}
    spec = run.spec.model_copy(update={"id": "walkthrough", "segments": segments})
    run = LiveRun(spec, run.market, run.sales_seed)
    asyncio.run(drive(settings, [run]))
    return {"settings": settings, "run": run, "segments": segments}


def _published_last(run: LiveRun, estimator: str, metric: str) -> dict[str, Any]:
    docs = [
        e
        for e in run.estimates
        if e["estimator"] == estimator and e.get("metric") == metric and e.get("segment") is None
    ]
    return docs[-1]


async def test_the_worked_example_runs_inside_a_notebooks_event_loop(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a notebook next to the stack: settings from the environment only
    for key, value in live["settings"].to_env().items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, Any] = {}
    for block in example_blocks():
        exec(compile(block, "docs/notebook.md", "exec"), namespace)  # an async test: a loop runs
    run: LiveRun = live["run"]
    last = _published_last(run, "fe", "units")
    # the latest table: one row per metric and estimator overall, then each segment's
    latest: pd.DataFrame = namespace["latest"]
    overall = latest[latest["segment"].isna()]
    assert not overall.duplicated(["metric", "estimator"]).any()
    row = overall[(overall.metric == "units") & (overall.estimator == "fe")].iloc[0]
    assert row["effect"] == last["effect"] and row["n_periods"] == 4
    assert set(latest["segment"].dropna()) == set(live["segments"])
    # one row per look of units by fe, each as the driver saw it published
    units_fe: pd.DataFrame = namespace["units_fe"]
    seen = [e for e in run.estimates if e["estimator"] == "fe" and e.get("metric") == "units"]
    by_look = {e["n_periods"]: e["effect"] for e in seen if e.get("segment") is None}
    assert units_fe["n_periods"].tolist() == [2, 3, 4]
    assert dict(zip(units_fe["n_periods"], units_fe["effect"], strict=True)) == by_look
    assert str(units_fe["as_of"].dt.tz) == "UTC" and units_fe["as_of"].is_monotonic_increasing
    # every estimate the driver read is a row (the topic may hold a later cycle's too), and
    # no verdict is among them
    looks: pd.DataFrame = namespace["looks"]
    assert "kind" not in looks.columns and "verdict" not in looks.columns
    key = ["metric", "estimator", "n_periods", "effect"]
    rows = {tuple(r) for r in looks[looks["segment"].isna()][key].itertuples(index=False)}
    read = [e for e in run.estimates if e.get("segment") is None and e["effect"] is not None]
    assert {tuple(e[k] for k in key) for e in read} <= rows
    verdict = namespace["verdict"]
    if run.verdicts:
        assert verdict is not None and verdict["verdict"] == run.verdicts[-1]["verdict"]
        assert verdict["as_of"] == run.verdicts[-1]["as_of"]
    else:
        assert verdict is None
    # the panel: every product x completed period, placed by the offline panel's columns
    panel: pd.DataFrame = namespace["panel"]
    assert len(panel) == 12 * 4
    assert list(panel.columns[:4]) == ["product", "segment", "period", "period_start"]
    zone = run.spec.timezone
    assert str(panel["period_start"].dt.tz) == zone
    first = pd.Timestamp(run.spec.start).tz_convert(zone)
    assert panel.loc[panel["period"] == 0, "period_start"].eq(first).all()
    by_product = panel.drop_duplicates("product").set_index("product")["segment"]
    assert {p: s for s, ps in live["segments"].items() for p in ps} == by_product.to_dict()
    # re-analysed here, the panel gives the worker's last estimate of units by fe
    result: pricelab.EstimateResult = namespace["result"]
    assert result.effect == pytest.approx(last["effect"], rel=1e-9, abs=1e-12)
    assert result.n_periods == 4 and result.n_units == 12


def test_the_worked_example_runs_as_a_plain_python_process(
    live: dict[str, Any], tmp_path: Path
) -> None:
    script = tmp_path / "notebook.py"
    script.write_text("\n".join(example_blocks()))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,  # the installed package, not the repository's files
        env=cli_env(live["settings"]),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "point_estimate" in proc.stdout and "relative:" in proc.stdout
    last = _published_last(live["run"], "fe", "units")
    effect = re.search(r"^fe\s+(\S+)", proc.stdout, re.M)
    assert effect and float(effect.group(1)) == pytest.approx(last["effect"], rel=1e-5)


def test_export_writes_the_panel_the_api_returns(live: dict[str, Any], tmp_path: Path) -> None:
    from tests.integration.conftest import pricelab as run_cli

    out = tmp_path / "live.csv"
    res = run_cli(live["settings"], "panel", "export", "walkthrough", "--out", str(out))
    assert res.returncode == 0, res.stderr
    exported = pd.read_csv(out)
    assert list(exported.columns[:4]) == ["product", "segment", "period", "period_start"]
    # --by segment on the live panel, as on a simulated one
    res = run_cli(live["settings"], "analyze", str(out), "--unit", "product", "--time", "period",
                  "--outcome", "units", "--treated", "treated", "--method", "dm",
                  "--by", "segment")  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line.strip()}
    assert rows["north"][-1] == "6" and rows["south"][-1] == "6"


async def test_unknown_experiments_are_one_sentence(live: dict[str, Any]) -> None:
    """An id no experiment has raises ``pricelab.UnknownExperiment`` (issue #54: a typo's
    verdict was None, the same as "no verdict yet"), naming the nearest id."""
    settings: Settings = live["settings"]
    said = r"^there is no experiment 'walktrough' \(did you mean 'walkthrough'\? pricelab "
    with pytest.raises(pricelab.UnknownExperiment, match=said):
        pricelab.verdict("walktrough", settings=settings)
    with pytest.raises(pricelab.UnknownExperiment, match=said):
        pricelab.estimates("walktrough", settings=settings)
    with pytest.raises(pricelab.UnknownExperiment, match=said):
        pricelab.panel("walktrough", settings=settings)
    with pytest.raises(pricelab.PricelabError, match=r"^there is no experiment 'nope' \(pricelab"):
        pricelab.verdict("nope", settings=settings)
    # the Redis the id is checked in can be given per call, as for panel()
    with pytest.raises(pricelab.UnknownExperiment):
        pricelab.verdict(
            "nope",
            bootstrap_servers=settings.kafka.bootstrap_servers,
            redis_url=settings.redis.url.get_secret_value(),
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_broker_or_redis_that_does_not_answer_is_one_sentence() -> None:
    closed = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        pricelab.estimates("x", bootstrap_servers=closed)
    said = str(info.value)
    assert said.startswith(f"the Kafka broker at {closed} does not answer") and "\n" not in said
    with pytest.raises(ServiceUnavailable, match=r"^Redis at 127\.0\.0\.1:\d+ does not answer"):
        pricelab.panel("x", redis_url=f"redis://{closed}/0")


def _unchecked_settings(stack: Any) -> Settings:
    """Settings on topics of their own whose contracts the broker is not told of: messages
    of any shape may be planted (an older or newer producer's)."""
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(**{k: f"u{tag}.{v}" for k, v in TopicSettings().model_dump().items()})
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=2),
        redis=RedisSettings(url=SecretStr(stack.redis_url)),
        topics=topics,
        key_prefix=f"u{tag}",
    )


def _estimate(exp: str, as_of: str, metric: str, estimator: str, effect: float) -> dict[str, Any]:
    return {"v": 2, "experiment": exp, "as_of": as_of, "metric": metric, "estimator": estimator,
            "effect": effect, "se": 1.0, "segment": None, "n_periods": 2}  # fmt: skip


def _verdict(exp: str, as_of: str, verdict: str) -> dict[str, Any]:
    return {"v": 1, "kind": "verdict", "experiment": exp, "as_of": as_of, "verdict": verdict,
            "metric": "profit", "estimator": "fe", "rule": "cs", "reason": "planted",
            "guardrails": [{"metric": "units", "breached": False}], "more_days": 3}  # fmt: skip


async def test_verdicts_are_set_apart_from_the_estimates(stack: Any) -> None:
    settings = _unchecked_settings(stack)
    await ensure_topics(settings)
    planted = [
        _estimate("a", "2026-12-08T23:00:00+00:00", "units", "fe", 1.0),
        _verdict("a", "2026-12-08T23:00:00+00:00", "keep_running"),
        _estimate("a", "2026-12-08T23:00:00+00:00", "revenue", "dm", 5.0),
        _estimate("b", "2026-12-08T23:00:00+00:00", "units", "fe", 9.0),
        _estimate("a", "2026-12-09T23:00:00+00:00", "units", "fe", 2.0),
        _verdict("a", "2026-12-09T23:00:00+00:00", "ship"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    try:
        for doc in planted:  # one key, one partition: the order published
            await producer.send_and_wait(
                settings.topics.estimates, json.dumps(doc).encode(), key=doc["experiment"].encode()
            )
    finally:
        await producer.stop()
    # called inside this test's running loop: the worker-thread path
    every = pricelab.estimates("a", settings=settings)
    assert every["effect"].tolist() == [1.0, 5.0, 2.0] and "kind" not in every.columns
    assert list(every.columns[:5]) == ["experiment", "as_of", "metric", "estimator", "segment"]
    assert every["as_of"].iloc[-1] == pd.Timestamp("2026-12-09T23:00:00", tz="UTC")
    latest = pricelab.estimates("a", latest=True, settings=settings)
    assert latest[["metric", "estimator", "effect"]].values.tolist() == [
        ["units", "fe", 2.0],
        ["revenue", "dm", 5.0],
    ]
    verdict = pricelab.verdict("a", settings=settings)
    assert verdict is not None and verdict.name == "a"
    assert verdict["verdict"] == "ship" and verdict["as_of"] == "2026-12-09T23:00:00+00:00"
    assert verdict["guardrails"] == [{"metric": "units", "breached": False}]
    assert "kind" not in verdict.index
    assert pricelab.verdict("b", settings=settings) is None
