"""The analysis worker's logic with a plain in-memory panel source (pure code, no clients)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analysis.results import published_fields
from analysis.worker import AnalysisWorker, ExperimentInfo
from controller.clock import ManualClock
from controller.designs import design_of, design_sampler
from controller.spec import ExperimentSpec
from streams.worker.schemas import EstimateMessage


def _cells(
    effect_pct: float, n: int = 60, t: int = 20, seed: int = 0, price_cut: float = 0.05
) -> pd.DataFrame:
    """Random days: units change by effect_pct when treated, whose price is price_cut lower."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.uniform(20, 60)
        price = rng.uniform(5, 20)
        for k in range(t):
            treated = int(rng.random() < 0.5)
            units = rng.poisson(base * (1 + effect_pct / 100 * treated))
            rows.append(
                {
                    "product": f"p{i}",
                    "period": k,
                    "units": float(units),
                    "revenue": price * (1 - price_cut * treated) * units,
                    "treated": treated,
                    "probability": 0.5,
                    "blackout": False,
                }
            )
    return pd.DataFrame(rows)


class Source:
    def __init__(self, df: pd.DataFrame, guardrails=()):
        self.df = df
        self.info = ExperimentInfo(
            "e1", "random-days", "running", {"n_periods": 20, "guardrails": list(guardrails)}
        )

    async def experiments(self):
        return [self.info]

    async def panel(self, exp_id, as_of):
        return self.df


class Sink:
    def __init__(self):
        self.published = []
        self.trips = []

    async def publish(self, experiment, result, as_of, cs):
        self.published.append((experiment, result, as_of, cs))

    async def trip(self, experiment, metric, detail):
        self.trips.append((experiment, metric, detail))


def _worker(df, guardrails=()):
    sink = Sink()
    w = AnalysisWorker(
        Source(df, guardrails), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), guardrails=sink
    )
    return w, sink


async def test_run_once_publishes_the_design_estimators_with_a_wider_confidence_sequence():
    w, sink = _worker(_cells(10.0))
    out = await w.run_once()
    methods = {r.method for _, r in out}
    assert "dm" in methods
    for _, r, _, cs in sink.published:
        if r.metric == "elasticity":  # Fieller's interval at a fixed look, no sequence
            assert cs is None
            continue
        lo, hi = r.conf_int(0.05)
        assert cs is not None and cs[0] < lo and cs[1] > hi  # anytime-valid costs width


async def test_guardrail_trips_on_a_large_harm_and_not_on_no_effect():
    w, sink = _worker(_cells(-30.0, seed=1), guardrails=[{"metric": "revenue", "max_drop_pct": 5}])
    await w.run_once()
    assert [(e, m) for e, m, _ in sink.trips] == [("e1", "revenue")]
    assert sink.trips[0][2]["relative_effect_pct"] < -20

    w, sink = _worker(
        _cells(0.0, seed=2, price_cut=0.0), guardrails=[{"metric": "revenue", "max_drop_pct": 5}]
    )
    await w.run_once()
    assert sink.trips == []


