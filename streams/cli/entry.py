"""The ``pricelab`` command line.

pricelab up                      start the embedded broker and Redis (loopback), create topics
pricelab topics                  create every topic (partitions, compaction, retention); idempotent
pricelab worker --role R ...     run a faust worker (controller, analysis)
pricelab demo                    the live demo on the embedded stack
pricelab experiment ...          create/list/show/pause/resume/stop/freeze (through the commands topic)
pricelab assignments PRODUCT     the assignment in force for a product
pricelab estimates EXPERIMENT    the latest estimates, from the estimates topic (--follow)
pricelab panel export EXP ...    the panel the analysis worker analyses, as CSV or Parquet
pricelab acl [--kafka]           the Redis (or Kafka) ACLs of the roles (controller, analysis, operator)
pricelab schedule / analyze / simulate / compare-designs / graph / report ...   offline tools

Every refusal reaches the operator as one sentence on stderr with exit status 2 (:func:`main`):
a bad spec or option, a missing file or column, a broker or Redis that does not answer. A
traceback means a bug.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer

from controller.settings import Settings, load_settings
from core.errors import PricelabError

_app = typer.Typer(
    name="pricelab",
    help="Event-driven controller for price experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
experiment_app = typer.Typer(help="Create and steer experiments (through the commands topic).")
_app.add_typer(experiment_app, name="experiment")
panel_app = typer.Typer(help="The sales panel the analysis worker analyses.")
_app.add_typer(panel_app, name="panel")


def _settings() -> Settings:
    return load_settings()


_AS = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Who is issuing the command (the audit trail): default PRICELAB_ACTOR, else the "
        "OS user at the host. Refused unless it is a name or name@host, and one of "
        "PRICELAB_ACTORS where that is set.",
    ),
]


def _actor(given: str | None, settings: Any) -> str:
    """The command's actor: ``--as``, else PRICELAB_ACTOR, else user@host; one sentence and exit
    2 when it is malformed or not one of the configured actors."""
    from streams.client.commands import default_actor
    from streams.worker.schemas import actor_refusal

    actor = given if given is not None else default_actor()
    refusal = actor_refusal(actor, settings.actors)
    if refusal is not None:
        _fail(("--as: " if given is not None else "") + refusal)
    return actor


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@_app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Broker port (0 = any free port).")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port (0 = any free port).")] = 6379,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="TLS on both, with a throw-away CA: Redis 7 serves it, the broker through "
            "stunnel (Tansu 0.6 cannot; docs/broker.md). Prints the client settings.",
        ),
    ] = False,
) -> None:
    """Start the embedded Kafka-protocol broker and Redis until Ctrl-C or SIGTERM."""
    from streams.live.embedded import EmbeddedStack
    from streams.worker.kafka import ensure_topics

    stack = EmbeddedStack(host=host, kafka_port=kafka_port, redis_port=redis_port, tls=tls)
    stack.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = stack.client_settings(_settings())
        stack.register_contracts(settings)  # the broker validates the output topics
        asyncio.run(ensure_topics(settings))
        typer.echo(f"kafka  {stack.bootstrap_servers}")
        typer.echo(f"redis  {stack.redis_url}")
        if stack.tls_files is not None:
            typer.echo(f"ca     {stack.tls_files.ca}")
        typer.echo("topics " + ", ".join(settings.topics.all()))
        typer.echo(
            "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in stack.client_env().items())
        )
        typer.echo("Ctrl-C stops both.")
        stop.wait()
    finally:
        stack.stop()
        typer.echo("stopped")


@_app.command()
def topics(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 30.0,
) -> None:
    """Create every pricelab topic that is missing: its partitions, compaction for the
    assignments, retention for the rest (PRICELAB_KAFKA__EVENT_RETENTION, __RECORD_RETENTION).
    Idempotent: run it before the workers, again whenever you like."""
    from streams.errors import services_answer
    from streams.worker.kafka import ensure_and_describe_topics, topic_configs

    settings = _settings()
    if timeout <= 0:
        _fail(f"--timeout must be positive, not {timeout}")

    async def go() -> tuple[list[str], dict[str, int]]:
        async with services_answer(
            bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
        ):
            return await ensure_and_describe_topics(settings, timeout)

    created, partitions = asyncio.run(go())
    wanted = settings.kafka.partitions
    fewer = []
    for name, configs in topic_configs(settings).items():
        if name in created:
            how = ", ".join(f"{k}={v}" for k, v in configs.items())
            typer.echo(f"created  {name}  ({partitions[name]} partitions; {how})")
        else:
            typer.echo(f"exists   {name}  ({partitions[name]} partitions; configuration kept)")
            if 0 < partitions[name] < wanted:
                fewer.append(name)
    if fewer:
        typer.echo(
            f"warning: {', '.join(fewer)} {'has' if len(fewer) == 1 else 'have'} fewer "
            f"partitions than PRICELAB_KAFKA__PARTITIONS={wanted}: no more workers than "
            "partitions share the load (Apache Kafka can add partitions with "
            "kafka-topics.sh --alter --partitions N)",
            err=True,
        )


@_app.command()
def worker(
    role: Annotated[list[str], typer.Option(help="controller and/or analysis")] = ["controller"],  # noqa: B006
) -> None:
    """Run a faust worker for the given roles (graceful shutdown on SIGTERM)."""
    from streams.worker.app import run_worker

    bad = set(role) - {"controller", "analysis"}
    if bad:
        raise typer.BadParameter(f"unknown role(s) {sorted(bad)}; use controller or analysis")
    settings = _settings()
    sys.argv = [sys.argv[0], "worker"]  # faust's own CLI parses argv
    run_worker(settings, set(role))


@_app.command()
def demo(
    products: Annotated[int, typer.Option(min=2, help="Products in the simulated market.")] = 200,
    days: Annotated[int, typer.Option(min=2, help="Length of the switchback in days.")] = 28,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the market and the design.")] = 7,
    external: Annotated[
        bool, typer.Option(help="Use the configured Kafka/Redis instead of the embedded stack.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Print only the final estimate.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Also write the analyst report of the run to this folder.")
    ] = None,
) -> None:
    """Run a 28-day switchback on a simulated market through the live pipeline."""
    from streams.live.demo import DemoConfig, run_demo

    ok = run_demo(
        _settings(),
        DemoConfig(
            products=products,
            days=days,
            seed=seed,
            external=external,
            quiet=quiet,
            report_dir=None if report is None else str(report),
        ),
    )
    raise typer.Exit(0 if ok else 1)


# ---------------------------------------------------------------------- experiments
@experiment_app.command("create")
def experiment_create(
    spec: Annotated[Path, typer.Argument(help="Experiment spec, YAML or JSON.")],
    graph: Annotated[
        Path | None,
        typer.Option(help="Substitutes graph (pricelab graph build); enables spillover estimates."),
    ] = None,
    backfill: Annotated[
        bool,
        typer.Option(
            "--backfill",
            help="Accept a start before now: the experiment begins in the period in force, and "
            "the boundaries before are recorded as a backfill (not as missed or late flips).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: _AS = None,
) -> None:
    """Validate SPEC (YAML/JSON) locally, then send a create command and wait for the reply.
    A start before now is refused unless --backfill is given."""
    settings = _settings()
    actor = _actor(as_, settings)
    from controller.spec import load_spec, load_spec_file
    from streams.client.commands import send_command

    parsed = load_spec_file(spec)
    if graph is not None:
        from analysis.graph import load_graph

        g = load_graph(graph)
        mine = set(parsed.all_products())
        edges = [
            (str(a), str(b), float(d.get("weight", 1.0)))
            for a, b, d in g.edges(data=True)
            if str(a) in mine and str(b) in mine
        ]
        parsed = load_spec(parsed.model_dump(mode="json") | {"substitutes": edges})
        typer.echo(f"embedded {len(edges)} substitute edges among the experiment's products")
    doc = parsed.model_dump(mode="json")
    _reply(
        send_command(settings, "create", spec=doc, backfill=backfill, timeout=timeout, actor=actor)
    )


def _control(kind: str):  # type: ignore[no-untyped-def]
    def cmd(
        experiment: Annotated[str, typer.Argument(help="Experiment id.")],
        reason: Annotated[
            str, typer.Option(help="Why (kept in the audit trail; required to pause or stop).")
        ] = "",
        timeout: Annotated[
            float, typer.Option(min=0.1, help="Seconds to wait for the reply.")
        ] = 60.0,
        as_: _AS = None,
    ) -> None:
        from streams.client.commands import send_command

        settings = _settings()
        actor = _actor(as_, settings)
        from controller.lifecycle import reason_missing

        if reason_missing(kind, reason):
            _fail(f"a {kind} needs --reason: why, for the experiment's audit trail")
        _reply(
            send_command(
                settings,
                kind,
                experiment=experiment,
                reason=reason.strip() or None,
                timeout=timeout,
                actor=actor,
            )
        )

    cmd.__doc__ = {
        "pause": "Pause an experiment (kill switch): every product back to the control policy "
        "at once, its data excluded, until resumed. Pausing a paused experiment does nothing.",
        "resume": "Resume a paused experiment: the design's assignments for the period in "
        "force (or a freeze's control policy) take over again.",
        "stop": "Stop an experiment for good (kill switch): every product back to the control "
        "policy and released. Stopped is final.",
    }[kind]
    return cmd


for _kind in ("pause", "resume", "stop"):
    experiment_app.command(_kind)(_control(_kind))


def _instant(text: str, option: str, now: Callable[[], datetime]) -> datetime:
    """An ISO 8601 date-time with a UTC offset, or one relative to the controller's clock:
    ``now``, ``+P3D``, ``-PT2H``, ``+3d``, ``-2h`` (``now`` is read only when asked for)."""
    from controller.durations import DURATION_FORMS, parse_duration

    if text == "now" or text[:1] in "+-":
        if text == "now":
            return now()
        try:
            delta = parse_duration(text[1:])
        except ValueError:
            _fail(
                f"{option}: {text!r} is not now, +DURATION or -DURATION, the duration in "
                f"{DURATION_FORMS} (e.g. +P3D, +3d, -2h)"
            )
        return now() + (delta if text[0] == "+" else -delta)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: {text!r} is not an ISO 8601 date-time (e.g. 2026-12-24T00:00:00+01:00)")
    if ts.tzinfo is None or ts.utcoffset() is None:
        _fail(f"{option}: {text!r} needs a UTC offset (e.g. 2026-12-24T00:00:00+01:00)")
    return ts


@experiment_app.command("freeze")
def experiment_freeze(
    start: Annotated[
        str,
        typer.Option(
            help="Start: ISO 8601 with a UTC offset, or relative to the controller's clock: "
            "now, +PT2H, -P1D (or +2h, -1d)."
        ),
    ],
    end: Annotated[
        str, typer.Option(help="End: ISO 8601 with a UTC offset, or now, +P3D ... (as --start).")
    ],
    experiment: Annotated[
        list[str] | None,
        typer.Option(help="An experiment to freeze (repeatable); every experiment when absent."),
    ] = None,
    reason: Annotated[
        str,
        typer.Option(help="Why (required: shown in blackout explanations and the audit trail)."),
    ] = "",
    freeze_id: Annotated[
        str | None, typer.Option("--id", help="Freeze id (default: a new one).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: _AS = None,
) -> None:
    """Freeze prices: from START to END every product of the experiments runs the control
    policy and its data is blacked out (a washout follows the return to the design)."""
    import hashlib

    from controller.blackout import load_freeze
    from controller.lifecycle import reason_missing
    from streams.client.commands import read_now, send_command

    settings = _settings()
    actor = _actor(as_, settings)
    if reason_missing("freeze", reason):
        _fail("a freeze needs --reason: why, for the experiment's audit trail")
    # the controller's clock, read once, and only if a relative time needs it
    now = functools.cache(lambda: read_now(settings))
    t0, t1 = _instant(start, "--start", now), _instant(end, "--end", now)
    doc: dict[str, Any] = {
        # by default the id follows from the freeze itself: the same command resent after a
        # timeout is the same freeze (done once), not a second one
        "id": freeze_id
        or "freeze-"
        + hashlib.sha256(
            json.dumps([t0.isoformat(), t1.isoformat(), sorted(experiment or []), reason]).encode()
        ).hexdigest()[:8],
        "start": t0.isoformat(),
        "end": t1.isoformat(),
        "experiments": list(experiment) if experiment else "all",
        "reason": reason,
    }
    load_freeze(doc)  # refused here, naming the field, before anything is sent
    _reply(send_command(settings, "freeze", freeze=doc, timeout=timeout, actor=actor))


@experiment_app.command("unfreeze")
def experiment_unfreeze(
    freeze_id: Annotated[str, typer.Argument(help="Freeze id (pricelab experiment freezes).")],
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    as_: _AS = None,
) -> None:
    """Cancel a freeze: one ahead is removed, one in force ends now (a washout follows the
    return to the design), one that is over is refused."""
    from streams.client.commands import send_command

    settings = _settings()
    actor = _actor(as_, settings)
    _reply(
        send_command(
            settings,
            "unfreeze",
            freeze_id=freeze_id,
            timeout=timeout,
            actor=actor,
            reason=reason.strip() or None,
        )
    )


@experiment_app.command("history")
def experiment_history(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The records as JSON.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to read the topic for.")] = 30.0,
) -> None:
    """The experiment's audit trail in time order: every command it was sent (accepted or
    refused, by whom, why) and every decision the controller took (flips, missed flips,
    freezes, guardrail trips: by which worker), read from the experiment-events topic as far
    as its retention keeps them."""
    from streams.client.history import read_trail, render

    trail = asyncio.run(read_trail(_settings(), experiment, timeout))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "experiment": experiment,
                    "log_start": {str(k): v for k, v in trail.log_start.items()},
                    "expired": trail.expired,
                    "repeats": trail.repeats,
                    "records": trail.records,
                },
                indent=2,
            )
        )
    else:
        typer.echo(render(trail))


@experiment_app.command("freezes")
def experiment_freezes(
    experiment: Annotated[
        str | None, typer.Argument(help="Only the freezes that apply to this experiment.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """List operator freezes: id, window, scope, reason, and whether each is ahead, in force
    or over by the controller's clock."""
    from streams.client.commands import read_freezes

    views = read_freezes(_settings(), experiment)
    if as_json:
        typer.echo(json.dumps(views, indent=2))
        return
    if not views:
        typer.echo("no freezes" + (f" apply to {experiment}" if experiment else ""))
        return
    for v in views:
        scope = v["experiments"] if v["experiments"] == "all" else ",".join(v["experiments"])
        typer.echo(
            f"{v['id']:<20} {v['now']:<9} {v['start']} .. {v['end']}  {scope}"
            + (f"  ({v['reason']})" if v["reason"] else "")
        )


