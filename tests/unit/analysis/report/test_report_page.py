"""The report page a reader acts on: the verdict first (or why there is none), every
metric's running estimates, a heatmap legend inside its figure, and a balance section that is
either filled in or says why it cannot be."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.report import assignment_heatmap, build_report, normalise_panel
from analysis.report.figures import running_estimates_figure

RULE = (
    "ship when the 95% anytime-valid confidence sequence of profit's relative effect lies "
    "wholly above 0% and no guardrail is breached; do not ship when it lies wholly below 0% "
    "or a guardrail is breached; otherwise keep running"
)


def _verdict(**over: Any) -> dict[str, Any]:
    """A verdict message as the contract gives it (issue #39, part 2)."""
    return {
        "v": 1,
        "kind": "verdict",
        "experiment": "x",
        "as_of": "2026-03-08T00:00:00+00:00",
        "verdict": "do_not_ship",
        "metric": "profit",
        "estimator": "fe",
        "rule": RULE,
        "reason": "profit -7.8% [-10.9%, -4.6%] lies wholly below 0%",
        "relative_effect": -0.078,
        "relative_cs_low": -0.109,
        "relative_cs_high": -0.046,
        "effect": -58.0,
        "cs_low": -80.1,
        "cs_high": -35.9,
        "guardrails": [
            {
                "metric": "units",
                "max_drop_pct": 2.0,
                "relative_effect": 0.099,
                "relative_cs_low": 0.07,
                "relative_cs_high": 0.12,
                "status": "ok",
            }
        ],
        "mde_pct": 2.0,
        "more_days": None,
        "more_days_note": None,
        "n_units": 200,
        "n_periods": 28,
    } | over


def _estimates(periods: int = 6) -> list[dict[str, Any]]:
    """Running estimates of four metrics by hand: fe and dm for each, as_of one day a look."""
    rows = []
    for n in range(2, periods + 1):
        for metric, scale in (
            ("units", 1.0),
            ("revenue", 40.0),
            ("profit", -10.0),
            ("price", -2.0),
        ):
            for estimator in ("fe", "dm"):
                effect = scale * (1 + 0.1 * n)
                rows.append(
                    {
                        "metric": metric,
                        "estimator": estimator,
                        "n_periods": n,
                        "as_of": f"2026-03-{n:02d}T00:00:00+00:00",
                        "effect": effect,
                        "se": abs(scale) * 0.5,
                        "ci_low": effect - abs(scale),
                        "ci_high": effect + abs(scale),
                        "cs_low": effect - 2 * abs(scale),
                        "cs_high": effect + 2 * abs(scale),
                        "control_mean": abs(scale) * 10,
                        "relative_effect": effect / (abs(scale) * 10),
                        "relative_ci_low": (effect - abs(scale)) / (abs(scale) * 10),
                        "relative_ci_high": (effect + abs(scale)) / (abs(scale) * 10),
                    }
                )
    return rows


def _panel(n: int = 16, T: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    W = rng.random((n, T)) < 0.5
    return pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], T),
            "period": np.tile(np.arange(T), n),
            "units": (rng.uniform(20, 40, n)[:, None] + 3 * W).ravel(),
            "treated": W.ravel().astype(int),
            "probability": 0.5,
            "blackout": False,
        }
    )


def _page(messages: list[dict[str, Any]], **kw: Any) -> str:
    return build_report(
        _panel(), pd.DataFrame(messages), title="t", design="random-days", **kw
    ).html


def _verdict_band(page: str) -> str:
    return page.split('<section class="verdict', 1)[1].split("</section>", 1)[0]


@pytest.fixture(scope="module")
def verdict_page() -> str:
    """The page of six looks' estimates and a do-not-ship verdict: built once, read by two tests."""
    return _page(_estimates() + [_verdict()])


def test_the_verdict_comes_first_with_its_metric_reason_rule_and_guardrails(
    verdict_page: str,
) -> None:
    page = verdict_page
    band = _verdict_band(page)
    assert page.index('<section class="verdict') < page.index("<h2>Scorecard</h2>")
    assert page.index('<section class="verdict') < page.index("products x 8 periods")
    assert '<p class="word">Do not ship</p>' in band
    assert "<b>profit</b> (estimator fe)" in band and "-7.8% [-10.9%, -4.6%]" in band
    assert "profit -7.8% [-10.9%, -4.6%] lies wholly below 0%" in band
    assert "Rule: ship when the 95% anytime-valid" in band
    assert "<td>units</td><td>not below -2.0%</td><td>+9.9% [+7.0%, +12.0%]</td><td>ok</td>" in band
    assert "more days" not in band  # only keep_running says how long
    # the verdict is no estimate: profit's scorecard row is fe's estimate at the last look
    assert "<td>profit</td><td>-16.000</td>" in page and "-58.000" not in page


