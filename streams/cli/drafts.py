"""``pricelab experiment draft SPEC``, ``drafts [ID]`` and ``discard ID --reason R``: a spec
saved but not launched (controller.drafts), through the commands topic like every other
command; ``experiment create`` of its id launches it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from controller.settings import load_settings
from streams.cli.common import ActorOption, command_actor, fail, show_reply


def experiment_draft(
    spec: Annotated[Path, typer.Argument(help="Experiment spec, YAML or JSON.")],
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: ActorOption = None,
) -> None:
    """Save SPEC as a draft, not launched: checked as experiment create checks it, kept under
    its id for colleagues to see (experiment drafts, the console's drafts tab), edit and
    launch with experiment create. Saving the id again replaces the draft."""
    from streams.client.commands import send_command
    from streams.client.launch import launchable_file

    parsed = launchable_file(spec)  # the controller refuses it too; nothing is sent
    settings = load_settings()
    actor = command_actor(as_, settings)
    doc = parsed.model_dump(mode="json")
    show_reply(send_command(settings, "draft", spec=doc, timeout=timeout, actor=actor))


def experiment_drafts(
    draft: Annotated[
        str | None, typer.Argument(help="One draft: its summary and its spec, as JSON.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """List the drafts: id, design, arms, products, author, when last saved and by whom; with
    a DRAFT id, that draft and its spec as JSON (a spec file for experiment create)."""
    from streams.client.drafts import draft as read_draft
    from streams.client.drafts import drafts

    settings = load_settings()
    if draft is not None:
        typer.echo(json.dumps(read_draft(settings, draft), indent=2))
        return
    views = drafts(settings)
    if as_json:
        typer.echo(json.dumps(views, indent=2))
        return
    if not views:
        typer.echo("no drafts")
        return
    for v in views:
        typer.echo(
            f"{v['id']:<24} {v['design']:<20} arms {','.join(v['arms']):<20} "
            f"products {v['products']:>6}  by {v['author']}  updated {v['updated']}"
            + (f" by {v['updated_by']}" if v["updated_by"] != v["author"] else "")
        )


def experiment_discard(
    draft: Annotated[str, typer.Argument(help="The draft's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in its audit trail; required).")] = "",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the reply.")] = 60.0,
    as_: ActorOption = None,
) -> None:
    """Discard a draft: it leaves the drafts, and its history keeps who discarded it and
    why. Discarding it again does nothing."""
    from controller.lifecycle import reason_missing
    from streams.client.commands import send_command
    from streams.worker.schemas import REASON_CHARS

    settings = load_settings()
    actor = command_actor(as_, settings)
    if reason_missing("discard", reason):
        fail("a discard needs --reason: why, for the draft's audit trail")
    if len(reason.strip()) > REASON_CHARS:
        fail(f"a reason is at most {REASON_CHARS} characters, not {len(reason.strip())}")
    show_reply(
        send_command(
            settings,
            "discard",
            experiment=draft,
            reason=reason.strip(),
            timeout=timeout,
            actor=actor,
        )
    )


def register(app: typer.Typer) -> None:
    """The three commands, on ``pricelab experiment``."""
    app.command("draft")(experiment_draft)
    app.command("drafts")(experiment_drafts)
    app.command("discard")(experiment_discard)