@experiment_app.command("list")
def experiment_list() -> None:
    """List experiments: state (created, running, paused, stopped, ended; +frozen), the
    period in force and the seq of the decision in force."""
    from controller import status
    from streams.client.commands import read_experiments

    for st in read_experiments(_settings()):
        state = st["state"] + ("+frozen" if st["frozen"] and st["state"] == status.RUNNING else "")
        typer.echo(
            f"{st['id']:<24} {st['design']:<20} {state:<15} period {st['period']:>4}  "
            f"seq {st['seq']:>4}  products {st['products']}"
        )


@experiment_app.command("show")
def experiment_show(experiment: Annotated[str, typer.Argument(help="Experiment id.")]) -> None:
    """Show one experiment's state and spec as JSON."""
    from streams.client.commands import read_experiment

    typer.echo(json.dumps(read_experiment(_settings(), experiment), indent=2, default=str))


@_app.command()
def assignments(product: Annotated[str, typer.Argument(help="Product id.")]) -> None:
    """The message in force for PRODUCT: its experiment's state, the status and policy a
    pricing system applies, why (paused, frozen, washout until ..., stopped), and its seq."""
    from streams.client.commands import read_assignment

    doc = read_assignment(_settings(), product)
    if doc is None:
        typer.echo(f"{product} is in no experiment")
        raise typer.Exit(1)
    typer.echo(json.dumps(doc, indent=2, default=str))


