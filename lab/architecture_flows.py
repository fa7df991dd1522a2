"""The two data flows and the concept table of the map in docs/architecture.md, declared.

What a reader cannot compute from the imports: each step names the module and the functions a
sale or a command passes through, and the checks that tie it to the step before (an import, a
port the two sides share, a string in the code: a topic, a Redis key, a wiring line).
tests/unit/project/test_architecture_map.py holds every name and check against the code;
:mod:`lab.architecture` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Imports:
    """``importer`` imports ``imported`` (a module, or the package that re-exports it)."""

    importer: str
    imported: str


@dataclass(frozen=True)
class Mentions:
    """The file ``path`` holds ``text``: a topic, a Redis key, a wiring line."""

    path: str
    text: str


@dataclass(frozen=True)
class Implements:
    """``impl`` (``path:Class``) has every method of the port ``port`` (``path:Class``), and
    ``user`` imports the port's module."""

    port: str
    impl: str
    user: str


Check = Imports | Mentions | Implements


@dataclass(frozen=True)
class Step:
    via: str  # how it is reached from the step before: "called", "through the ... port", ...
    place: str  # a module's path, or a topic or a Redis key in words
    names: tuple[str, ...]  # the functions it passes through (``f`` or ``Class.method``)
    does: str
    checks: tuple[Check, ...] = ()


SALE = (
    Step(
        "",
        "streams/worker/consumer.py",
        ("BatchConsumer",),
        "reads the sales topic in fetched batches (the worker's `_sales_batch` in `streams/worker/app.py` hands each on); commits a batch's offsets only after it is in Redis",
    ),
    Step(
        "called",
        "streams/worker/handlers.py",
        ("SalesHandler.handle",),
        "decodes each sale (`decode_sale`), dead-letters what does not decode",
        (
            Imports("streams/worker/consumer.py", "streams/worker/handlers.py"),
            Mentions("streams/worker/app.py", "rt.sales.handle(batch)"),
        ),
    ),
    Step(
        "called",
        "controller/sales.py",
        ("SalesIngestor.process",),
        "routes each sale to its experiment and period (`RoutingTable.route`) and packs the batch",
        (Imports("streams/worker/handlers.py", "controller/sales.py"),),
    ),
    Step(
        "called",
        "controller/store/panel.py",
        ("PanelStore.ingest_packed",),
        "runs `lua/ingest.lua` once per experiment: classifies the sale, dedupes it by event id, adds it to its cell",
        (
            Imports("controller/sales.py", "controller/store/panel.py"),
            Mentions("controller/store/panel.py", '_script("ingest")'),
        ),
    ),
    Step(
        "written by the script",
        "Redis: the panel cells `exp:{id}:sums:{k}`",
        (),
        "four sums per product and period; compacted into `exp:{id}:col:{k}` once the period closes",
        (Mentions("controller/store/lua/ingest.lua", "base..':sums:'..k"),),
    ),
    Step(
        "reads Redis",
        "controller/panel_source.py",
        ("RedisPanelSource.panel",),
        "reads the cells back (`live_sums`, `compacted_periods`) as the long product x period table",
        (
            Imports("controller/panel_source.py", "controller/store/panel.py"),
            Mentions("controller/panel_source.py", "self.store.live_sums("),
        ),
    ),
    Step(
        "through the `PanelSource` port",
        "analysis/worker.py",
        ("AnalysisWorker.run_once", "fit_plan"),
        "fits the design's estimators and publishes each result object to its `EstimateSink`",
        (
            Implements(
                "core/ports.py:PanelSource",
                "controller/panel_source.py:RedisPanelSource",
                "analysis/worker.py",
            ),
            Mentions("streams/worker/runtime.py", "RedisPanelSource("),
        ),
    ),
    Step(
        "through the `EstimateSink` port",
        "streams/worker/sinks.py",
        ("KafkaEstimateSink.publish",),
        "writes it as an `EstimateMessage`, keyed by experiment",
        (
            Implements(
                "core/ports.py:EstimateSink",
                "streams/worker/sinks.py:KafkaEstimateSink",
                "analysis/worker.py",
            ),
            Mentions("streams/worker/runtime.py", "KafkaEstimateSink("),
        ),
    ),
    Step(
        "published",
        "the estimates topic",
        (),
        "where a pricing system, `pricelab estimates` and the report read it",
        (Mentions("streams/worker/sinks.py", "settings.topics.estimates"),),
    ),
)

