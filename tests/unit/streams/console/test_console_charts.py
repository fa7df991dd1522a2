"""The experiment page's charts as the API serves them: each metric's running estimate look by
look with its intervals and the verdict's changes, a price ladder's curves (from a real demand
message, the analysis worker's replayed on a simulated ladder), the assignments heatmap in
bins, and the product search (an unknown product is 404 with one sentence). The store and feed
are small stand-ins; tests/integration/test_console_browser.py draws the charts in a browser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from controller.designs import design_matrices
from controller.settings import ConsoleSettings, Settings
from controller.store.experiments import ExperimentState
from streams.client.commands import read_overview
from streams.console import auth
from streams.console.app import _ENV, Console, build_app
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    VERDICT,
    _Feed,
    _sign_in,
    _state,
    _Store,
    hash_line,
)

LOOKS = ("2026-06-02T00:00:00+00:00", "2026-06-03T00:00:00+00:00", "2026-06-04T00:00:00+00:00")


def _estimate(metric: str, estimator: str, look: int, effect: float, **more: Any) -> dict[str, Any]:
    return {
        "experiment": "shoes",
        "metric": metric,
        "estimator": estimator,
        "as_of": LOOKS[look],
        "n_periods": look + 1,
        "effect": effect,
        "ci_low": effect - 1.0,
        "ci_high": effect + 1.0,
        "cs_low": effect - 2.0,
        "cs_high": effect + 2.0,
        "relative_effect": effect / 100.0,
    } | more


def _verdict(look: int, word: str) -> dict[str, Any]:
    return VERDICT | {"as_of": LOOKS[look], "n_periods": look + 1, "verdict": word}


DOCS = [
    # units: did is the design's first (primary) estimator, dm a second one; revenue leads
    *(_estimate("units", "did", k, 1.0 + k) for k in range(3)),
    *(_estimate("units", "dm", k, 9.0) for k in range(3)),
    _estimate("revenue", "did", 0, 10.0),
    _estimate("revenue", "did", 1, 12.0),
    _estimate("revenue", "did", 1, 13.0),  # the look published again: its last message
    _estimate("revenue", "did", 2, 14.0),
    _estimate("revenue", "did", 2, 50.0, segment="big"),  # a segment: not a running series
    _verdict(0, "keep_running"),
    _verdict(1, "keep_running"),
    _verdict(2, "ship"),
]


class _ChartStore(_Store):
    """The stand-in store, with what the heatmap and the product search read too."""

    def __init__(self, states: list[ExperimentState]) -> None:
        super().__init__(states)
        self.redis = _ClockRedis()  # type: ignore[assignment]

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def triggers(self, exp_id: str) -> dict[str, int]:
        return {}

    #: the pause and stop windows of every experiment (Store.windows): none unless set
    held_windows: list[dict[str, Any]] = []

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        return self.held_windows

    async def experiment_of(self, product: str) -> str | None:
        return next((i for i, s in self.states.items() if product in s.spec.units()), None)


class _ClockRedis:
    async def ping(self) -> bool:
        return True

    async def get(self, key: str) -> None:  # no clock recorded: the wall clock
        return None

    async def aclose(self) -> None:
        return None


def _client(users_file: Path, docs: dict[str, list[dict[str, Any]]]) -> TestClient:
    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _ChartStore([_state("shoes", 2), _state("hats", -1)]),  # type: ignore[arg-type]
        _Feed(docs),  # type: ignore[arg-type]
    )
    return TestClient(build_app(console))


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("charts") / "users"
    path.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))
    return path


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with _client(users_file, {"shoes": DOCS}) as c:
        _sign_in(c, "vic")
        yield c


def test_over_time_is_each_metric_by_its_primary_estimator_look_by_look(
    client: TestClient,
) -> None:
    doc = client.get("/api/experiments/shoes/series").json()
    assert doc["decision_metric"] == "revenue"
    # the decision metric first; one series per metric and arm, the primary estimator's
    assert [(s["metric"], s["arm"], s["estimator"]) for s in doc["series"]] == [
        ("revenue", None, "did"),
        ("units", None, "did"),
    ]
    revenue, units = doc["series"]
    assert [p["as_of"] for p in revenue["looks"]] == list(LOOKS)
    assert [p["effect"] for p in revenue["looks"]] == [10.0, 13.0, 14.0]
    assert [p["n_periods"] for p in units["looks"]] == [1, 2, 3]
    assert units["looks"][2] == {
        "as_of": LOOKS[2],
        "n_periods": 3,
        "effect": 3.0,
        "ci_low": 2.0,
        "ci_high": 4.0,
        "cs_low": 1.0,
        "cs_high": 5.0,
        "relative_effect": 0.03,
    }
    # each look's verdict, oldest first, its word written out and where it changed
    assert [(v["n_periods"], v["word"], v["changed"]) for v in doc["verdicts"]] == [
        (1, "KEEP RUNNING", False),
        (2, "KEEP RUNNING", False),
        (3, "SHIP", True),
    ]
    assert doc["ladder"] is None  # not a price ladder


def test_a_k_arm_experiment_has_a_series_per_arm(users_file: Path) -> None:
    docs = [_estimate("units", "fe", k, float(k), arm=a) for a in ("p90", "p95") for k in (0, 1)]
    with _client(users_file, {"shoes": docs}) as c:
        _sign_in(c, "vic")
        doc = c.get("/api/experiments/shoes/series").json()
    assert [(s["metric"], s["arm"]) for s in doc["series"]] == [("units", "p90"), ("units", "p95")]
    assert doc["verdicts"] == [] and doc["decision_metric"] is None


@pytest.fixture(scope="module")
def ladder_docs() -> list[dict[str, Any]]:
    """A real ladder's messages: the analysis worker replayed on a simulated price ladder."""
    from analysis.report import replay_estimates
    from tests.unit.analysis.report.test_report_ladder import _ladder, _spec

    est = replay_estimates(
        _ladder(n=24, periods=4), experiment="shoes", design="random-days",
        estimators=["fe"], params=_spec(24, 4).model_dump(mode="json"),
    )  # fmt: skip
    rows = est.astype(object).where(est.notna(), None).to_dict("records")
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows
    ]