@_app.command()
def estimates(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep printing new estimates until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    idle: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds of fetch answers without a new message that count as the end."
        ),
    ] = 2.0,
) -> None:
    """The latest verdict (ship, do not ship, keep running), then the latest estimate of each
    estimator (and each segment the spec names) of EXPERIMENT, read from the estimates topic.
    With --json, JSON lines: the verdict's first (``kind: verdict``)."""
    from streams.client.estimates import (
        all_estimates,
        is_verdict,
        latest_of,
        latest_verdict,
        render,
        render_verdict,
    )

    settings = _settings()

    def one(doc: dict[str, Any]) -> str:
        if is_verdict(doc) and not as_json:
            return render_verdict(doc)
        return render([doc], as_json)

    def shown(docs: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None] | None:
        latest = latest_of(docs)
        verdict = latest_verdict(docs)
        if not latest and verdict is None and not follow:
            typer.echo(f"no estimate of {experiment} on {settings.topics.estimates} yet", err=True)
            raise typer.Exit(1)
        if verdict is not None:
            typer.echo(render([verdict], True) if as_json else render_verdict(verdict) + "\n")
        elif latest and not as_json:
            typer.echo("no verdict published yet (the analysis worker publishes one per look)\n")
        if latest:
            typer.echo(render(list(latest.values()), as_json))
        return (lambda e: typer.echo(one(e))) if follow else None

    async def run() -> None:
        stop = asyncio.Event()
        if follow:  # Ctrl-C or SIGTERM ends a --follow quietly, with the consumer closed
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await all_estimates(settings, experiment, idle, then=shown, stop=stop)

    asyncio.run(run())


