"""``pricelab up``, ``topics``, ``worker``, ``demo``: the stack itself - the embedded broker and
Redis, the topics, a worker process, and the live demo on them."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.settings import load_settings
from streams.cli.common import fail


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

    configured = load_settings()
    stack = EmbeddedStack(
        host=host,
        kafka_port=kafka_port,
        redis_port=redis_port,
        tls=tls,
        validate_outputs=configured.embedded_contract_checks,
    )
    stack.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = stack.client_settings(configured)
        # with PRICELAB_EMBEDDED_CONTRACT_CHECKS the broker validates the output topics
        stack.register_contracts(settings)
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


def topics(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 30.0,
) -> None:
    """Create every pricelab topic that is missing: its partitions, compaction for the
    assignments, retention for the rest (PRICELAB_KAFKA__EVENT_RETENTION, __RECORD_RETENTION).
    Idempotent: run it before the workers, again whenever you like."""
    from streams.errors import services_answer
    from streams.worker.kafka import ensure_and_describe_topics, topic_configs

    settings = load_settings()
    if timeout <= 0:
        fail(f"--timeout must be positive, not {timeout}")

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


def worker(
    role: Annotated[list[str], typer.Option(help="controller and/or analysis")] = ["controller"],  # noqa: B006
) -> None:
    """Run a faust worker for the given roles (graceful shutdown on SIGTERM)."""
    from streams.worker.app import run_worker

    bad = set(role) - {"controller", "analysis"}
    if bad:
        raise typer.BadParameter(f"unknown role(s) {sorted(bad)}; use controller or analysis")
    settings = load_settings()
    sys.argv = [sys.argv[0], "worker"]  # faust's own CLI parses argv
    run_worker(settings, set(role))


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
    ladder: Annotated[
        bool,
        typer.Option(
            "--ladder",
            help="Run a four-price ladder instead (list price; 0.90, 0.95, 1.05 of it): the "
            "verdict's arm, a per-arm scorecard, the demand and profit curves and the "
            "recommended price against the true optimum. Exit 1 unless the simultaneous "
            "intervals of the decision metric cover every arm's true effect.",
        ),
    ] = False,
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="With --ladder: the ladder's arm probabilities follow the analysis worker's "
            "looks (Thompson sampling on profit after a 3-day warmup, docs/adaptive.md); at the "
            "end the allocation over time, the adaptive estimates and the profit against the "
            "fixed ladder's. Exit 1 unless the adaptive sequences of profit cover every arm's "
            "true effect.",
        ),
    ] = False,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Start the web console beside the demo (PRICELAB_CONSOLE__PORT, 6080 by "
            "default), print its URL and one-time admin password, and leave it, the workers and "
            "the stack up after the demo until Ctrl-C (docs/console.md).",
        ),
    ] = False,
) -> None:
    """Run a 28-day switchback on a simulated market through the live pipeline (--ladder: a
    four-price ladder; --adaptive: its shares follow the looks). Exit 1 when the final
    interval misses the market's truth."""
    from streams.live.demo import DemoConfig, run_demo

    if adaptive and not ladder:
        raise typer.BadParameter("--adaptive runs the price ladder adaptively: add --ladder")
    if adaptive:
        from streams.live.adaptive_demo import demo_floor
        from streams.live.ladder import LADDER_ARMS

        try:  # the floor that keeps every arm a few cells a period must leave room to adapt
            demo_floor(products, len(LADDER_ARMS))
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
    ok = run_demo(
        load_settings(),
        DemoConfig(
            products=products,
            days=days,
            seed=seed,
            external=external,
            quiet=quiet,
            report_dir=None if report is None else str(report),
            ladder=ladder,
            adaptive=adaptive,
            console=console,
        ),
    )
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    for command in (up, topics, worker, demo):
        app.command()(command)
