"""`pricelab acl --kafka`: each role's topics and groups as kafka-acls.sh commands, generated
from the topics the roles open (streams/cli/kafka_acl.py), and the table in docs/operations.md.

Kafka's authoriser itself cannot be exercised here (the embedded broker has none); what is
checked is that the table is the code's: the workers' reads and groups are read off the apps
they build, their writes are what their real sink and handler code sends through the role's
publisher, and the CLI modules' declarations are what those modules name."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

import streams.worker.runtime as runtime_module
from analysis.results import EstimateResult
from controller.designs import Assignment
from controller.settings import Settings, TopicSettings
from controller.spec import Arm
from controller.store.experiments import ExperimentStore
from streams.cli import main
from streams.cli.kafka_acl import (
    DOC_END,
    DOC_START,
    doc_block,
    kafka_acl_commands,
    kafka_roles,
    operator_modules,
)
from streams.worker.app import build_app
from streams.worker.handlers import RawEvent
from streams.worker.kafka import JsonPublisher, UndeclaredTopic
from streams.worker.runtime import WRITES, Runtime

ROOT = Path(__file__).resolve().parents[4]
OPERATIONS = ROOT / "docs" / "operations.md"
FIELDS = set(TopicSettings.model_fields)


def _settings(**kw: Any) -> Settings:
    topics = TopicSettings(**{f: f"x.{f}" for f in FIELDS})
    return Settings(topics=topics, app_id="acl", clock="wall", **kw)


def test_the_table_in_operations_md_is_the_generated_one() -> None:
    text = OPERATIONS.read_text()
    start = text.index(DOC_START)
    end = text.index(DOC_END) + len(DOC_END)
    assert text[start:end] == doc_block(Settings.model_construct()), (
        "regenerate: python -m streams.cli.kafka_acl docs/operations.md"
    )


def test_pricelab_acl_kafka_prints_the_commands_without_any_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for role in ("CONTROLLER", "ANALYSIS", "OPERATOR"):
        monkeypatch.delenv(f"PRICELAB_ACL_PASSWORD_{role}", raising=False)
    monkeypatch.setenv("PRICELAB_TOPICS__SALES", "shop7.sales")
    monkeypatch.setenv("PRICELAB_APP_ID", "shop7")
    with pytest.raises(SystemExit) as done:
        main(["acl", "--kafka"])
    assert done.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out == kafka_acl_commands(Settings())
    commands = [shlex.split(line) for line in out if not line.startswith("#")]
    assert all(c[:2] == ["kafka-acls.sh", "--bootstrap-server"] and "--add" in c for c in commands)
    # the settings' names: a renamed topic and app id are what the ACLs name
    sales = {
        c[c.index("--allow-principal") + 1]: c[c.index("--operation") : -2]
        for c in commands
        if c[-2:] == ["--topic", "shop7.sales"]
    }
    assert sales == {
        "User:pricelab-controller": ["--operation", "Read"],
        "User:pricelab-operator": ["--operation", "Write"],  # dead-letters --replay
        "User:pricelab-admin": ["--operation", "Create", "--operation", "Describe"],
    }
    groups = {c[-1] for c in commands if c[-2] == "--group"}
    assert groups == {"shop7-controller", "shop7-controller-sales", "shop7-controller-competitor",
                      "shop7-analysis"}  # fmt: skip


def _grants(role_name: str, settings: Settings) -> dict[str, set[str]]:
    role = next(r for r in kafka_roles(settings) if r.name == role_name)
    return {f"{kind}:{name}": set(ops) for kind, name, ops in role.grants()}


def test_the_controller_reads_what_its_consumers_subscribe_and_joins_their_groups() -> None:
    s = _settings()
    g = _grants("controller", s)
    reads = {k for k, ops in g.items() if k.startswith("topic:") and "Read" in ops}
    # faust's command agent, the two batch consumers, and faust's own leader topic
    assert reads == {
        "topic:x.commands",
        "topic:x.sales",
        "topic:x.competitor_prices",
        "topic:acl-controller-__assignor-__leader",
    }
    assert g["topic:acl-controller-__assignor-__leader"] == {"Create", "Read"}
    assert {k for k in g if k.startswith("group:")} == {
        "group:acl-controller",
        "group:acl-controller-sales",
        "group:acl-controller-competitor",
    }
    assert all(ops == {"Read"} for k, ops in g.items() if k.startswith("group:"))


def test_the_analysis_worker_reads_nothing_of_pricelab_and_writes_no_assignment() -> None:
    g = _grants("analysis", _settings())
    assert g == {
        "topic:acl-analysis-__assignor-__leader": {"Create", "Read"},
        "topic:x.estimates": {"Write"},
        "topic:x.commands": {"Write"},  # a tripped guardrail's stop
        "topic:x.experiment_events": {"Write"},
        "group:acl-analysis": {"Read"},
    }


async def test_no_role_needs_idempotent_write_or_a_cluster_permission() -> None:
    lines = kafka_acl_commands(_settings())
    assert not any("IdempotentWrite" in line or "--cluster" in line for line in lines)
    # aiokafka gives an idempotent or transactional producer a transaction manager
    assert JsonPublisher(_settings())._producer._txn_manager is None  # noqa: SLF001
    app, _ = build_app(_settings(), {"controller", "analysis"})
    assert app.conf.processing_guarantee.value == "at_least_once"  # faust: no transactions


def test_only_the_admin_role_creates_pricelab_topics() -> None:
    s = _settings()
    for role in kafka_roles(s):
        made = {t for t in role.creates if t.startswith("x.")}
        assert made == (set(s.topics.all()) if role.name == "admin" else set()), role.name


# ------------------------------------------------------------------ what the workers write
class RecordingPublisher(JsonPublisher):
    """The role's real publisher (its topic check included), recording instead of sending."""

    written: list[str] = []

    async def start(self) -> None:
        pass

    async def send(self, topic: str, msg: BaseModel | bytes, key: str | None = None) -> None:
        self._check(topic)
        RecordingPublisher.written.append(topic)

    async def prime_partitions(self, topic: str, keys: Any) -> None:
        self._check(topic)

    async def send_keyed_many(self, topic: str, items: Any) -> int:
        self._check(topic)
        RecordingPublisher.written.append(topic)
        return len(list(items))

    async def send_templated(self, topic: str, keys: Any, codes: Any, templates: Any) -> int:
        self._check(topic)
        RecordingPublisher.written.append(topic)
        return len(keys)

    async def flush(self) -> None:
        pass


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    RecordingPublisher.written = []
    monkeypatch.setattr(runtime_module, "JsonPublisher", RecordingPublisher)
    # a command takes its place in the audit trail from Redis on receipt; no Redis here: the
    # test is about the topics a role writes
    places = iter(range(1, 1_000))

    async def next_trail(self: Any, n: int = 1) -> int:
        return next(places)

    monkeypatch.setattr(ExperimentStore, "next_trail", next_trail)
    return RecordingPublisher.written


