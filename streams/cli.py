"""The ``pricelab`` command line.

pricelab up                      start the embedded broker and Redis (loopback), create topics
pricelab worker --role R ...     run a faust worker (controller, analysis)
pricelab demo                    the live demo on the embedded stack
pricelab experiment ...          create/list/show/pause/resume/stop (through the commands topic)
pricelab assignments PRODUCT     the assignment in force for a product
pricelab schedule / analyze / simulate / graph / report ...   offline tools
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.settings import Settings

app = typer.Typer(
    name="pricelab",
    help="Event-driven controller for price experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
experiment_app = typer.Typer(help="Create and steer experiments (through the commands topic).")
app.add_typer(experiment_app, name="experiment")


def _settings() -> Settings:
    return Settings()


@app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Broker port (0 = any free port).")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port (0 = any free port).")] = 6379,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
) -> None:
    """Start the embedded Kafka-protocol broker and Redis until Ctrl-C or SIGTERM."""
    from streams.embedded import EmbeddedStack
    from streams.kafka import ensure_topics

    stack = EmbeddedStack(host=host, kafka_port=kafka_port, redis_port=redis_port).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = _settings().model_copy(
            update={
                "kafka": _settings().kafka.model_copy(
                    update={"bootstrap_servers": stack.bootstrap_servers}
                )
            }
        )
        asyncio.run(ensure_topics(settings))
        typer.echo(f"kafka  {stack.bootstrap_servers}")
        typer.echo(f"redis  {stack.redis_url}")
        typer.echo("topics " + ", ".join(settings.topics.all()))
        typer.echo(
            f"export PRICELAB_KAFKA__BOOTSTRAP_SERVERS={stack.bootstrap_servers} "
            f"PRICELAB_REDIS__URL={stack.redis_url}"
        )
        typer.echo("Ctrl-C stops both.")
        stop.wait()
    finally:
        stack.stop()
        typer.echo("stopped")


@app.command()
def worker(
    role: Annotated[list[str], typer.Option(help="controller and/or analysis")] = ["controller"],  # noqa: B006
) -> None:
    """Run a faust worker for the given roles (graceful shutdown on SIGTERM)."""
    from streams.app import run_worker

    bad = set(role) - {"controller", "analysis"}
    if bad:
        raise typer.BadParameter(f"unknown role(s) {sorted(bad)}; use controller or analysis")
    sys.argv = [sys.argv[0], "worker"]  # faust's own CLI parses argv
    run_worker(_settings(), set(role))


@app.command()
def demo(
    products: Annotated[int, typer.Option(help="Products in the simulated market.")] = 200,
    days: Annotated[int, typer.Option(help="Length of the switchback in days.")] = 28,
    seed: Annotated[int, typer.Option(help="Seed of the market and the design.")] = 7,
    external: Annotated[
        bool, typer.Option(help="Use the configured Kafka/Redis instead of the embedded stack.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Print only the final estimate.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Also write the analyst report of the run to this folder.")
    ] = None,
) -> None:
    """Run a 28-day switchback on a simulated market through the live pipeline."""
    from streams.demo import DemoConfig, run_demo

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
    spec: Path,
    graph: Annotated[
        Path | None,
        typer.Option(help="Substitutes graph (pricelab graph build); enables spillover estimates."),
    ] = None,
    timeout: float = 30.0,
) -> None:
    """Validate SPEC (YAML/JSON) locally, then send a create command and wait for the reply."""
    from controller.spec import load_spec, load_spec_file
    from streams.commands import send_command

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
    _reply(send_command(_settings(), "create", spec=doc, timeout=timeout))


def _control(kind: str):  # type: ignore[no-untyped-def]
    def cmd(experiment: str, reason: str = "", timeout: float = 30.0) -> None:
        from streams.commands import send_command

        _reply(
            send_command(
                _settings(), kind, experiment=experiment, reason=reason or None, timeout=timeout
            )
        )

    cmd.__doc__ = f"{kind.capitalize()} an experiment (kill switch for stop/pause: products return to control)."
    return cmd


for _kind in ("pause", "resume", "stop"):
    experiment_app.command(_kind)(_control(_kind))


@experiment_app.command("list")
def experiment_list() -> None:
    """List experiments with their status and the last period flipped."""
    from streams.commands import read_experiments

    for st in read_experiments(_settings()):
        typer.echo(
            f"{st['id']:<24} {st['design']:<20} {st['status']:<8} period {st['flipped_period']:>4}  products {st['products']}"
        )


@experiment_app.command("show")
def experiment_show(experiment: str) -> None:
    """Show one experiment's spec and state as JSON."""
    from streams.commands import read_experiment

    typer.echo(json.dumps(read_experiment(_settings(), experiment), indent=2, default=str))


@app.command()
def assignments(product: str) -> None:
    """The assignment in force for PRODUCT (experiment, arm, policy, blackout)."""
    from streams.commands import read_assignment

    doc = read_assignment(_settings(), product)
    if doc is None:
        typer.echo(f"{product} is in no running experiment")
        raise typer.Exit(1)
    typer.echo(json.dumps(doc, indent=2, default=str))


def _reply(reply: dict[str, object]) -> None:
    typer.echo(json.dumps(reply, indent=2, default=str))
    if not reply.get("ok"):
        raise typer.Exit(1)


# ---------------------------------------------------------------------- offline tools
_PLUGINS = (
    "analysis.cli",
    "lab.cli",
    "analysis.graph_cli",
    "controller.schedule_cli",
    "streams.report_cli",
)
for _mod in _PLUGINS:
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _mod:
            raise


def main() -> None:
    app()


if __name__ == "__main__":
    main()
