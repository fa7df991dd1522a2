"""Message contracts: a JSON Schema of every topic's message and an AsyncAPI 3 document.

Pricing systems and warehouse loaders read pricelab's topics with software of their own; the
contracts under ``docs/contracts/`` are what they code against, in the Kafka ecosystem's
conventions (Schema Registry loads JSON Schema; AsyncAPI describes the channels). Both are
generated from the wire models (``streams/worker/schemas.py``) and the topic table
(``streams.worker.kafka.topic_configs``) by ``pricelab contracts --out docs/contracts``; nothing is
written by hand, and ``tests/unit/streams/worker/test_contracts.py`` fails when a model changes and the files
are not regenerated.

Versions: every message carries ``v``. A change that could break a reader - a field removed
or retyped, a new required field - needs a new ``v``. The first schema of each version is kept
frozen under ``docs/contracts/frozen/`` (written once, never overwritten), and the test checks
that the current schema of that version still accepts what the frozen one described
(:func:`breaking_changes`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from controller.settings import Settings
from streams.worker.kafka import topic_configs
from streams.worker.schemas import (
    AdaptiveMessage,
    AssignmentMessage,
    Command,
    CommandReply,
    CompetitorPrice,
    DeadLetter,
    DemandMessage,
    EstimateMessage,
    ExperimentEvent,
    Sale,
    VerdictMessage,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://pricelab.dev/contracts/"


@dataclass(frozen=True)
class TopicContract:
    """One topic: its settings field (its name is configurable), the message model, what the
    key is, who writes it and who reads it."""

    field: str
    model: type[BaseModel]
    key: str
    producer: str
    consumers: str
    summary: str
    #: further message kinds on the same topic, as (name suffix, model, summary): each has its
    #: own schema file ``<topic>-<suffix>.schema.json``, and a message is valid when it is
    #: valid as exactly one kind (the estimates topic's verdicts)
    also: tuple[tuple[str, type[BaseModel], str], ...] = ()

    def kinds(self) -> list[tuple[str, type[BaseModel], str]]:
        """(schema file stem, model, summary) of every message kind on the topic."""
        return [(slug(self.field), self.model, self.summary)] + [
            (f"{slug(self.field)}-{suffix}", model, summary) for suffix, model, summary in self.also
        ]


TOPICS: tuple[TopicContract, ...] = (
    TopicContract(
        "competitor_prices", CompetitorPrice, "product id", "price monitoring (yours)",
        "controller (trigger runner)", "Competitor price observations.",
    ),
    TopicContract(
        "sales", Sale, "product id", "your order system", "controller (sales path)",
        "One sale per message, or a return (negative units); event_id dedupes "
        "redeliveries and replays.",
    ),
    TopicContract(
        "commands", Command, "experiment id (command id without one)", "operator CLI",
        "controller",
        "Operator commands: create, pause, resume, stop, freeze, unfreeze, decision, comment, "
        "draft, discard.",
    ),
    TopicContract(
        "command_replies", CommandReply, "command id", "controller", "operator CLI",
        "One reply per command: ok with the state after it, or one sentence.",
    ),
    TopicContract(
        "assignments", AssignmentMessage, "product id", "controller",
        "pricing systems (yours)",
        "The policy in force per product: the highest seq among messages whose period has "
        "begun (docs/operations.md, the assignment contract). Compacted.",
    ),
    TopicContract(
        "estimates", EstimateMessage, "experiment id", "analysis worker",
        "analysts, dashboards, warehouse loaders",
        "Running estimates: one per metric, estimator and segment at every look.",
        also=(("verdict", VerdictMessage,
               "The verdict of each look (kind: verdict): ship, do_not_ship, no_difference or "
               "keep_running "
               "on the decision metric (docs/decision.md)."),
              ("demand", DemandMessage,
               "A price ladder's demand and profit curves and the profit-maximising price "
               "(kind: demand; docs/pricing-methods.md)."),
              ("adaptive", AdaptiveMessage,
               "An adaptive price ladder's look (kind: adaptive): each arm's mean, the best "
               "set and the recorded probabilities per period (docs/adaptive.md).")),
    ),
    TopicContract(
        "experiment_events", ExperimentEvent, "experiment id", "controller",
        "audit, dashboards", "Lifecycle facts, one per change.",
    ),
    TopicContract(
        "dead_letter", DeadLetter, "none", "controller", "on-call",
        "Events that could not be decoded, with the reason and the original bytes.",
    ),
)  # fmt: skip


def slug(field: str) -> str:
    return field.replace("_", "-")


def json_schema(contract: TopicContract) -> dict[str, Any]:
    """The message's JSON Schema (draft 2020-12): what a valid message is (pydantic's
    validation schema of the wire model)."""
    return model_schema(contract.model, slug(contract.field))


def model_schema(model: type[BaseModel], stem: str) -> dict[str, Any]:
    """A wire model's JSON Schema, identified as ``<stem>.schema.json``."""
    schema = model.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{stem}.schema.json", **schema}


def topic_schema(contract: TopicContract) -> dict[str, Any]:
    """What a message on the topic must be: its one kind's schema, or exactly one of its
    kinds' (``oneOf``) where the topic carries several."""
    kinds = [model_schema(model, stem) for stem, model, _ in contract.kinds()]
    if len(kinds) == 1:
        return kinds[0]
    return {"$schema": SCHEMA_DIALECT, "oneOf": kinds}


