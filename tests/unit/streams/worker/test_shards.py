"""The analysis workers' shard group (streams/worker/shards.py): its names follow the app id,
and with sharding on the analysis role's Kafka grants include its topic and group."""

from __future__ import annotations

from controller.settings import AnalysisSettings, Settings
from streams.cli.kafka_acl import kafka_roles
from streams.worker.shards import KafkaShardMembership, shard_group, shard_topic


def _analysis_grants(settings: Settings) -> dict[str, set[str]]:
    role = next(r for r in kafka_roles(settings) if r.name == "analysis")
    return {f"{kind}:{name}": set(ops) for kind, name, ops in role.grants()}


def test_the_shard_topic_and_group_follow_the_app_id() -> None:
    s = Settings(app_id="shop7", clock="wall", analysis=AnalysisSettings(shards=4))
    assert shard_topic(s) == "shop7.analysis-shards"
    assert shard_group(s) == "shop7-analysis-shards"
    m = KafkaShardMembership(s)
    assert m.partitions == 4 and m.owned() is None and m.generation() == 0


def test_the_analysis_role_may_join_the_shard_group_only_when_sharding_is_on() -> None:
    off = _analysis_grants(Settings(app_id="acl", clock="wall"))
    assert not any("analysis-shards" in k for k in off)
    on = _analysis_grants(Settings(app_id="acl", clock="wall", analysis=AnalysisSettings(shards=2)))
    assert on["topic:acl.analysis-shards"] == {"Create", "Read"}
    assert on["group:acl-analysis-shards"] == {"Read"}
    assert {k: v for k, v in on.items() if "analysis-shards" not in k} == off