COMMAND = (
    Step(
        "",
        "streams/cli/experiment.py",
        ("experiment_create", "_control"),
        "`pricelab experiment create|pause|resume|stop`",
    ),
    Step(
        "called",
        "streams/client/commands.py",
        ("send_command", "send_command_async"),
        "sends a `Command` and waits for its reply on the command-replies topic",
        (Imports("streams/cli/experiment.py", "streams/client/commands.py"),),
    ),
    Step(
        "published",
        "the commands topic",
        (),
        "keyed by experiment",
        (Mentions("streams/client/commands.py", "pub.send(settings.topics.commands, cmd"),),
    ),
    Step(
        "consumed",
        "streams/worker/control.py",
        ("CommandHandler.handle", "CommandHandler._apply"),
        "the worker's `commands` agent (`streams/worker/app.py`) hands each command here; refuses it or calls the flipper, then replies",
        (
            Mentions("streams/worker/app.py", "app.topic(t.commands"),
            Mentions("streams/worker/app.py", "rt.commands.handle("),
        ),
    ),
    Step(
        "called",
        "controller/flipper.py",
        ("Flipper.command", "Flipper._turn", "Flipper._carry_out"),
        "takes the experiment's turn, asks the lifecycle, carries out the rule's effects",
        (Imports("streams/worker/control.py", "controller/flipper.py"),),
    ),
    Step(
        "called by the flipper",
        "controller/lifecycle.py",
        ("decide",),
        "the rule for (phase, event): the next state, the window to open or close, the records to rewrite, what to publish",
        (Imports("controller/flipper.py", "controller/lifecycle.py"),),
    ),
    Step(
        "called by the flipper",
        "controller/in_force.py",
        ("period_records", "in_force"),
        "what is in force for each product: the design's draw with freezes and forced control laid over it",
        (Imports("controller/flipper.py", "controller/in_force.py"),),
    ),
    Step(
        "called by the flipper",
        "controller/store/flips.py",
        ("FlipStore.write_assignments", "FlipStore.decide"),
        "the period's records, then the decision in one script (`lua/decide.lua`: compare and set, next `seq`)",
        (
            Imports("controller/flipper.py", "controller/store/flips.py"),
            Mentions("controller/store/flips.py", '_script("decide")'),
        ),
    ),
    Step(
        "through the `AssignmentSink` port",
        "streams/worker/sinks.py",
        ("KafkaAssignmentSink.publish_assignments",),
        "every product's message of the decision, with its `seq`",
        (
            Implements(
                "controller/in_force.py:AssignmentSink",
                "streams/worker/sinks.py:KafkaAssignmentSink",
                "controller/flipper.py",
            ),
            Mentions("streams/worker/runtime.py", "KafkaAssignmentSink("),
        ),
    ),
    Step(
        "published",
        "the assignments topic",
        (),
        "keyed by product, which the pricing system applies",
        (Mentions("streams/worker/sinks.py", "self.topics.assignments"),),
    ),
)

FLOWS = {"A sale to an estimate": SALE, "A command to an assignment": COMMAND}

#: concept -> where it lives (paths from the checkout's root)
CONCEPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the spec an operator writes", ("controller/spec.py",)),
    (
        "designs (one module each) and their lookup",
        ("controller/designs/", "controller/design_registry.py"),
    ),
    ("periods", ("controller/periods.py",)),
    ("blackout windows and freezes", ("controller/blackout.py",)),
    (
        "triggers: rules, runner, state",
        ("controller/triggers.py", "controller/trigger_runner.py", "controller/store/triggers.py"),
    ),
    ("the lifecycle: states, events, rules and their effects", ("controller/lifecycle.py",)),
    (
        "drafts: specs saved, not launched",
        ("controller/drafts.py", "controller/store/drafts.py", "streams/client/drafts.py"),
    ),
    ("what is in force for a product", ("controller/in_force.py",)),
    (
        "status words (shared with the Lua scripts)",
        ("core/status.py", "controller/store/lua/"),
    ),
    (
        "the panel: cells in Redis, read back, validated",
        ("controller/store/panel.py", "controller/panel_source.py", "analysis/panel.py"),
    ),
    ("estimators and their registry", ("analysis/estimators/",)),
    (
        "inference and the result type",
        ("analysis/inference.py", "analysis/confseq.py", "analysis/results.py"),
    ),
    ("the verdict", ("analysis/verdict.py", "analysis/report/verdict.py")),
    ("the market simulator", ("lab/market.py", "lab/simulate.py")),
    ("the planner", ("lab/plan.py",)),
    ("the study harness and the studies", ("lab/studies/harness.py", "lab/studies/")),
    (
        "message contracts (JSON Schema, AsyncAPI)",
        ("streams/worker/schemas.py", "streams/worker/contracts.py", "docs/contracts/"),
    ),
    (
        "metrics: decision metrics, Prometheus metrics",
        ("analysis/metrics.py", "streams/worker/metrics.py"),
    ),
    ("the CLI", ("streams/cli/",)),
    ("the notebook API", ("pricelab/api.py",)),
    ("the error root and the ports", ("core/errors.py", "core/ports.py")),
)