@_app.command()
def contracts(
    out: Annotated[
        Path, typer.Option(help="Directory for the JSON Schemas and asyncapi.yaml.")
    ] = Path("docs/contracts"),
) -> None:
    """Write the message contracts: a JSON Schema per topic and the AsyncAPI 3 document,
    generated from the wire models (a version's first schema is kept under frozen/)."""
    from streams.worker.contracts import write

    for path in write(out, _settings()):
        typer.echo(f"wrote {path}")


@_app.command()
def acl(
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Print the roles' Kafka ACLs instead, as kafka-acls.sh commands (no passwords).",
        ),
    ] = False,
) -> None:
    """Print the Redis ACL users, one `user ...` line per role (controller, analysis,
    operator), generated from the store's key names and its scripts' declared keys; each
    password is read from PRICELAB_ACL_PASSWORD_<ROLE> and written as its SHA-256. With
    --kafka: each role's topics and consumer groups as kafka-acls.sh commands, generated from
    the topics the workers and the CLI open (streams/cli/kafka_acl.py)."""
    from controller.errors import ConfigurationError
    from controller.store.acl import ROLES, acl_lines

    settings = _settings()
    if kafka:
        from streams.cli.kafka_acl import kafka_acl_commands

        for line in kafka_acl_commands(settings):
            typer.echo(line)
        return
    passwords: dict[str, str] = {}
    for role in ROLES:
        secret = getattr(settings, role.password_env.removeprefix("PRICELAB_").lower())
        if secret is None or not secret.get_secret_value():
            raise ConfigurationError(
                f"{role.password_env} is not set: give every role a password (never nopass)"
            )
        passwords[role.name] = secret.get_secret_value()
    for line in acl_lines(settings.key_prefix, passwords):
        typer.echo(line)


