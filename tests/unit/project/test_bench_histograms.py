"""The benchmark's reading of a worker's /metrics histograms: per-series deltas between two
scrapes and quantiles estimated as Prometheus's histogram_quantile does."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from benchmarks._common import (
    histo_add,
    histo_count,
    histo_delta,
    histo_quantile,
    scrape_histograms,
)


def _registry() -> tuple[CollectorRegistry, Histogram]:
    r = CollectorRegistry()
    h = Histogram("x_seconds", "x", ["stage"], buckets=(1.0, 2.0, 4.0), registry=r)
    return r, h


def _scrape(r: CollectorRegistry) -> dict[str, tuple[list[tuple[float, float]], float]]:
    return scrape_histograms(generate_latest(r).decode(), "x_seconds", "stage")


def test_quantiles_interpolate_within_the_bucket_holding_the_rank() -> None:
    r, h = _registry()
    for _ in range(10):
        h.labels("save").observe(0.5)
        h.labels("save").observe(1.5)
    save = _scrape(r)["save"]
    assert histo_count(save) == 20 and math.isclose(save[1], 20.0)
    assert math.isclose(histo_quantile(save, 0.5), 1.0)  # rank 10: top of the first bucket
    assert math.isclose(histo_quantile(save, 0.75), 1.5)  # rank 15: half-way through (1, 2]


def test_a_quantile_in_the_open_bucket_is_the_highest_finite_bound() -> None:
    r, h = _registry()
    h.labels("publish").observe(0.5)
    h.labels("publish").observe(10.0)
    assert histo_quantile(_scrape(r)["publish"], 0.99) == 4.0


def test_the_delta_keeps_only_what_was_observed_between_scrapes() -> None:
    r, h = _registry()
    h.labels("save").observe(3.0)  # before: seeding, not the timed part
    before = _scrape(r)
    h.labels("save").observe(0.5)
    h.labels("commit").observe(1.5)
    after = _scrape(r)
    save = histo_delta(after["save"], before.get("save"))
    assert histo_count(save) == 1 and math.isclose(save[1], 0.5)
    assert histo_quantile(save, 0.99) <= 1.0
    commit = histo_delta(after["commit"], before.get("commit"))  # a series new since then
    assert histo_count(commit) == 1


def test_nothing_observed_has_no_quantile() -> None:
    r, h = _registry()
    h.labels("save")
    assert math.isnan(histo_quantile(_scrape(r)["save"], 0.5))


def test_pooled_runs_equal_one_histogram_of_all_observations() -> None:
    runs = []
    for xs in ([0.5, 3.0], [1.5, 1.5, 9.0]):
        r, h = _registry()
        for x in xs:
            h.labels("save").observe(x)
        runs.append(_scrape(r)["save"])
    r, h = _registry()
    for x in (0.5, 3.0, 1.5, 1.5, 9.0):
        h.labels("save").observe(x)
    assert histo_add(runs[1], histo_add(runs[0], None)) == _scrape(r)["save"]
