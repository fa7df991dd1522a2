"""The HTML report's sample ratio of an adaptive ladder (issue #57): each arm's draws against the
probabilities the controller recorded for each period, read off an exported panel's
``probability_<arm>`` columns (analysis.report.adaptive_ratio, the Health section's test:
analysis.sample_ratio), never the spec's allocations.

Validated on seeded panels drawn in the test (numpy's generator, not the package's draw) from
seeded probability paths that move between periods: p-values uniform when the draws follow the
recorded probabilities (rejections at 0.01 and 0.05 within their binomial bands), a panel
with a tenth of one arm's cells relabelled flagged."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.report import build_report
from analysis.report.adaptive_ratio import adaptive_ratio_html, adaptive_sample_ratio
from analysis.sample_ratio import DesignDraws

ARMS = ["list", "p90", "p110", "p120"]


def _path(rng: np.random.Generator, periods: int) -> np.ndarray:
    """A probability path: equal shares for two warmup periods, then a new vector each period
    (at least 0.1 an arm), as an adaptive ladder's looks move it."""
    p = np.full((periods, len(ARMS)), 0.25)
    for t in range(2, periods):
        p[t] = 0.1 + 0.6 * rng.dirichlet(np.ones(len(ARMS)))
    return p


def _panel(rng: np.random.Generator, products: int, periods: int, cluster: int = 1) -> pd.DataFrame:
    """An exported adaptive panel: each draw (a product-period, or with ``cluster`` > 1 a
    class of that many products and a period) takes its arm from the period's recorded
    probabilities (inverse CDF of a uniform); the columns ``pricelab panel export`` writes."""
    path = _path(rng, periods)
    draws = products // cluster
    u = rng.random((periods, draws))
    arm = (u[:, :, None] > np.cumsum(path, axis=1)[:, None, :-1]).sum(axis=2)
    arm = arm.repeat(cluster, axis=1).ravel()  # period-major, products in order
    period = np.repeat(np.arange(periods), products)
    d = pd.DataFrame({
        "product": np.tile([f"P{i:03d}" for i in range(products)], periods), "period": period,
        "class": np.tile([f"c{i // cluster}" for i in range(products)], periods),
        "arm": np.array(ARMS)[arm], "treated": (arm > 0).astype(int),
        "probability": 1 - path[period, 0], "blackout": False,
        "units": rng.poisson(20, products * periods),
    })  # fmt: skip
    for j, a in enumerate(ARMS):
        d[f"probability_{a}"] = path[period, j]
    return d


def _band(n: int, alpha: float) -> tuple[float, float]:
    """The 99.9% interval of binomial(n, alpha): the count of rejections a valid test makes."""
    low, high = stats.binom.ppf([0.0005, 0.9995], n, alpha)
    return float(low), float(high)


@pytest.mark.parametrize(("cluster", "runs"), [(1, 200), (2, 100)])
def test_p_values_are_uniform_when_the_draws_follow_the_record(cluster: int, runs: int) -> None:
    """Random days (a draw per product-period) and the cluster design read off the panel's
    class column (a draw per class-period: counting its products would double the variance
    and over-reject)."""
    rng = np.random.default_rng(5701 + cluster)
    pvalues = []
    for _ in range(runs):
        d = _panel(rng, 40, 8, cluster)
        srm = adaptive_sample_ratio(d, "cluster" if cluster > 1 else "random-days")
        assert srm is not None and srm.df == len(ARMS) - 1
        assert srm.n == 40 * 8 // cluster
        pvalues.append(srm.pvalue)
    p = np.array(pvalues)
    for alpha in (0.01, 0.05):
        low, high = _band(runs, alpha)
        assert low <= (p < alpha).sum() <= high, (alpha, int((p < alpha).sum()), low, high)
    assert stats.kstest(p, "uniform").pvalue > 0.001


