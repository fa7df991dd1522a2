"""``pricelab estimates EXPERIMENT``: the latest verdict and estimates, from the estimates topic."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Annotated, Any

import typer

from controller.settings import load_settings


def estimates(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep printing new estimates until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    all_estimators: Annotated[
        bool,
        typer.Option(
            "--all-estimators",
            help="Every estimator's latest estimate, the design's primary one first; without "
            "it, each metric's primary estimate only (the one the verdict and the report use).",
        ),
    ] = False,
    idle: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds of fetch answers without a new message that count as the end."
        ),
    ] = 2.0,
) -> None:
    """The latest verdict (ship, do not ship, keep running), then the latest estimate of each
    metric (and each segment the spec names) of EXPERIMENT by the design's primary estimator,
    the decision metric first (--all-estimators: the other estimators too), read from the
    estimates topic. A price ladder's demand curve and recommended price follow (``kind:
    demand``), and an adaptive ladder's arms, best set and allocation over time (``kind:
    adaptive``). An id that names no experiment is refused (exit 2); one with no estimate yet
    exits 1.
    With --json, JSON lines: the verdict's first (``kind: verdict``), the demand curve's and
    the adaptive look's last."""
    from streams.client.estimates import (
        all_estimates,
        is_adaptive,
        is_demand,
        is_verdict,
        latest_adaptive,
        latest_demand,
        latest_of,
        latest_verdict,
        render,
        render_adaptive,
        render_demand,
        render_verdict,
    )
    from streams.client.known import check_experiment

    settings = load_settings()
    # nothing of EXPERIMENT on the topic: an unknown id, or no look yet; the store tells them
    # apart (asked only then: a topic reader needs no Redis otherwise)
    nothing: list[bool] = []
    known: list[bool] = []  # the store knows it: a --follow with nothing yet waits for news

    def one(doc: dict[str, Any]) -> str:
        if is_verdict(doc) and not as_json:
            return render_verdict(doc)
        if is_demand(doc) and not as_json:
            return render_demand(doc)
        if is_adaptive(doc) and not as_json:
            return render_adaptive(doc)
        return render([doc], as_json)

    def shown(docs: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None] | None:
        verdict = latest_verdict(docs)
        lead = None if verdict is None else verdict.get("metric")
        latest = latest_of(docs, primary_only=not all_estimators, lead=lead)
        if not latest and verdict is None and not (follow and known):
            nothing.append(True)
            return None
        if verdict is not None:
            typer.echo(render([verdict], True) if as_json else render_verdict(verdict) + "\n")
        elif latest and not as_json:
            typer.echo("no verdict published yet (the analysis worker publishes one per look)\n")
        if latest:
            typer.echo(render(list(latest.values()), as_json))
            if not all_estimators and not as_json and len(latest) < len(latest_of(docs)):
                typer.echo("(each metric's primary estimator; --all-estimators shows the others)")
        demand = latest_demand(docs)
        if demand is not None:
            typer.echo(render([demand], True) if as_json else "\n" + render_demand(demand, verdict))
        adaptive = latest_adaptive(docs)
        if adaptive is not None:
            typer.echo(render([adaptive], True) if as_json else "\n" + render_adaptive(adaptive))
        return (lambda e: typer.echo(one(e))) if follow else None

    async def run() -> None:
        stop = asyncio.Event()
        if follow:  # Ctrl-C or SIGTERM ends a --follow quietly, with the consumer closed
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await all_estimates(settings, experiment, idle, then=shown, stop=stop)

    asyncio.run(run())
    if nothing:
        check_experiment(settings, experiment)  # an unknown id: one sentence, exit 2
        if not follow:
            typer.echo(f"no estimate of {experiment} on {settings.topics.estimates} yet", err=True)
            raise typer.Exit(1)
        known.append(True)
        asyncio.run(run())  # a known experiment's first estimates, as they come


def register(app: typer.Typer) -> None:
    app.command()(estimates)