def test_the_ladder_s_curves_and_recommended_price(
    users_file: Path, ladder_docs: list[dict[str, Any]]
) -> None:
    demand = [d for d in ladder_docs if d.get("kind") == "demand"]
    last = max(demand, key=lambda d: str(d["as_of"]))
    with _client(users_file, {"shoes": ladder_docs}) as c:
        _sign_in(c, "vic")
        doc = c.get("/api/experiments/shoes/series").json()
    ladder = doc["ladder"]
    assert ladder["as_of"] == last["as_of"]
    assert len(ladder["curve"]) == 101 and len(ladder["points"]) == 4
    assert [p["arm"] for p in ladder["points"]] == [p["arm"] for p in last["points"]]
    assert ladder["curve"][0]["price_ratio"] == pytest.approx(0.90)
    assert ladder["curve"][-1]["price_ratio"] == pytest.approx(1.05)
    assert all(row["profit"] is not None for row in ladder["curve"])  # the spec has costs
    assert ladder["optimal_price_ratio"] == last["optimal_price_ratio"]
    assert ladder["headline"] and ladder["text"]
    # each arm's series against the control, one per arm
    assert {s["arm"] for s in doc["series"] if s["metric"] == "units"} == {"p90", "p95", "p105"}


def test_the_heatmap_is_the_schedule_in_bins(client: TestClient) -> None:
    doc = client.get("/api/experiments/shoes/assignments").json()
    spec = _state("shoes", 2).spec
    m = design_matrices(spec)
    assert doc["arms"] == ["treatment", "control"] and doc["control"] == "control"
    assert (doc["products"], doc["periods"], doc["period"]) == (4, 5, 2)
    assert [r["first"] for r in doc["rows"]] == ["shoes0", "shoes1", "shoes2", "shoes3"]
    assert doc["cells"] == [[1] * 5] * 4  # it fits: a cell a product-period
    treated = np.array(doc["arm_share"][0])
    assert (treated == (m.arm == 0)).all()
    assert doc["reasons"] == ["washout", "phase-blackout", "freeze", "empty period"]
    assert np.array(doc["blackout_share"]).shape == (4, 4, 5)
    # asked again: the same document (kept), the period read afresh
    assert client.get("/api/experiments/shoes/assignments").json() == doc


