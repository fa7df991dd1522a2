"""``pricelab experiment ...`` (create, pause, resume, stop, freeze, unfreeze, decide, comment,
history, freezes, list, show; draft, drafts, discard in streams.cli.drafts) and ``pricelab assignments PRODUCT``: an operator's commands, sent through the
commands topic, and the views of what they did."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from controller.settings import load_settings
from streams.cli.common import ActorOption, command_actor, fail, show_reply

experiment_app = typer.Typer(help="Create and steer experiments (through the commands topic).")


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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate SPEC and print its plan summary and schedule preview (each "
            "period's products per arm), the console's before a launch; send nothing.",
        ),
    ] = False,
    as_: ActorOption = None,
) -> None:
    """Validate SPEC (YAML/JSON) locally, then send a create command and wait for the reply.
    A start before now is refused unless --backfill is given."""
    from controller.spec import load_spec
    from streams.client.launch import launchable_file

    parsed = launchable_file(spec)  # the controller refuses it too; nothing is sent
    wide = parsed.held_warning()
    if wide is not None:  # accepted, but an arm's sequences will be wide
        typer.echo(f"warning: {wide}", err=True)
    if dry_run:
        from streams.client.launch import plan_summary, render_preview, schedule_preview

        typer.echo(render_preview(plan_summary(parsed), schedule_preview(parsed)))
        return
    settings = load_settings()
    actor = command_actor(as_, settings)
    from streams.client.commands import send_command

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
    show_reply(
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
        as_: ActorOption = None,
    ) -> None:
        from streams.client.commands import send_command

        settings = load_settings()
        actor = command_actor(as_, settings)
        from controller.lifecycle import reason_missing

        if reason_missing(kind, reason):
            fail(f"a {kind} needs --reason: why, for the experiment's audit trail")
        show_reply(
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
    """streams.client.commands.instant: a refusal is one sentence, exit 2."""
    from controller.errors import CommandRefused
    from streams.client.commands import instant

    try:
        return instant(text, option, now)
    except CommandRefused as exc:
        fail(str(exc))


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
        typer.Option(help="An experiment to freeze (repeatable); or --all."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Freeze every experiment (instead of --experiment).")
    ] = False,
    reason: Annotated[
        str,
        typer.Option(help="Why (required: shown in blackout explanations and the audit trail)."),
    ] = "",
    freeze_id: Annotated[
        str | None, typer.Option("--id", help="Freeze id (default: a new one).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: ActorOption = None,
) -> None:
    """Freeze prices: from START to END every product of the experiments named with
    --experiment (or of every experiment, with --all) runs the control policy and its data is
    blacked out (a washout follows the return to the design)."""
    from controller.lifecycle import reason_missing
    from streams.client.commands import freeze_document, read_now, send_command

    settings = load_settings()
    actor = command_actor(as_, settings)
    if not experiment and not every:
        fail(
            "a freeze names what it freezes: --experiment ID (repeatable), or --all to freeze "
            "every experiment"
        )
    if experiment and every:
        fail("--all freezes every experiment: give it or --experiment, not both")
    if reason_missing("freeze", reason):
        fail("a freeze needs --reason: why, for the experiment's audit trail")
    # the controller's clock, read once, and only if a relative time needs it
    now = functools.cache(lambda: read_now(settings))
    t0, t1 = _instant(start, "--start", now), _instant(end, "--end", now)
    # refused here, naming the field, before anything is sent
    doc = freeze_document(t0, t1, list(experiment) if experiment else None, reason, freeze_id)
    show_reply(send_command(settings, "freeze", freeze=doc, timeout=timeout, actor=actor))


@experiment_app.command("unfreeze")
def experiment_unfreeze(
    freeze_id: Annotated[str, typer.Argument(help="Freeze id (pricelab experiment freezes).")],
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    as_: ActorOption = None,
) -> None:
    """Cancel a freeze: one ahead is removed, one in force ends now (a washout follows the
    return to the design), one that is over is refused."""
    from streams.client.commands import send_command

    settings = load_settings()
    actor = command_actor(as_, settings)
    show_reply(
        send_command(
            settings,
            "unfreeze",
            freeze_id=freeze_id,
            timeout=timeout,
            actor=actor,
            reason=reason.strip() or None,
        )
    )


@experiment_app.command("decide")
def experiment_decide(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    ship: Annotated[
        str | None, typer.Option("--ship", help="The arm to ship, by its name.")
    ] = None,
    keep_control: Annotated[
        bool, typer.Option("--keep-control", help="Keep the control (ship no other arm).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (required: kept in the audit trail).")] = "",
    stop: Annotated[
        bool,
        typer.Option(
            "--stop", help="Stop the experiment too, in the same command (as experiment stop)."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: ActorOption = None,
) -> None:
    """Record a decision: ship an arm (--ship ARM) or keep the control (--keep-control), with
    a reason, in the experiment's audit trail (experiment history shows it, with who made
    it); with --stop the experiment is stopped by the same command. It changes no price by
    itself. A stopped or ended experiment takes a decision too (without --stop, once ended);
    the latest decision stands."""
    from controller.decision import CONTROL, command_fields
    from controller.lifecycle import reason_missing
    from streams.client.commands import send_command
    from streams.worker.schemas import is_ident

    settings = load_settings()
    actor = command_actor(as_, settings)
    if (ship is None) == (not keep_control):
        fail("a decision ships an arm or keeps the control: give --ship ARM or --keep-control")
    if reason_missing("decision", reason):
        fail("a decision needs --reason: why, for the experiment's audit trail")
    arm = CONTROL if keep_control else str(ship).strip()
    if not is_ident(arm):
        fail(f"--ship: {arm!r} is not an arm's name (letters, digits, '_', '.', '-')")
    show_reply(
        send_command(
            settings,
            "decision",
            experiment=experiment,
            **command_fields(arm, not keep_control),  # --ship names the arm exactly
            stop=stop,
            reason=reason.strip(),
            timeout=timeout,
            actor=actor,
        )
    )


@experiment_app.command("comment")
def experiment_comment(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    text: Annotated[str, typer.Argument(help="The comment (at most 500 characters).")],
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: ActorOption = None,
) -> None:
    """Comment on an experiment: TEXT is kept in its audit trail with who wrote it
    (experiment history shows it). It changes nothing; any state takes one."""
    from streams.client.commands import send_command
    from streams.worker.schemas import REASON_CHARS

    settings = load_settings()
    actor = command_actor(as_, settings)
    if not text.strip():
        fail("a comment needs its text")
    if len(text.strip()) > REASON_CHARS:
        fail(f"a comment is at most {REASON_CHARS} characters, not {len(text.strip())}")
    show_reply(
        send_command(
            settings,
            "comment",
            experiment=experiment,
            reason=text.strip(),
            timeout=timeout,
            actor=actor,
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
    as its retention keeps them; a draft's id shows the draft's (saved, discarded). An id
    that names no experiment or draft is refused."""
    from streams.client.drafts import check_trail
    from streams.client.history import read_trail, render

    settings = load_settings()
    check_trail(settings, experiment)  # a typo is refused, not shown an empty trail
    trail = asyncio.run(read_trail(settings, experiment, timeout))
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

    views = read_freezes(load_settings(), experiment)
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
    from core import status
    from streams.client.commands import read_experiments

    for st in read_experiments(load_settings()):
        state = st["state"] + ("+frozen" if st["frozen"] and st["state"] == status.RUNNING else "")
        typer.echo(
            f"{st['id']:<24} {st['design']:<20} {state:<15} period {st['period']:>4}  "
            f"seq {st['seq']:>4}  products {st['products']}"
        )


@experiment_app.command("show")
def experiment_show(experiment: Annotated[str, typer.Argument(help="Experiment id.")]) -> None:
    """Show one experiment's state and spec as JSON."""
    from streams.client.commands import read_experiment

    typer.echo(json.dumps(read_experiment(load_settings(), experiment), indent=2, default=str))


def assignments(product: Annotated[str, typer.Argument(help="Product id.")]) -> None:
    """The message in force for PRODUCT: its experiment's state, the status and policy a
    pricing system applies, why (paused, frozen, washout until ..., stopped), and its seq."""
    from streams.client.commands import read_assignment

    doc = read_assignment(load_settings(), product)
    if doc is None:
        typer.echo(f"{product} is in no experiment")
        raise typer.Exit(1)
    typer.echo(json.dumps(doc, indent=2, default=str))


def register(app: typer.Typer) -> None:
    import streams.cli.drafts as drafts

    drafts.register(experiment_app)
    app.command()(assignments)
    app.add_typer(experiment_app, name="experiment")
