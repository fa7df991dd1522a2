"""Least privilege on Kafka: each role's topics and consumer groups, as ``kafka-acls.sh`` commands.

Nothing here is a list of topics. A worker role's reads and consumer groups are read off the
worker the role really builds (``streams.worker.app.build_app``): the topics of its faust agents,
faust's own leader topic (``<group>-__assignor-__leader``, which faust creates at its first
start and subscribes to) and the topics and groups of its batch consumers. Its writes are
``streams.worker.runtime.WRITES``, which its publisher enforces (a write elsewhere raises
``UndeclaredTopic``). The operator CLI's reads and writes are the ``KAFKA_READS`` and
``KAFKA_WRITES`` of the modules that open Kafka for it (checked against the topics each module
names by tests/unit/streams/cli/test_kafka_acl.py). Topic creation (``pricelab topics``) is a role of its
own, for the deployment; no worker creates a pricelab topic.

Operations, as Apache Kafka's authoriser checks them: a consumer needs ``Read`` on the topic
(``Describe``, for metadata and offsets, comes with it) and, with a group, ``Read`` on the group
(join, sync, heartbeat, offset commit and fetch); a producer needs ``Write`` on the topic. No
pricelab producer is idempotent or transactional (``enable_idempotence=False``; faust's
processing guarantee is at-least-once), so no role needs ``IdempotentWrite`` on the cluster.
The CLI's readers assign partitions themselves and commit nothing: no group.

Kafka ACL enforcement is not tested here: the embedded broker (Tansu) has no authoriser.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from types import ModuleType

from controller.settings import Settings

__all__ = ["KafkaRole", "kafka_acl_commands", "kafka_roles", "operator_modules"]

#: the principal of each role: the same names as its Redis user (controller/store/acl.py)
PRINCIPAL = "User:pricelab-{}"


@dataclass(frozen=True)
class KafkaRole:
    """What one role opens on Kafka: topic names (as settings name them) and group ids."""

    name: str
    #: the process that runs as this role
    runs: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    groups: tuple[str, ...] = ()
    #: topics it creates (``Create``; ``Describe`` comes with it for a topic it may not read)
    creates: tuple[str, ...] = ()

    @property
    def principal(self) -> str:
        return PRINCIPAL.format(self.name)

    def grants(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(resource type, name, operations)`` for every resource it touches, sorted."""
        ops: dict[tuple[str, str], set[str]] = {}
        for topic in self.reads:
            ops.setdefault(("topic", topic), set()).add("Read")
        for topic in self.writes:
            ops.setdefault(("topic", topic), set()).add("Write")
        for topic in self.creates:
            ops.setdefault(("topic", topic), set()).add("Create")
            if topic not in self.reads and topic not in self.writes:
                ops[("topic", topic)].add("Describe")  # what exists already (list, describe)
        for group in self.groups:
            ops.setdefault(("group", group), set()).add("Read")
        order = ("Create", "Describe", "Read", "Write")
        return [
            (kind, name, tuple(o for o in order if o in found))
            for (kind, name), found in sorted(ops.items(), key=lambda x: (x[0][0] != "topic", x[0]))
        ]


def worker_role(settings: Settings, role: str) -> KafkaRole:
    """A worker role (``controller`` or ``analysis``) as the worker builds it."""
    from streams.worker.app import build_app
    from streams.worker.runtime import WRITES

    app, rt = build_app(settings, {role})
    reads: set[str] = set()
    for agent in app.agents.values():
        reads.update(agent.channel.topics)  # type: ignore[attr-defined]  # a faust Topic
    groups = {app.conf.id}  # faust's consumer group
    creates: set[str] = set()
    if not app.conf.topic_disable_leader:
        leader = app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]  # noqa: SLF001
        reads.add(leader)
        creates.add(leader)
    for consumer in rt.consumers:
        reads.add(consumer.topic)
        groups.add(consumer.group_id)
    if role == "analysis" and settings.analysis.shards:
        # one experiment over several analysis workers: the shard topic's group (and the
        # first worker creates the topic: streams/worker/shards.py)
        from streams.worker.shards import shard_group, shard_topic

        reads.add(shard_topic(settings))
        creates.add(shard_topic(settings))
        groups.add(shard_group(settings))
    writes = {getattr(settings.topics, name) for name in WRITES[role]}
    return KafkaRole(
        role,
        f"pricelab worker --role {role}",
        tuple(sorted(reads)),
        tuple(sorted(writes)),
        tuple(sorted(groups)),
        tuple(sorted(creates)),
    )


