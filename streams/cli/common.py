"""What the command groups share: the actor of a command (``--as``), a refusal as one sentence
with exit status 2, and the worker's reply."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

ActorOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Who is issuing the command (the audit trail): default PRICELAB_ACTOR, else the "
        "OS user at the host. Refused unless it is a name or name@host, and one of "
        "PRICELAB_ACTORS where that is set.",
    ),
]


def command_actor(given: str | None, settings: Any) -> str:
    """The command's actor: ``--as``, else PRICELAB_ACTOR, else user@host; one sentence and exit
    2 when it is malformed or not one of the configured actors."""
    from streams.client.commands import default_actor
    from streams.worker.schemas import actor_refusal

    actor = given if given is not None else default_actor()
    refusal = actor_refusal(actor, settings.actors)
    if refusal is not None:
        fail(("--as: " if given is not None else "") + refusal)
    return actor


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def show_reply(reply: dict[str, object]) -> None:
    """The worker's reply as JSON when it did what was asked; else its reason, one sentence,
    exit status 2."""
    if not reply.get("ok"):
        reason = str(reply.get("error") or "the controller refused the command").strip()
        fail(reason.splitlines()[0] if reason else "the controller refused the command")
    typer.echo(json.dumps(reply, indent=2, default=str))
