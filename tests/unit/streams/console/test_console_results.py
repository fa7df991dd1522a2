"""The Results section's segments with Benjamini-Hochberg and the elasticity (issue #55): the
messages the analysis worker published, shown as ``pricelab estimates`` picks them and as the
report lays them out (a segment's rows at the latest look only; the elasticity apart from the
scorecard). The store, feed and trail are stand-ins; the figures are the messages' own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from streams.client.history import Trail
from streams.client.results import NO_SEGMENT_YET, NO_SEGMENTS_NAMED, results_view
from streams.console import auth, views
from streams.console.app import Console, build_app
from tests.unit.streams.console.test_console_app import _Feed, _state, _Store, hash_line

LOOKS = ("2026-06-02T00:00:00+00:00", "2026-06-03T00:00:00+00:00")


def _est(metric: str, look: int, effect: float, **more: Any) -> dict[str, Any]:
    return {
        "experiment": "shoes",
        "metric": metric,
        "estimator": "did",
        "as_of": LOOKS[look],
        "n_periods": look + 2,
        "effect": effect,
        "ci_low": effect - 1.0,
        "ci_high": effect + 1.0,
        "cs_low": effect - 2.0,
        "cs_high": effect + 2.0,
        "relative_effect": effect / 100.0,
        "relative_ci_low": (effect - 1.0) / 100.0,
        "relative_ci_high": (effect + 1.0) / 100.0,
    } | more


ELASTICITY = {
    "experiment": "shoes",
    "metric": "elasticity",
    "estimator": "wald_within_product",
    "identified": True,
    "n_periods": 3,
}

DOCS = [
    _est("units", 0, 1.0),
    _est("units", 1, 2.0),
    _est("revenue", 1, 20.0),
    # look 0: three segments; "gone" could not be estimated at look 1, so its BH is stale
    _est("units", 0, 5.0, segment="big", pvalue=0.5, pvalue_bh=0.6, n_units=2),
    _est("units", 0, 6.0, segment="gone", pvalue=0.2, pvalue_bh=0.6, n_units=1),
    _est("units", 0, 7.0, segment="small", pvalue=0.4, pvalue_bh=0.6, n_units=1),
    # look 1: p = 0.01 and 0.04 over two segments: BH 0.01 * 2 / 1 = 0.02, 0.04 * 2 / 2 = 0.04
    _est("units", 1, 3.0, segment="big", pvalue=0.01, pvalue_bh=0.02, n_units=2),
    _est("units", 1, 4.0, segment="small", pvalue=0.04, pvalue_bh=0.04, n_units=2),
    ELASTICITY | {"as_of": LOOKS[0], "effect": -1.5, "ci_low": -2.5, "ci_high": -0.5},
    ELASTICITY | {"as_of": LOOKS[1], "effect": -1.25, "ci_low": -2.0, "ci_high": -0.75},
]


def test_the_segments_are_the_latest_look_s_and_the_elasticity_its_own_part() -> None:
    doc = results_view(DOCS, "units", ["big", "gone", "small"])
    assert [(r["metric"], r["effect"]) for r in doc["scorecard"]] == [
        ("units", 2.0),
        ("revenue", 20.0),
    ]
    assert [(r["segment"], r["effect"], r["pvalue"], r["pvalue_bh"]) for r in doc["segments"]] == [
        ("big", 3.0, 0.01, 0.02),
        ("small", 4.0, 0.04, 0.04),
    ]
    assert doc["segments_note"] is None
    assert doc["elasticity"]["effect"] == -1.25 and doc["elasticity"]["as_of"] == LOOKS[1]


def test_without_segments_a_sentence_says_why() -> None:
    whole = [d for d in DOCS if not d.get("segment")]
    assert results_view(whole, "units")["segments_note"] == NO_SEGMENTS_NAMED
    assert results_view(whole, "units", ["big"])["segments_note"] == NO_SEGMENT_YET
    assert results_view([], "units")["elasticity"] is None


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id)

    monkeypatch.setattr(views, "read_trail", trail)
    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    held = _state("shoes", 2)
    segmented = held.spec.model_copy(
        update={"segments": {"big": ("shoes0", "shoes1"), "small": ("shoes2", "shoes3")}}
    )
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        _Store([replace(held, spec=segmented), _state("hats", 2)]),  # type: ignore[arg-type]
        _Feed({"shoes": DOCS, "hats": [_est("units", 1, 2.0) | {"experiment": "hats"}]}),  # type: ignore[arg-type]
    )
    with TestClient(build_app(console)) as c:
        r = c.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200
        yield c


def test_the_api_and_the_page_show_the_segments_with_bh_and_the_elasticity(
    client: TestClient,
) -> None:
    doc = client.get("/api/experiments/shoes").json()
    assert doc["overview"]["decision_metric"] == "revenue"  # the spec's default: it leads
    assert [r["metric"] for r in doc["scorecard"]] == ["revenue", "units"]
    assert [(r["segment"], r["pvalue_bh"]) for r in doc["segments"]] == [
        ("big", 0.02),
        ("small", 0.04),
    ]
    assert doc["elasticity"]["effect"] == -1.25
    page = client.get("/experiments/shoes").text
    assert '<tr data-segment="big" data-metric="units">' in page
    assert "<td>0.01</td><td>0.02</td>" in page  # p, then p (BH)
    assert "<td>0.04</td><td>0.04</td>" in page
    assert 'data-segment="gone"' not in page
    assert "Benjamini-Hochberg adjusted across the segments estimated at that look" in page
    assert '<span class="figure">-1.250</span> [-2.000, -0.750] (95%, Fieller)' in page
    # the scorecard has no elasticity row and no segment row
    scorecard = page.split('id="scorecard"', 1)[1].split("</table>", 1)[0]
    assert 'data-metric="elasticity"' not in scorecard and "(big)" not in scorecard


def test_an_experiment_without_segments_or_elasticity_says_so(client: TestClient) -> None:
    page = client.get("/experiments/hats").text
    assert NO_SEGMENTS_NAMED in page
    assert "No elasticity yet" in page