def operator_modules() -> list[ModuleType]:
    """The modules that open Kafka for the operator's CLI, each declaring ``KAFKA_READS`` and
    ``KAFKA_WRITES``: ``experiment <command>``, ``experiment history``, ``estimates``,
    ``dead-letters`` (which replays sales)."""
    import streams.client.commands
    import streams.client.dead_letters
    import streams.client.estimates
    import streams.client.history

    return [
        streams.client.commands,
        streams.client.history,
        streams.client.estimates,
        streams.client.dead_letters,
    ]


def operator_role(settings: Settings) -> KafkaRole:
    reads: set[str] = set()
    writes: set[str] = set()
    for module in operator_modules():
        reads.update(getattr(settings.topics, n) for n in module.KAFKA_READS)
        writes.update(getattr(settings.topics, n) for n in module.KAFKA_WRITES)
    return KafkaRole(
        "operator",
        "pricelab experiment ..., experiment history, estimates, dead-letters",
        tuple(sorted(reads)),
        tuple(sorted(writes)),
    )


def console_role(settings: Settings) -> KafkaRole:
    """``pricelab console``: what the client modules it opens Kafka through declare
    (``streams.console.KAFKA_CLIENTS``)."""
    import importlib

    from streams.console import KAFKA_CLIENTS

    reads: set[str] = set()
    writes: set[str] = set()
    for name in KAFKA_CLIENTS:
        module = importlib.import_module(name)
        reads.update(getattr(settings.topics, n) for n in module.KAFKA_READS)
        writes.update(getattr(settings.topics, n) for n in module.KAFKA_WRITES)
    return KafkaRole("console", "pricelab console", tuple(sorted(reads)), tuple(sorted(writes)))


def admin_role(settings: Settings) -> KafkaRole:
    """``pricelab topics``: creates the topics that are missing (streams.worker.kafka.topic_configs)."""
    from streams.worker.kafka import topic_configs

    return KafkaRole("admin", "pricelab topics", (), (), (), tuple(sorted(topic_configs(settings))))


def kafka_roles(settings: Settings) -> list[KafkaRole]:
    return [
        worker_role(settings, "controller"),
        worker_role(settings, "analysis"),
        operator_role(settings),
        console_role(settings),
        admin_role(settings),
    ]


def kafka_acl_commands(settings: Settings) -> list[str]:
    """One ``kafka-acls.sh --add`` command per role and resource, a comment line per role."""
    lines: list[str] = []
    server = settings.kafka.bootstrap_servers
    for role in kafka_roles(settings):
        lines.append(f"# {role.principal}: {role.runs}")
        for kind, name, ops in role.grants():
            words = ["kafka-acls.sh", "--bootstrap-server", server, "--add"]
            words += ["--allow-principal", role.principal]
            for op in ops:
                words += ["--operation", op]
            words += [f"--{kind}", name]
            lines.append(shlex.join(words))
    return lines


def kafka_acl_table(settings: Settings) -> list[str]:
    """The roles as a Markdown table: topics read, written, created, and consumer groups."""

    def cell(names: tuple[str, ...]) -> str:
        return ", ".join(f"`{n}`" for n in names) or "-"

    rows = ["| principal | runs as | reads | writes | creates | groups |", "|---" * 6 + "|"]
    for r in kafka_roles(settings):
        rows.append(
            f"| `{r.principal}` | `{r.runs}` | {cell(r.reads)} | {cell(r.writes)} | "
            f"{cell(r.creates)} | {cell(r.groups)} |"
        )
    return rows


#: the markers of the generated block in docs/operations.md
#: (regenerate with ``python -m streams.cli.kafka_acl docs/operations.md``)
DOC_START = "<!-- kafka-acl -->"
DOC_END = "<!-- /kafka-acl -->"


def doc_block(settings: Settings) -> str:
    """The generated part of docs/operations.md, markers included (the doc shows the defaults:
    ``Settings.model_construct()``, which reads no environment)."""
    body = [*kafka_acl_table(settings), "", "```", *kafka_acl_commands(settings), "```"]
    return "\n".join([DOC_START, *body, DOC_END])


def write_doc(path: str) -> None:
    """Replace the block between the markers in ``path`` with :func:`doc_block`."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text()
    head, start, rest = text.partition(DOC_START)
    _, end, tail = rest.partition(DOC_END)
    if not start or not end:
        raise SystemExit(f"{path}: no {DOC_START!r} ... {DOC_END!r} block to replace")
    doc.write_text(head + doc_block(Settings.model_construct()) + tail)  # defaults, not the env


if __name__ == "__main__":
    import sys

    write_doc(sys.argv[1] if len(sys.argv) > 1 else "docs/operations.md")
