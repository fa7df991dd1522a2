"""The worker's Prometheus metrics (streams/worker/metrics.py) as the alert rules read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from streams.worker.metrics import Metrics


def test_the_estimate_age_is_kept_only_of_the_experiments_a_worker_publishes():
    """PricelabEstimateStale reads the oldest estimate age by experiment over every worker: a
    worker that no longer publishes an experiment (another worker of the group merges it now)
    must stop exporting its age, which would otherwise grow and fire the alert."""
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    m = Metrics(registry=CollectorRegistry(), now=lambda: now)

    def age(exp: str) -> float | None:
        return m.registry.get_sample_value(
            "pricelab_estimate_age_seconds", {"experiment": exp, "estimator": "dm"}
        )

    m.published("a", "dm", now - timedelta(hours=4))
    m.published("b", "dm", now - timedelta(minutes=5))
    assert age("a") == 4 * 3600 and age("b") == 300
    m.reporting(frozenset({"b"}))
    assert age("a") is None and age("b") == 300
    m.reporting(frozenset())
    assert age("b") is None


def test_without_a_clock_the_newest_estimate_is_now() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    m = Metrics(registry=CollectorRegistry())
    m.published("a", "dm", now - timedelta(minutes=5))
    m.published("b", "dm", now)
    got = {
        e: m.registry.get_sample_value(
            "pricelab_estimate_age_seconds", {"experiment": e, "estimator": "dm"}
        )
        for e in "ab"
    }
    assert got == {"a": 300.0, "b": 0.0}
    m.reporting(frozenset())
    assert (
        m.registry.get_sample_value(
            "pricelab_estimate_age_seconds", {"experiment": "a", "estimator": "dm"}
        )
        is None
    )


def test_a_retired_experiment_leaves_no_series_behind() -> None:
    """A controller's series per experiment go once it is retired (controller.retirement):
    its /metrics, like its memory, must not grow with every experiment ever run."""
    r = CollectorRegistry()
    m = Metrics(registry=r)
    at = datetime(2026, 6, 1, tzinfo=UTC)
    for exp in ("old", "live"):
        m.flipped(exp, 10, 0.1, 1)
        m.flipped(exp, 10, 0.1, 0, backfilled=2)
        m.next_boundary(exp, at)
        m.unpublished(exp, at)
        m.trigger_kept(exp, 1, 1)

    def experiments() -> set[str]:
        return {
            s.labels["experiment"]
            for family in r.collect()
            for s in family.samples
            if "experiment" in s.labels
        }

    assert experiments() == {"old", "live"}
    m.retired("old")
    assert experiments() == {"live"}
    m.retired("old")  # again (another tick, another worker's): nothing to remove, no error
    assert r.get_sample_value("pricelab_flips_total", {"experiment": "live"}) == 2