def _written_names(settings: Settings, topics: list[str]) -> set[str]:
    by_name = {getattr(settings.topics, f): f for f in FIELDS}
    return {by_name[t] for t in topics}


async def _controller_paths(rt: Runtime) -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    a = Assignment("e1", "P1", 0, Arm.TREATMENT, 0.5, "cut", at, at)
    await rt.assignment_sink.publish_assignments([a], 1, "running")  # flips, triggers
    await rt.assignment_sink.publish_event("e1", "flipped", at, {})
    stop = json.dumps({"command_id": "c1", "kind": "stop", "experiment": "e1"}).encode()
    await rt.commands.handle(RawEvent(stop, 0, 0))  # refused (no reason): reply and trail
    await rt.commands.handle(RawEvent(b"{not json", 0, 1))  # dead-lettered


async def _analysis_paths(rt: Runtime) -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    est = EstimateResult("dm", 1.0, 0.5, n_units=10, n_periods=3, metric="units")
    await rt.estimate_sink.publish("e1", est, at, None)
    await rt.analysis.guardrails.trip("e1", "units", {"max_drop_pct": 5})  # type: ignore[union-attr]


@pytest.mark.parametrize("role", sorted(WRITES))
async def test_a_worker_role_writes_exactly_its_declared_topics(
    role: str, recording: list[str]
) -> None:
    s = _settings()
    rt = await Runtime(s, roles={role}).ensure_started()
    paths = {"controller": _controller_paths, "analysis": _analysis_paths}
    await paths[role](rt)
    assert _written_names(s, recording) == set(WRITES[role])
    granted = {k.removeprefix("topic:") for k, ops in _grants(role, s).items() if "Write" in ops}
    assert granted == {getattr(s.topics, f) for f in WRITES[role]}
    # and the other role's paths are refused by this role's publisher, as its ACLs would
    other = next(r for r in WRITES if r != role)
    with pytest.raises(UndeclaredTopic, match="is not among the topics this role writes"):
        await paths[other](rt)


