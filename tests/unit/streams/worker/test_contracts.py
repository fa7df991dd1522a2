"""docs/contracts: generated, current, valid JSON Schema, and versioned."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from analysis.elasticity import within_product_elasticity
from analysis.results import EstimateResult, published_fields
from controller.settings import Settings, TopicSettings
from lab.compare import elasticity_experiment
from streams.worker.contracts import (
    TOPICS,
    breaking_changes,
    frozen_name,
    json_schema,
    model_schema,
    render,
    version_of,
)
from streams.worker.kafka import topic_configs
from streams.worker.schemas import AssignmentMessage, EstimateMessage

ROOT = Path(__file__).resolve().parents[4]
CONTRACTS = ROOT / "docs" / "contracts"


def test_the_committed_contracts_are_the_generated_ones() -> None:
    for name, text in render(Settings()).items():
        committed = CONTRACTS / name
        assert committed.exists(), f"{name} missing: run pricelab contracts --out docs/contracts"
        assert committed.read_text() == text, (
            f"docs/contracts/{name} is stale: a model changed; run "
            "`pricelab contracts --out docs/contracts` (and bump v if the change breaks readers)"
        )


def test_every_current_schema_keeps_what_its_versions_frozen_schema_promised() -> None:
    for c in TOPICS:
        schema = json_schema(c)
        frozen = CONTRACTS / frozen_name(c, schema)
        assert frozen.exists(), (
            f"{frozen.name}: a new v needs its frozen schema (pricelab contracts)"
        )
        assert breaking_changes(json.loads(frozen.read_text()), schema) == [], c.field


def test_a_breaking_change_is_caught_and_an_optional_addition_is_not() -> None:
    old = json_schema(TOPICS[4])  # assignments
    added = json.loads(json.dumps(old))
    added["properties"]["note"] = {"type": "string", "default": None}
    assert breaking_changes(old, added) == []
    removed = json.loads(json.dumps(old))
    del removed["properties"]["seq"]
    assert breaking_changes(old, removed) == ["property 'seq' was removed"]
    retyped = json.loads(json.dumps(old))
    retyped["properties"]["seq"] = {"type": "string"}
    assert breaking_changes(old, retyped) == ["property 'seq' changed its shape"]
    required = json.loads(json.dumps(old))
    required["required"] = [*old["required"], "status"]
    assert breaking_changes(old, required) == ["property 'status' became required"]
    # the conditions beside the properties count too; prose does not
    estimates = json_schema(TOPICS[5])
    looser = json.loads(json.dumps(estimates))
    looser["else"] = {}
    assert breaking_changes(estimates, looser) == ["'else' changed"]
    reworded = json.loads(json.dumps(estimates))
    reworded["description"] = "other words"
    assert breaking_changes(estimates, reworded) == []


def test_the_schemas_are_valid_and_accept_what_pricelab_publishes() -> None:
    for c in TOPICS:
        jsonschema.Draft202012Validator.check_schema(json_schema(c))
    estimates = jsonschema.Draft202012Validator(json_schema(TOPICS[5]))
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def message(result: object) -> dict[str, object]:
        fields = published_fields(result, None)
        keep = {k: v for k, v in fields.items() if k in EstimateMessage.model_fields}
        return json.loads(EstimateMessage(experiment="e1", as_of=at, **keep).model_dump_json())

    ok = message(EstimateResult("fe", 1.5, 0.4, n_units=10, n_periods=5, metric="revenue", df=9.0))
    estimates.validate(ok)
    x = elasticity_experiment(1, price_change=0.0)
    not_identified = message(within_product_elasticity(x.units, x.revenue.Y))
    estimates.validate(not_identified)
    # what the model refuses, the schema refuses too
    with pytest.raises(jsonschema.ValidationError):
        estimates.validate(not_identified | {"identified": True})
    with pytest.raises(jsonschema.ValidationError):
        estimates.validate(ok | {"metric": "margin"})
    assignment = AssignmentMessage(
        experiment="e1", product="P1", arm="control", policy="list", probability=0.5,
        period=3, period_start=at, period_end=at, blackout=False, seq=4,
    )  # fmt: skip
    jsonschema.Draft202012Validator(json_schema(TOPICS[4])).validate(
        json.loads(assignment.model_dump_json())
    )


def test_the_asyncapi_document_names_every_topic_with_its_key_schema_and_cleanup() -> None:
    doc = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    settings = Settings()
    assert doc["asyncapi"] == "3.0.0"
    configs = topic_configs(settings)
    assert {ch["address"] for ch in doc["channels"].values()} == set(configs)
    for c in TOPICS:
        ch = doc["channels"][c.field]
        topic = getattr(settings.topics, c.field)
        binding = ch["bindings"]["kafka"]["topicConfiguration"]
        assert binding["cleanup.policy"] == [configs[topic]["cleanup.policy"]]
        refs = list(ch["messages"].values())
        assert len(refs) == len(c.kinds())
        for ref, (stem, _, _) in zip(refs, c.kinds(), strict=True):
            msg = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            payload = CONTRACTS / msg["payload"]["$ref"]
            assert payload.name == f"{stem}.schema.json" and payload.exists()
            assert msg["bindings"]["kafka"]["key"]["description"] == c.key
        op = doc["operations"]
        assert any(o["channel"]["$ref"] == f"#/channels/{c.field}" for o in op.values())
    assert doc["channels"]["assignments"]["bindings"]["kafka"]["topicConfiguration"][
        "cleanup.policy"
    ] == ["compact"]
    assert version_of(json_schema(TOPICS[5])) == 2


def test_the_broker_validates_the_output_topics_with_their_contracts_under_their_names() -> None:
    """Tansu's registry files (streams.worker.contracts.broker_schemas): one per output topic, named
    after the topic as the settings name it, whose value schema is the topic's contract as in
    docs/contracts; none for an input topic, and no key schema (the keys are plain ids)."""
    from streams.worker.contracts import broker_schemas

    settings = Settings(topics=TopicSettings(assignments="shop7.assignments"))
    docs = broker_schemas(settings)
    assert set(docs) == {
        "shop7.assignments.json", "pricelab.estimates.json", "pricelab.command-replies.json",
        "pricelab.experiment-events.json",
    }  # fmt: skip
    for name, doc in docs.items():
        slug = name.removesuffix(".json").split(".", 1)[1]
        assert set(doc["properties"]) == {"value"}
        on_disk = json.loads((ROOT / "docs" / "contracts" / f"{slug}.schema.json").read_text())
        value = doc["properties"]["value"]
        if slug == "estimates":  # estimates, verdicts, demand curves: exactly one of them
            kinds = [
                json.loads((ROOT / "docs" / "contracts" / f"estimates-{k}.schema.json").read_text())
                for k in ("verdict", "demand", "adaptive")
            ]
            assert value["oneOf"] == [on_disk, *kinds]
        else:
            assert value == on_disk


def _verdict(**over: object) -> dict[str, object]:
    from streams.worker.schemas import VerdictMessage

    fields: dict[str, object] = {
        "experiment": "e1", "as_of": datetime(2026, 1, 1, tzinfo=UTC), "verdict": "keep_running",
        "metric": "profit", "estimator": "fe", "rule": "r", "reason": "profit +1.0% [-2.0%, +4.0%]",
        "effect": 3.0, "cs_low": -6.0, "cs_high": 12.0, "n_units": 40, "n_periods": 7,
        "guardrails": [{"metric": "units", "max_drop_pct": 2.0, "status": "open"}],
        "mde_pct": 2.0, "more_days": 9.0,
    }  # fmt: skip
    return json.loads(VerdictMessage(**(fields | over)).model_dump_json())  # type: ignore[arg-type]


def test_the_estimates_topic_takes_a_verdict_or_an_estimate_and_nothing_in_between() -> None:
    """The broker's schema of the estimates topic (oneOf its two kinds) accepts a verdict as
    the worker publishes it and an estimate, and refuses a verdict with an unknown word, a
    negative ``more_days``, or an estimate's field mixed in."""
    from streams.worker.contracts import topic_schema

    (estimates,) = [c for c in TOPICS if c.field == "estimates"]
    topic = jsonschema.Draft202012Validator(topic_schema(estimates))
    verdict = _verdict()
    topic.validate(verdict)
    assert verdict["kind"] == "verdict"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    result = EstimateResult("fe", 1.5, 0.4, n_units=10, n_periods=5, metric="profit")
    fields = published_fields(result, None)
    keep = {k: v for k, v in fields.items() if k in EstimateMessage.model_fields}
    topic.validate(json.loads(EstimateMessage(experiment="e1", as_of=at, **keep).model_dump_json()))
    for bad in (
        verdict | {"verdict": "launch"},
        verdict | {"more_days": -1.0},
        verdict | {"se": 0.4},
        {k: v for k, v in verdict.items() if k != "reason"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            topic.validate(bad)


async def test_a_demand_curve_as_the_sink_writes_it_is_valid_on_the_estimates_topic() -> None:
    """The Kafka sink's ``kind: demand`` message of a fitted ladder (analysis.demand) is valid
    as exactly one kind of the estimates topic; one with an estimate's field or without its
    points is not."""
    import numpy as np

    from analysis.demand import ArmTotals, fit_demand
    from streams.worker.contracts import topic_schema
    from streams.worker.sinks import KafkaEstimateSink

    class Capture:
        def __init__(self) -> None:
            self.sent: list[tuple[str, object, str]] = []

        async def send(self, topic: str, msg: object, key: str) -> None:
            self.sent.append((topic, msg, key))

        async def flush(self) -> None:
            pass

    rng = np.random.default_rng(0)
    ratios = np.array([1.0, 0.9, 0.95, 1.05])
    n = rng.integers(3, 9, (30, 4)).astype(float)
    units = rng.poisson(n * 5.0 * ratios**-2.0).astype(float)
    revenue = units * 10.0 * ratios
    doc = fit_demand(ArmTotals(("list", "p90", "p95", "p105"), ratios, n, units, revenue,
                               units * 4.8)).to_dict()  # fmt: skip
    capture = Capture()
    sink = KafkaEstimateSink(capture, Settings())  # type: ignore[arg-type]
    await sink.publish_demand("e1", doc, datetime(2026, 1, 1, tzinfo=UTC))
    ((topic_name, msg, key),) = capture.sent
    assert (topic_name, key) == (Settings().topics.estimates, "e1")
    wire = json.loads(msg.model_dump_json())  # type: ignore[attr-defined]
    (estimates,) = [c for c in TOPICS if c.field == "estimates"]
    topic = jsonschema.Draft202012Validator(topic_schema(estimates))
    topic.validate(wire)
    assert wire["kind"] == "demand" and wire["optimal_price_ratio"] == doc["optimal_price_ratio"]
    for bad in (wire | {"se": 0.4}, {k: v for k, v in wire.items() if k != "points"}):
        with pytest.raises(jsonschema.ValidationError):
            topic.validate(bad)


def test_every_message_kind_keeps_what_its_versions_frozen_schema_promised() -> None:
    """The estimates topic carries verdicts and demand curves beside its estimates, each a
    message of its own with its own v and frozen schema; the check above reads each topic's
    primary message alone, so a verdict's new word went out as v1, which a v1 reader
    (``verdict`` one of ship, do_not_ship, keep_running) refuses."""
    for c in TOPICS:
        for stem, model, _ in c.kinds():
            schema = model_schema(model, stem)
            frozen = CONTRACTS / frozen_name(stem, schema)
            assert frozen.exists(), f"{frozen.name}: a new v needs its frozen schema"
            assert breaking_changes(json.loads(frozen.read_text()), schema) == [], stem