#: the topics whose messages the embedded broker validates against their contracts: what
#: pricelab writes for others to read. The input topics (sales, competitor prices, commands)
#: are not: a malformed event there must reach the controller, which dead-letters it
BROKER_VALIDATED = ("assignments", "estimates", "command_replies", "experiment_events")


def broker_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """Tansu's schema registry files for :data:`BROKER_VALIDATED`, named ``<topic>.json`` after
    the topics as ``settings`` names them: the message's schema as the record *value*'s. No
    key schema: Tansu parses a key as JSON too, and pricelab's keys are plain ids
    (docs/broker.md)."""
    by_field = {c.field: c for c in TOPICS}
    return {
        f"{getattr(settings.topics, f)}.json": {
            "type": "object",
            "properties": {"value": topic_schema(by_field[f])},
        }
        for f in BROKER_VALIDATED
    }


def version_of(schema: Mapping[str, Any]) -> int:
    """The ``v`` a schema pins: its const, or the newest of its enum (a message that still
    reads the versions before it, as the sales message reads v1 sales by v2's rules)."""
    v = schema["properties"]["v"]
    return int(v.get("const", max(v.get("enum") or [v.get("default")])))


def asyncapi(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of pricelab's topics, under the default topic names."""
    configs = topic_configs(settings)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for c in TOPICS:
        topic = getattr(settings.topics, c.field)
        cfg = configs[topic]
        names = []
        for stem, model, summary in c.kinds():
            name = model.__name__
            names.append(name)
            messages[name] = {
                "name": name,
                "title": name,
                "summary": summary,
                "contentType": "application/json",
                "payload": {"$ref": f"./{stem}.schema.json"},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": c.key},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
        channels[c.field] = {
            "address": topic,
            "description": f"{c.summary} Written by {c.producer}; read by {c.consumers}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": settings.kafka.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [cfg["cleanup.policy"]],
                        "retention.ms": int(cfg["retention.ms"]),
                    },
                    "bindingVersion": "0.5.0",
                }
            },
        }
        # pricelab's own view: what it receives and what it sends
        mine = c.producer in ("controller", "analysis worker", "operator CLI")
        operations[f"{'send' if mine else 'receive'}_{c.field}"] = {
            "action": "send" if mine else "receive",
            "channel": {"$ref": f"#/channels/{c.field}"},
            "summary": f"{c.producer} -> {c.consumers}",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "pricelab",
            "version": "1",
            "description": "pricelab's Kafka topics, generated from streams/worker/schemas.py and "
            "streams.worker.kafka.topic_configs by `pricelab contracts`. Topic names are the defaults "
            "(PRICELAB_TOPICS__*); payloads are the JSON Schemas next to this file.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render(settings: Settings) -> dict[str, str]:
    """file name (under docs/contracts) -> its text, for every generated contract file."""
    files = {
        f"{stem}.schema.json": json.dumps(model_schema(model, stem), indent=2, sort_keys=True)
        + "\n"
        for c in TOPICS
        for stem, model, _ in c.kinds()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi(settings), sort_keys=False, width=100)
    return files


def frozen_name(c: TopicContract | str, schema: Mapping[str, Any]) -> str:
    stem = slug(c.field) if isinstance(c, TopicContract) else c
    return f"frozen/{stem}.v{version_of(schema)}.schema.json"


def write(out: Path, settings: Settings) -> list[Path]:
    """Write the contracts under ``out``; a version's first schema is frozen beside them
    (written when missing, never overwritten). Returns the files written."""
    written = []
    (out / "frozen").mkdir(parents=True, exist_ok=True)
    for name, text in render(settings).items():
        (out / name).write_text(text)
        written.append(out / name)
    for stem, model in ((stem, model) for c in TOPICS for stem, model, _ in c.kinds()):
        schema = model_schema(model, stem)
        frozen = out / frozen_name(stem, schema)
        if not frozen.exists():
            frozen.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            written.append(frozen)
    return written


_NOT_SHAPE = frozenset({"description", "title", "default", "examples"})


def _shape(node: Any) -> Any:
    """A schema without its prose and defaults: what a reader's parser depends on."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k not in _NOT_SHAPE}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What in ``new`` could break a reader or a writer of ``old`` (same ``v``): a property
    removed or changed in shape, a definition it uses changed, or a new required property.
    Adding an optional property is not breaking. One sentence each."""
    out = []
    old_p, new_p = old.get("properties", {}), new.get("properties", {})
    for name, schema in old_p.items():
        if name not in new_p:
            out.append(f"property {name!r} was removed")
        elif _shape(schema) != _shape(new_p[name]):
            out.append(f"property {name!r} changed its shape")
    for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
        out.append(f"property {name!r} became required")
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name, schema in old_defs.items():
        if name in new_defs and _shape(schema) != _shape(new_defs[name]):
            out.append(f"definition {name!r} changed its shape")
    if old.get("additionalProperties") != new.get("additionalProperties"):
        out.append("additionalProperties changed")
    # the conditions beside the properties (the estimates message's identified rule)
    for key in sorted((set(old) | set(new)) - _NOT_CONDITIONS):
        if _shape(old.get(key)) != _shape(new.get(key)):
            out.append(f"{key!r} changed")
    return out


_NOT_CONDITIONS = frozenset(
    {"properties", "required", "$defs", "additionalProperties", "$id", "$schema"} | _NOT_SHAPE
)