@panel_app.command("export")
def panel_export(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option("--out", help="File to write: .csv or .parquet.")],
) -> None:
    """Write exactly the panel the analysis worker analyses (completed periods), ready for
    `pricelab analyze`."""
    from streams.client.panel import export_panel

    settings = _settings()
    if out.suffix.lower() not in (".csv", ".parquet"):
        _fail(f"--out must end in .csv or .parquet, not {out.name!r}")
    n, periods = asyncio.run(export_panel(settings, experiment, out))
    typer.echo(f"wrote {n} cells ({periods} completed periods) of {experiment} to {out}")
    typer.echo(
        f"analyse it: pricelab analyze {out} --unit product --time period --outcome units "
        "--treated treated --probability probability --blackout blackout --method dm"
    )


def _reply(reply: dict[str, object]) -> None:
    """The worker's reply as JSON when it did what was asked; else its reason, one sentence,
    exit status 2."""
    if not reply.get("ok"):
        reason = str(reply.get("error") or "the controller refused the command").strip()
        _fail(reason.splitlines()[0] if reason else "the controller refused the command")
    typer.echo(json.dumps(reply, indent=2, default=str))


# ---------------------------------------------------------------------- offline tools
def _spec_info(path: Path) -> Any:
    """A spec file as the analysis worker is told of it (for ``analyze --method spillover``)."""
    from controller import status
    from controller.panel_source import experiment_info
    from controller.spec import load_spec_file

    return experiment_info(load_spec_file(path), status.ENDED)