# ------------------------------------------------------------------------ the operator's CLI
def _topic_uses(module: ModuleType) -> tuple[set[str], set[str]]:
    """(read, written) ``TopicSettings`` fields a module names: a ``<...>.topics.<field>``
    given first to a ``send`` call is written, any other is read."""
    tree = ast.parse(inspect.getsource(module))
    written: set[str] = set()
    every: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "topics"
            and node.attr in FIELDS
        ):
            every.add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("send")
            and node.args
            and isinstance(node.args[0], ast.Attribute)
            and node.args[0].attr in FIELDS
        ):
            written.add(node.args[0].attr)
    return every - written, written


@pytest.mark.parametrize("module", operator_modules(), ids=lambda m: m.__name__)
def test_each_cli_module_declares_exactly_the_topics_it_names(module: ModuleType) -> None:
    reads, writes = _topic_uses(module)
    assert reads == set(module.KAFKA_READS)
    assert writes == set(module.KAFKA_WRITES)


def test_the_operator_is_granted_what_its_modules_declare_and_no_group() -> None:
    s = _settings()
    g = _grants("operator", s)
    assert g == {
        "topic:x.commands": {"Write"},
        "topic:x.command_replies": {"Read"},
        "topic:x.estimates": {"Read"},
        "topic:x.experiment_events": {"Read"},
        "topic:x.dead_letter": {"Read"},
        "topic:x.sales": {"Write"},  # dead-letters --replay
    }


#: the modules that open Kafka and are not in the table, and why
NOT_ROLES = {
    "streams/live/driver.py": "the lab's driver (demo, simulate --live): plays the outside world",
    "streams/live/demo.py": "the demo: creates the topics on its own embedded broker",
    "streams/live/coverage.py": "the live coverage study: creates its topics on its own embedded broker",
    "streams/live/coverage_adaptive.py": "the live study of adaptive ladders: creates its "
    "topics on its own embedded broker",
    "streams/cli/stack.py": "`up` and `topics` create the topics: the admin role",
    "streams/worker/kafka.py": "the clients themselves",
    "streams/worker/consumer.py": "the workers' batch consumers (read off the built app)",
    "streams/worker/app.py": "the worker (read off the built app)",
    "streams/worker/runtime.py": "the worker's publisher (WRITES)",
    "streams/worker/shards.py": "the analysis workers' shard group (worker_role, when it is on)",
    "streams/client/reading.py": "a client's own reader: the topic is its caller's, and each "
    "caller (streams.client.history, streams.client.events) declares it",
    "streams/client/follower.py": "the followers' skeleton: the topic is its subclass's, and "
    "each subclass's module (streams.client.history, streams.client.letter_follower) declares it",
}
#: what opening Kafka looks like in a module's text; a TopicFollower subclass opens it
#: through the skeleton (streams.client.follower)
OPENS = ("AIOKafkaConsumer(", "AIOKafkaProducer(", "AIOKafkaAdminClient(", "JsonPublisher(",
         "AIOKafkaClient(", "ensure_topics(", "ensure_and_describe_topics(",
         "(TopicFollower)")  # fmt: skip


def test_every_module_that_opens_kafka_is_a_role_in_the_table_or_said_not_to_be() -> None:
    declared = {str(Path(inspect.getfile(m)).relative_to(ROOT)) for m in operator_modules()}
    opening = set()
    for path in [*ROOT.glob("streams/**/*.py"), *ROOT.glob("controller/**/*.py"),
                 *ROOT.glob("analysis/**/*.py"), *ROOT.glob("lab/*.py")]:  # fmt: skip
        if any(o in path.read_text() for o in OPENS):
            opening.add(str(path.relative_to(ROOT)))
    # the console's client modules are its role's (console_role); one may open Kafka only
    # through another's reader (streams.client.health: the dead-letter reader)
    from streams.console import KAFKA_CLIENTS

    console = {
        str(Path(inspect.getfile(importlib.import_module(m))).relative_to(ROOT))
        for m in KAFKA_CLIENTS
    }
    assert opening - declared - console - set(NOT_ROLES) == set()
    assert declared <= opening