def test_a_product_shows_its_message_in_force_and_its_history(client: TestClient) -> None:
    doc = client.get("/api/experiments/shoes/products/shoes1").json()
    assert (doc["experiment"], doc["product"], doc["period"]) == ("shoes", "shoes1", 2)
    assert doc["in_force"]["experiment"] == "shoes" and doc["in_force"]["product"] == "shoes1"
    assert doc["in_force"]["period"] == 2 and doc["in_force"]["status"] == "running"
    assert [h["period"] for h in doc["history"]] == [0, 1, 2, 3, 4]
    m = design_matrices(_state("shoes", 2).spec, ["shoes1"])
    assert [h["arm"] == "treatment" for h in doc["history"]] == m.treated[0].tolist()
    assert doc["history"][2]["arm"] == doc["in_force"]["arm"]


def test_an_unknown_product_or_experiment_is_404_with_one_sentence(client: TestClient) -> None:
    r = client.get("/api/experiments/shoes/products/hats1")
    assert r.status_code == 404
    assert r.json() == {"error": "'hats1' is not a product of experiment 'shoes'"}
    for path in ("series", "assignments", "products/shoes1"):
        r = client.get(f"/api/experiments/nope/{path}")
        assert r.status_code == 404 and "nope" in r.json()["error"]
        assert "\n" not in r.json()["error"]


def test_the_chart_routes_need_a_session(users_file: Path) -> None:
    with _client(users_file, {}) as c:
        for path in ("series", "assignments", "products/shoes1", "products/zz"):
            r = c.get(f"/api/experiments/shoes/{path}")
            assert (r.status_code, r.json()) == (401, {"error": "sign in first"})


def test_the_page_has_the_charts_and_serves_uplot_offline(client: TestClient) -> None:
    store = _ChartStore([_state("shoes", 2)])
    overview = asyncio.run(read_overview(store, "shoes"))  # type: ignore[arg-type]
    doc: dict[str, Any] = {"overview": overview, "ladder": {"lines": ["DEMAND CURVE"]},
           "scorecard": [], "looks": [], "verdict": None, "freezes": []}  # fmt: skip
    results = _ENV.get_template("results.html").render(doc=doc)
    assert 'id="over-time-chart"' in results
    assert 'data-charts="/api/experiments/shoes/series"' in results
    assert 'id="ladder-chart"' in results
    assign = _ENV.get_template("assignments.html").render(doc=doc)
    assert 'data-heatmap="/api/experiments/shoes/assignments"' in assign
    assert 'id="product-search"' in assign
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "charts.js"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.content, name
    assert "MIT License" in client.get("/static/uPlot.LICENSE").text


def test_a_product_whose_id_holds_a_slash_is_found(users_file: Path) -> None:
    """A product id is any string (a catalogue's "shoes/42"): the page's search sends it
    percent-encoded (encodeURIComponent), which the server decodes before routing."""
    from dataclasses import replace
    from urllib.parse import quote

    held = _state("shoes", 2)
    spec = held.spec.model_copy(update={"products": ["shoes/42", "shoes 7", "s3", "s4"]})
    store = _ChartStore([replace(held, spec=spec)])
    console = Console(
        Settings(console=ConsoleSettings(users_file=users_file)),
        auth.Users.load(users_file),
        store,  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
    )
    with TestClient(build_app(console)) as c:
        _sign_in(c, "vic")
        for product in ("shoes/42", "shoes 7"):
            r = c.get(f"/api/experiments/shoes/products/{quote(product, safe='')}")
            assert r.status_code == 200, r.text
            assert r.json()["product"] == product
            assert r.json()["in_force"]["product"] == product