def _play_live(spec: Any, **kw: Any) -> list[str]:
    """``pricelab simulate --live`` (lab.cli): play the market into the running stack."""
    from streams.live.play import play, summary

    run = asyncio.run(play(_settings(), spec, **kw))
    return summary(run, kw.get("periods"))


_plugins_loaded = False


def _load_plugins() -> None:
    """Register the offline tools' commands (analyze, simulate, plan, graph, schedule, report
    ...). They import numpy, pandas and scipy at once, which takes most of a second: an
    operator's command (experiment, assignments, estimates ...) does without them."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from analysis import cli as analysis_cli
    from analysis import graph_cli
    from controller import schedule_cli
    from lab import cli as lab_cli
    from streams.client import report as report_cli

    analysis_cli.register(_app, spec_info=_spec_info)
    lab_cli.register(_app, live=_play_live)
    graph_cli.register(_app)
    schedule_cli.register(_app)
    report_cli.register(_app)


#: the commands defined here: they run without the plugins
_CORE = frozenset(
    {
        "up",
        "topics",
        "worker",
        "demo",
        "experiment",
        "assignments",
        "estimates",
        "panel",
        "contracts",
        "acl",
    }
)


_help_polished = False


def _polish_help() -> None:
    """Every help in whole sentences, and ``experiment create``'s listing the spec's fields
    (:mod:`streams.cli.help_text`); done once, when help may be shown."""
    global _help_polished
    if _help_polished:
        return
    _help_polished = True
    from streams.cli.help_text import create_help, whole_sentences

    for command in experiment_app.registered_commands:
        if command.name == "create":
            command.help = create_help(command.callback.__doc__ or "")  # type: ignore[union-attr]
    whole_sentences(_app)


def __getattr__(name: str) -> Any:
    """``streams.cli.app``: the whole app, every plugin's commands registered."""
    if name == "app":
        _load_plugins()
        _polish_help()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sentence(exc: BaseException) -> str | None:
    """The one sentence for an error an operator can act on; None for a bug."""
    if isinstance(exc, PricelabError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and not exc.filename:
        return exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


#: click's usage errors, as the installed typer raises them (it may vendor its own click)
_CLICK_ERRORS: tuple[type[Exception], ...] = tuple(
    {next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
     click.ClickException}
)  # fmt: skip
_ABORTS: tuple[type[BaseException], ...] = (typer.Abort, click.exceptions.Abort, KeyboardInterrupt)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every error an operator can act on is one sentence with exit status 2."""
    # clients (aiokafka, redis) log their connection failures; a command says it in one
    # sentence instead (a worker configures its own logging)
    logging.getLogger().addHandler(logging.NullHandler())
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first not in _CORE or "--help" in args[:1]:
        _load_plugins()  # an offline tool, or the whole help
    if not args or "--help" in args:
        _polish_help()
    try:
        code = _app(args=args, standalone_mode=False)
    except _ABORTS:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except _CLICK_ERRORS as exc:  # a bad or missing option or argument
        typer.echo(f"error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except TimeoutError:  # before OSError, of which it is a subclass
        typer.echo("error: the broker or Redis did not answer in time", err=True)
        sys.exit(2)
    except (PricelabError, OSError) as exc:
        sentence = _sentence(exc)
        if sentence is None:
            raise
        typer.echo(f"error: {sentence}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