def _tamper(d: pd.DataFrame, rng: np.random.Generator, arm: str, to: str) -> pd.DataFrame:
    """A tenth of ``arm``'s cells relabelled ``to`` (a pipeline that mislabels some draws)."""
    d = d.copy()
    cells = d.index[d["arm"] == arm]
    moved = rng.choice(cells, size=len(cells) // 10, replace=False)
    d.loc[moved, "arm"] = to
    d.loc[moved, "treated"] = int(to != "list")
    return d


def test_a_tenth_of_one_arm_relabelled_is_flagged() -> None:
    """600 products x 14 periods: an arm holds about 2,100 draws, 210 of them moved to the
    control; the difference of the two arms' counts has an SD near sqrt(8400 x 0.5) = 65, so
    the shift of 420 is about 6.5 SDs, a noncentrality of at least 42 on 3 degrees of freedom:
    the test flags it (p < 0.01) with probability 0.9996 and calls it a problem (p < 0.001)
    with 0.996 (scipy's noncentral chi-square), and the counts of runs are held to the
    binomial 99.9% bounds of those."""
    rng = np.random.default_rng(5702)
    runs, flags = 40, []
    for _ in range(runs):
        d = _tamper(_panel(rng, 600, 14), rng, "p90", "list")
        html = adaptive_ratio_html(d, "random-days")
        flags.append(re.search(r"data-flag='(\w+)'", html).group(1))  # type: ignore[union-attr]
    flagged = stats.binom.ppf(0.001, runs, stats.ncx2.sf(stats.chi2.isf(0.01, 3), 3, 42))
    problem = stats.binom.ppf(0.001, runs, stats.ncx2.sf(stats.chi2.isf(0.001, 3), 3, 42))
    assert runs - flags.count("ok") >= flagged, flags
    assert flags.count("problem") >= problem, flags


def _exact_panel() -> pd.DataFrame:
    """Four periods of 20 products whose arms' counts are exactly the recorded probabilities'
    expected counts (the statistic is 0, p = 1); the probabilities move from period to
    period."""
    shares = [(0.25, 0.25, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25), (0.1, 0.2, 0.3, 0.4),
              (0.05, 0.15, 0.2, 0.6)]  # fmt: skip
    rows = []
    for t, p in enumerate(shares):
        arms = np.repeat(ARMS, [round(20 * x) for x in p])
        frame = pd.DataFrame({
            "product": [f"P{i:02d}" for i in range(20)], "period": t, "arm": arms,
            "treated": (arms != "list").astype(int), "probability": 1 - p[0],
            "blackout": False, "units": 10.0 + t,
        })  # fmt: skip
        for a, x in zip(ARMS, p, strict=True):
            frame[f"probability_{a}"] = x
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _section(page: str) -> str:
    start = page.index("<h2>Balance and sample ratio</h2>")
    return page[start : page.index("<h2>", start + 4) if "<h2>" in page[start + 4 :] else None]


def test_the_report_page_shows_the_recorded_test_never_the_allocations() -> None:
    allocations = dict.fromkeys(ARMS, 0.25)
    page = build_report(_exact_panel(), None, title="t", design="random-days",
                        allocations=allocations).html  # fmt: skip
    section = _section(page)
    assert "data-check='sample-ratio-recorded' data-flag='ok'" in section
    assert "against the probabilities recorded for each period" in section
    assert "p = 1," in section and "over 80 independent draws (products) in 4 period(s)" in section
    # list: 5 + 5 + 2 + 1 = 13 draws, as expected
    assert "<tr><td>list</td><td>13</td><td>13.0</td>" in section
    assert "spec's allocations" not in section and "binomial test" not in section
    # every draw of periods 2 and 3 in p120 (recorded 0.4 and 0.6): 20 more than the 20
    # expected, whose SD is sqrt(20 x 0.24 + 20 x 0.24) = 3.1: a problem
    bad = _exact_panel()
    bad.loc[bad["period"] >= 2, "arm"] = "p120"
    section = _section(build_report(bad, None, title="t", design="random-days",
                                    allocations=allocations).html)  # fmt: skip
    assert "data-flag='problem'" in section and "investigate the assignment pipeline" in section


def test_without_what_a_draw_is_or_the_record_the_page_says_why() -> None:
    d = _exact_panel()
    # an optimal switchback draws per block: without its spec's points, no test and why
    section = _section(build_report(d, None, title="t", design="optimal-switchback").html)
    assert "data-flag='none'" in section and "--spec" in section
    assert "against the spec's allocations" not in section and "binomial test" not in section
    # with the spec's points (periods 0 and 2 start blocks), only those periods' draws count
    srm = adaptive_sample_ratio(d, "optimal-switchback", DesignDraws(tuple(ARMS), points=(0, 2)))
    assert srm is not None and srm.level == "block" and srm.n == 40 and srm.periods == 2
    # an adaptive spec's panel without the recorded columns: never the allocations
    bare = d.drop(columns=[f"probability_{a}" for a in ARMS])
    section = _section(build_report(bare, None, title="t", design="random-days",
                                    allocations=dict.fromkeys(ARMS, 0.25),
                                    adaptive_draws=DesignDraws(tuple(ARMS))).html)  # fmt: skip
    assert "data-flag='none'" in section and "probability_list" in section
    assert "pricelab panel export" in section and "binomial test" not in section


def test_a_cluster_panel_counted_as_products_over_rejects() -> None:
    """Why the draws are the design's: a class's two products share one draw, so counting them
    as two doubles the counts' variance and the test rejects far more often than alpha."""
    rng = np.random.default_rng(5703)
    runs = 50
    p = np.array(
        [adaptive_sample_ratio(_panel(rng, 40, 8, 2), "random-days").pvalue  # type: ignore[union-attr]
         for _ in range(runs)]
    )  # fmt: skip
    assert (p < 0.05).sum() > _band(runs, 0.05)[1]