async def test_no_spillover_estimate_where_the_design_gives_none():
    df, edges = _spillover_cells(n_pairs=20, t=4)
    source = Source(df)
    info = _random_days_info(sorted(df["product"].unique()), 4, substitutes=edges)
    source.info = ExperimentInfo(
        info.id,
        "crossover",
        "running",
        info.params,
        estimators=info.estimators,
        periods_share_draws=True,
        spillover=None,
        sampler=info.sampler,
    )
    w = AnalysisWorker(source, Sink(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    out = await w.run_once()
    methods = {r.method for _, r in out}
    assert "dm" in methods and "spillover_ipw" in methods
    # said on the topic, with no number: the message a pricing analyst's reader gets
    (said,) = [r for _, r in out if r.method == "spillover_ipw"]
    msg = EstimateMessage(
        experiment="exp",
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
        **{
            k: v
            for k, v in published_fields(said, None).items()
            if k in EstimateMessage.model_fields
        },
    )
    assert msg.identified is False and msg.effect is None and msg.ci_low is None
    assert msg.note is not None and "not identified for the crossover design" in msg.note


async def test_too_few_periods_publishes_nothing():
    df = _cells(5.0, t=1)
    w, sink = _worker(df)
    assert await w.run_once() == []


def _spillover_cells(
    n_pairs: int = 150, t: int = 12, direct: float = 5.0, spill: float = 3.0, seed: int = 4
):
    """Products in substitute pairs; a treated partner adds ``spill`` to a product's units."""
    rng = np.random.default_rng(seed)
    n = 2 * n_pairs
    base = rng.uniform(20, 40, size=n)
    rows = []
    for k in range(t):
        w = rng.random(n) < 0.5
        partner = np.arange(n) ^ 1
        y = base + direct * w + spill * w[partner] + rng.normal(0, 2, size=n)
        for i in range(n):
            rows.append(
                {
                    "product": f"p{i:04d}",
                    "period": k,
                    "units": float(y[i]),
                    "revenue": float(y[i]),
                    "treated": int(w[i]),
                    "probability": 0.5,
                    "blackout": False,
                }
            )
    edges = [(f"p{2 * j:04d}", f"p{2 * j + 1:04d}", 1.0) for j in range(n_pairs)]
    return pd.DataFrame(rows), edges


def _random_days_info(products: list[str], periods: int, **params) -> ExperimentInfo:
    """The info the Redis panel source gives a random-days experiment: the design's own
    estimators and a sampler of the live design."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spec = ExperimentSpec(
        id="e1",
        products=tuple(products),
        treatment_policy="t",
        control_policy="c",
        start=start,
        end=start + timedelta(days=periods),
    )
    design = design_of(spec)
    return ExperimentInfo(
        "e1",
        spec.design,
        "running",
        {"n_periods": periods, **params},
        estimators=design.estimators(spec),
        planned_periods=periods,
        periods_share_draws=design.periods_share_draws(spec),
        spillover=design.spillover(spec),
        sampler=design_sampler(spec),
    )


async def test_experiments_with_a_graph_get_spillover_estimates_next_to_the_naive_ones():
    df, edges = _spillover_cells()
    source = Source(df)
    source.info = _random_days_info(sorted(df["product"].unique()), 12, substitutes=edges)
    sink = Sink()
    w = AnalysisWorker(source, sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    out = {r.method: r for _, r in await w.run_once()}
    direct = out["spillover_ipw:direct"]
    spill = out["spillover_ipw:spillover_control:any"]
    lo, hi = direct.conf_int()
    assert lo <= 5.0 <= hi
    lo, hi = spill.conf_int()
    assert lo <= 3.0 <= hi
    # the naive difference in means sees only the direct effect: it misses the spillover
    # that a market-wide price change (everyone treated: 5 + 3) would realise
    assert out["dm"].conf_int()[1] < 5.0 + 3.0 - 2.0


def test_each_design_says_how_its_spillover_may_be_estimated():
    from pathlib import Path

    from controller.panel_source import experiment_info
    from controller.spec import load_spec_file

    examples = Path(__file__).resolve().parents[3] / "docs" / "examples"
    mode = {
        p.stem: experiment_info(load_spec_file(p), "running").spillover
        for p in examples.glob("*.yaml")
    }
    # periods drawn afresh: per period; one assignment after a pre-period: block; shared
    # draws (crossover, carryover, trigger windows): none
    # the cluster design withholds it: measured SEs short of the spread (lab.studies.spillover_worker)
    assert mode == {
        "random-days": "per-period",
        "cluster": None,
        "time-bound": "block",
        "crossover": None,
        "optimal-switchback": None,
        "triggered": None,
    }
    spec = load_spec_file(examples / "time-bound.yaml")
    no_pre = spec.model_copy(
        update={"time_bound": spec.time_bound.model_copy(update={"start_period": 0})}
    )
    assert experiment_info(no_pre, "running").spillover is None


async def test_a_triggered_panel_that_looks_like_a_block_gets_no_spillover_number():
    # every product triggered at the same period: the panel has a block's shape, but the
    # design's windows share draws, so the worker must not publish spillover estimates
    from controller.designs import DesignContext, design_matrices
    from controller.panel_source import experiment_info
    from controller.spec import load_spec

    start = datetime(2026, 6, 1, tzinfo=UTC)
    products = [f"q{i:03d}" for i in range(40)]
    spec = load_spec(
        {
            "id": "trig",
            "design": "triggered",
            "products": products,
            "treatment_policy": "t",
            "control_policy": "c",
            "start": start.isoformat(),
            "end": (start + timedelta(days=8)).isoformat(),
            "triggered": {"undercut_pct": 5, "window_periods": 8},
            "substitutes": [(products[i], products[i + 1], 1.0) for i in range(0, 40, 2)],
        }
    )
    triggers = dict.fromkeys(products, 3)
    m = design_matrices(spec, products, DesignContext(triggers=triggers))
    rng = np.random.default_rng(0)
    rows = [
        {
            "product": p,
            "period": k,
            "units": float(rng.poisson(20)),
            "revenue": 1.0,
            "treated": int(m.treated[i, k]),
            "probability": m.probability[i, k],
            "blackout": False,
        }
        for i, p in enumerate(products)
        for k in range(8)
    ]
    source = Source(pd.DataFrame(rows))
    source.info = experiment_info(spec, "running", triggers)
    out = await AnalysisWorker(source, Sink(), ManualClock(start + timedelta(days=9))).run_once()
    from analysis.worker import panel_from_cells

    assert panel_from_cells(pd.DataFrame(rows)).is_block  # the shape that misled the old rule
    methods = {r.method for _, r in out}
    spill = [r for _, r in out if r.method.startswith("spillover")]
    assert "dm" in methods and spill
    # no number: only that it is not identified, and why
    assert all(r.to_dict()["identified"] is False and r.to_dict()["effect"] is None for r in spill)
    assert "triggered design: its periods share one draw" in spill[0].to_dict()["reason"]


async def test_segments_named_by_the_spec_get_their_own_estimates_and_adjusted_pvalues():
    # products p0-p29 react by +30%, p30-p59 not at all: the worker must tell them apart
    hit = _cells(30.0, seed=3)
    flat = _cells(0.0, seed=4)
    hit = hit[hit["product"].isin([f"p{i}" for i in range(30)])]
    flat = flat[~flat["product"].isin([f"p{i}" for i in range(30)])]
    reacting = [f"p{i}" for i in range(29)]  # p29 is a segment of its own
    df = pd.concat([hit, flat], ignore_index=True)
    w, sink = _worker(df)
    w.source.info = ExperimentInfo(  # type: ignore[attr-defined]
        "e1",
        "random-days",
        "running",
        {
            "n_periods": 20,
            "segments": {
                "reacts": reacting,
                "flat": [f"p{i}" for i in range(30, 60)],
                "tiny": ["p29"],  # one product: not estimable, left out of the adjustment
            },
        },
    )
    seen: list[str] = []

    class Observer:
        def estimated(self, *a: object) -> None: ...

        def published(self, experiment: str, estimator: str, as_of: object) -> None:
            seen.append(estimator)

        def guardrail_tripped(self, *a: object) -> None: ...

        def cycle_done(self, *a: object) -> None: ...

        def reporting(self, *a: object) -> None: ...

        def holding(self, *a: object) -> None: ...

    w.observer = Observer()
    await w.run_once()
    # the metrics see each segment as its own series: "dm" stays the whole experiment's
    assert {"dm", "dm@reacts", "dm@flat"} <= set(seen) and seen.count("dm") == 1
    by_segment = {
        r.segment: (r, cs) for _, r, _, cs in sink.published if r.segment and r.metric == "units"
    }
    assert {(r.segment, r.metric) for _, r, _, _ in sink.published if r.segment} == {
        (s, m) for s in ("reacts", "flat") for m in ("units", "revenue", "price")
    }
    assert set(by_segment) == {"reacts", "flat"}
    reacts, flat_ = by_segment["reacts"][0], by_segment["flat"][0]
    base = df[df["treated"] == 0].groupby("product")["units"].mean()
    expected_gain = 0.30 * base[reacting].mean()
    assert abs(reacts.effect - expected_gain) < 3 * reacts.se
    assert abs(flat_.effect) < 3 * flat_.se
    assert reacts.n_units == 29 and flat_.n_units == 30
    # BH over two tests: the larger p-value stays, the smaller becomes min(2 p, larger)
    assert reacts.pvalue() < flat_.pvalue()
    small, large = reacts.pvalue(), flat_.pvalue()
    assert reacts.pvalue_bh == pytest.approx(min(2 * small, large), rel=1e-12)
    assert flat_.pvalue_bh == pytest.approx(large, rel=1e-12)
    # each segment keeps its own anytime-valid sequence, wider than its fixed interval
    for r, cs in by_segment.values():
        lo, hi = r.conf_int(0.05)
        assert cs is not None and cs[0] < lo and cs[1] > hi
    # the whole experiment's estimates are still published, untagged
    assert any(r.segment is None and r.method == "dm" for _, r, _, _ in sink.published)
    assert reacts.to_dict()["segment"] == "reacts"
    overall = next(r for _, r, _, _ in sink.published if r.segment is None)
    assert "segment" not in overall.to_dict() and "pvalue_bh" not in overall.to_dict()


def test_guardrails_compare_the_switchback_over_its_carryover_windows() -> None:
    """The optimal switchback publishes no dm (under carryover it counts the other arm's): its
    guardrails use the design's own Hajek windows; other designs their dm."""
    from pathlib import Path

    from analysis.worker import _guardrail_plan
    from controller.panel_source import experiment_info
    from controller.spec import load_spec_file

    examples = Path(__file__).resolve().parents[3] / "docs" / "examples"
    osb = experiment_info(load_spec_file(examples / "optimal-switchback.yaml"), "running")
    plan = _guardrail_plan(osb)
    assert plan.name == "hajek" and plan.params["p"] >= 1 and plan.params["point_periods"]
    rd = experiment_info(load_spec_file(examples / "random-days.yaml"), "running")
    assert _guardrail_plan(rd).name == "dm"


async def test_a_three_arm_experiment_gets_per_arm_estimates_a_verdict_and_one_log_line(caplog):
    """A k-arm experiment gets one estimate per arm against the control
    (tests/unit/analysis/test_worker_arms.py), a verdict per look, and its guardrails
    checked on each arm (issue #54: a harm that trips a two-arm experiment's guardrail trips
    it here too, naming the arm), said once, not every cycle."""
    import logging

    df = _cells(-30.0, seed=1)
    rng = np.random.default_rng(3)
    df["arm"] = np.where(df["treated"] == 1, rng.choice(["t1", "t2"], size=len(df)), "c")

    class Counted(Source):
        reads = 0

        async def panel(self, exp_id, as_of):
            # read every cycle: reading is what compacts its closed periods
            self.reads += 1
            return self.df

    source = Counted(df, guardrails=[{"metric": "revenue", "max_drop_pct": 5}])
    source.info = ExperimentInfo("e3", "random-days", "running", source.info.params, arms=3)

    class Verdicts:
        def __init__(self):
            self.published = []

        async def publish_verdict(self, experiment, verdict, as_of):
            self.published.append(experiment)

    sink, verdicts = Sink(), Verdicts()
    w = AnalysisWorker(
        source,
        sink,
        ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        guardrails=sink,
        verdicts=verdicts,
    )
    with caplog.at_level(logging.INFO, logger="pricelab"):
        first = await w.run_once()
        assert len(await w.run_once()) == len(first) > 0
    assert {r.arm for _, r in first} == {"t1", "t2"}
    assert verdicts.published == ["e3", "e3"]
    # both arms carry the harm: the first breached arm trips, at each look
    assert [(e, m, d["arm"]) for e, m, d in sink.trips] == [("e3", "revenue", "t1")] * 2
    assert source.reads == 2
    told = [r.getMessage() for r in caplog.records if "e3: 3 arms" in r.getMessage()]
    assert len(told) == 1 and "each guardrail is checked on each arm" in told[0]


class _Group:
    """The worker's shards in a group of workers (``core.ports.ShardOwnership``), which a test
    moves: ``lose()`` is a rebalance that gives every shard to another worker."""

    partitions = 2

    def __init__(self) -> None:
        self._owned: frozenset[int] | None = frozenset({0, 1})
        self._generation = 1

    def owned(self) -> frozenset[int] | None:
        return self._owned

    def generation(self) -> int:
        return self._generation

    def lose(self) -> None:
        self._owned, self._generation = frozenset(), self._generation + 1


class _NoParts:
    async def put(self, experiment, look, chunk, blob):
        raise AssertionError("an experiment below the chunked size stores no part")

    async def get(self, experiment, look, chunks):
        raise AssertionError("an experiment below the chunked size reads no part")


async def test_a_worker_that_loses_the_merge_during_a_look_stops_publishing_it(caplog):
    """Sharding on: the group rebalances after the look's first message went out (the sink
    moves the shards away as it takes it). The worker publishes nothing more of that look:
    the worker that merges the experiment now publishes it."""
    group = _Group()

    class Moving(Sink):
        async def publish(self, experiment, result, as_of, cs):
            await super().publish(experiment, result, as_of, cs)
            group.lose()

    alone, every = _worker(_cells(10.0))
    await alone.run_once()
    assert len(every.published) > 3  # what one look publishes, unsharded
    sink = Moving()
    w = AnalysisWorker(
        Source(_cells(10.0)), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        guardrails=sink, shards=group, partials=_NoParts(),
    )  # fmt: skip
    assert w._sharded is not None and w._sharded.merges("e1")
    with caplog.at_level("INFO", logger="pricelab.analysis"):
        out = await w.run_once()
    assert len(sink.published) == 1 and len(out) == 1
    assert "no longer merges it" in caplog.text
    # while it stays in charge, it publishes the whole look
    kept = Sink()
    w = AnalysisWorker(
        Source(_cells(10.0)), kept, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        guardrails=kept, shards=_Group(), partials=_NoParts(),
    )  # fmt: skip
    await w.run_once()
    assert len(kept.published) == len(every.published)


class _Told:
    """A worker's observer that keeps what the worker said it reports."""

    def __init__(self) -> None:
        self.said: list[frozenset[str]] = []

    def estimated(self, *a: object) -> None: ...

    def published(self, *a: object) -> None: ...

    def guardrail_tripped(self, *a: object) -> None: ...

    def cycle_done(self, *a: object) -> None: ...

    def reporting(self, experiments: frozenset[str]) -> None:
        self.said.append(experiments)

    def holding(self, *a: object) -> None: ...


async def test_the_worker_reports_only_the_experiments_it_publishes():
    """With sharding on, an experiment another worker of the group merges is not this
    worker's to report: the worker says so after its cycle, and its metrics drop the estimate
    age they kept of it (else that age grows and PricelabEstimateStale fires while the other
    worker publishes). Unsharded, every experiment it looked at is its own."""

    alone, _ = _worker(_cells(10.0))
    alone.observer = told = _Told()
    await alone.run_once()
    assert told.said == [frozenset({"e1"})]
    group = _Group()
    w = AnalysisWorker(
        Source(_cells(10.0)), Sink(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        shards=group, partials=_NoParts(),
    )  # fmt: skip
    w.observer = told = _Told()
    await w.run_once()
    group.lose()  # the group gives its shards, the merge of e1 with them, to another worker
    await w.run_once()
    assert told.said == [frozenset({"e1"}), frozenset()]
    # out of the group (a rebalance, the broker away), it cannot tell which experiments are
    # its own: it says nothing, and the ages it exports stay (and grow, for the alert)
    group._owned = None
    await w.run_once()
    assert told.said == [frozenset({"e1"}), frozenset()]


async def test_two_workers_of_a_split_group_report_each_the_experiments_it_publishes():
    """Two experiments, two workers, each owning one of the group's two shards: each worker
    reports exactly the experiments whose estimates it published, and between them every
    experiment once."""
    from analysis.sharded import merging_shard

    ids = ["e1"] + [f"e{i}" for i in range(2, 50)]
    other = next(i for i in ids[1:] if merging_shard(i, 2) != merging_shard("e1", 2))

    class Two(Source):
        async def experiments(self):
            return [self.info, ExperimentInfo(other, "random-days", "running", self.info.params)]

    told: list[frozenset[str]] = []
    for shard in (0, 1):
        group = _Group()
        group._owned = frozenset({shard})
        sink = Sink()
        w = AnalysisWorker(
            Two(_cells(10.0)), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
            shards=group, partials=_NoParts(),
        )  # fmt: skip
        w.observer = obs = _Told()
        await w.run_once()
        assert len(obs.said) == 1
        assert obs.said[0] == {e for e, *_ in sink.published}
        told.append(obs.said[0])
    assert len(told[0]) == len(told[1]) == 1
    assert told[0] | told[1] == {"e1", other}


async def test_arms_not_estimable_yet_are_said_once_until_the_reason_changes(caplog):
    """A time-bound ladder has only its control arm for its first half: the worker says why
    its arms are not estimable once, not at every look, and again once they are and stop
    being."""
    import logging

    df = _cells(-30.0, seed=1)
    df["arm"] = "c"  # every cell in the control arm: nothing to compare
    source = Source(df)
    source.info = ExperimentInfo("e3", "time-bound", "running", source.info.params, arms=3)
    w = AnalysisWorker(source, Sink(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))

    def said() -> int:
        return sum("arms not estimable yet" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="pricelab"):
        for _ in range(3):
            await w.run_once()
        assert said() == 1
        rng = np.random.default_rng(3)
        both = _cells(-30.0, seed=1)
        both["arm"] = np.where(both["treated"] == 1, rng.choice(["t1", "t2"], size=len(both)), "c")
        source.df = both
        assert await w.run_once()  # the arms are estimable now: nothing said
        assert said() == 1
        source.df = df
        await w.run_once()
        assert said() == 2