def test_keep_running_says_how_many_more_days() -> None:
    band = _verdict_band(_page(_estimates() + [_verdict(verdict="keep_running", more_days=12.5)]))
    assert '<p class="word">Keep running</p>' in band
    assert "Inconclusive: about 13 more days needed" in band
    note = "the plan's MDE is unknown: give mde_pct in the spec"
    band = _verdict_band(
        _page(_estimates() + [_verdict(verdict="keep_running", more_days_note=note)])
    )
    assert f"Inconclusive: {html.escape(note)}" in band


def test_the_latest_look_decides_and_a_breached_guardrail_is_marked() -> None:
    breached = [dict(_verdict()["guardrails"][0], status="breached", relative_cs_high=-0.03)]
    later = _verdict(as_of="2026-03-09T00:00:00+00:00", verdict="ship", guardrails=breached)
    # published out of order: the later look first
    band = _verdict_band(_page(_estimates() + [later, _verdict(verdict="keep_running")]))
    assert '<p class="word">Ship</p>' in band
    assert '<td class="warn">breached</td>' in band


def test_the_latest_verdict_is_found_whatever_the_timestamps_precision() -> None:
    # as the demo's topic had them: a period end with microseconds, then a look at whole
    # seconds (a format inferred from the first turned the second into NaT: 27 periods shown)
    early = _verdict(as_of="2026-04-11T21:59:59.999000Z", n_periods=27, verdict="keep_running")
    late = _verdict(as_of="2026-04-12T22:02:00Z", n_periods=28)
    band = _verdict_band(_page(_estimates() + [early, late]))
    assert '<p class="word">Do not ship</p>' in band
    assert "as of 2026-04-12 22:02 UTC; 200 products x 28 periods" in band
    replayed = _verdict(as_of=pd.Timestamp("2026-03-09", tz="UTC"))  # the replay's datetimes
    assert "as of 2026-03-09 00:00 UTC" in _verdict_band(_page(_estimates() + [replayed]))


@pytest.mark.parametrize("note", [None, "offline: no verdicts here"])
def test_no_verdict_yet_is_said_not_failed(note: str | None) -> None:
    band = _verdict_band(_page(_estimates(), verdict_note=note))
    assert '<p class="word">No verdict</p>' in band
    assert (note or "No verdict published yet") in band


def test_running_estimates_cover_every_metric_profit_included(verdict_page: str) -> None:
    table = verdict_page.split("<h2>Running estimates</h2>")[1].split("</table>")[0]
    for metric in ("units", "revenue", "profit", "price"):
        for estimator in ("fe", "dm"):
            assert f"<tr><td>{metric}</td><td>{estimator}</td><td>6</td>" in table
    # profit's fe at the last look: -10 x 1.6, its sequence +-20
    assert "<td>profit</td><td>fe</td><td>6</td><td>-16.000</td>" in table
    assert "<td>-36.000</td><td>+4.000</td></tr>" in table
    fig = running_estimates_figure(pd.DataFrame(_estimates()), {"profit": -15.0})
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible() and ax.axison]
    assert titles == [
        f"{m}: {e}" for m in ("units", "revenue", "profit", "price") for e in ("fe", "dm")
    ]
    profit = next(ax for ax in fig.axes if ax.get_title(loc="left") == "profit: fe")
    # estimate, the sequence's two sides, zero and the truth
    assert [float(np.asarray(line.get_ydata())[-1]) for line in profit.get_lines()] == [
        -36.0,
        4.0,
        -16.0,
        0,
        -15.0,
    ]


@pytest.mark.parametrize("T", [4, 8, 28])
def test_heatmap_legend_lies_inside_the_figure_and_clear_of_the_axis_label(T: int) -> None:
    fig = assignment_heatmap(normalise_panel(_panel(T=T)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = fig.legends[0].get_window_extent(renderer)
    page = fig.bbox
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1, (legend, page)
    assert page.y0 <= legend.y0 and legend.y1 <= page.y1, (legend, page)
    label = fig.axes[0].xaxis.label.get_window_extent(renderer)
    assert not legend.overlaps(label)
    assert len(fig.legends[0].get_texts()) == 4


def test_balance_is_filled_from_unit_costs_or_says_why_it_is_empty() -> None:
    bare = _page(_estimates())
    section = bare.split("<h2>Balance and sample ratio</h2>")[1]
    assert "No covariate balance" in section and "<th>covariate</th>" not in section
    df = _panel()
    cost = {p: 5.0 + i for i, p in enumerate(sorted(df["product"].unique()))}
    df["unit_cost"] = df["product"].map(cost)
    page = build_report(df, pd.DataFrame(_estimates()), title="t", design="random-days").html
    table = page.split("<h2>Balance and sample ratio</h2>")[1].split("</table>")[0]
    # each product weighted by its share of treated (control) cells, by hand
    share = df.groupby("product")["treated"].mean()
    c = pd.Series(cost)
    treated = float((share * c).sum() / share.sum())
    control = float(((1 - share) * c).sum() / (1 - share).sum())
    smd = (treated - control) / float(c.std(ddof=1))
    assert (
        f"<tr><td>unit_cost</td><td>{treated:.3f}</td><td>{control:.3f}</td><td>{smd:+.3f}</td></tr>"
        in table
    )
