"""``pricelab dead-letters``: the dead letters by reason, with examples; ``--replay`` sends
chosen ones back to the sales topic once they pass the current decoder
(:mod:`streams.client.dead_letters`)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from controller.settings import load_settings


def dead_letters(
    reason: Annotated[
        list[str] | None,
        typer.Option("--reason", help="Only the letters of this reason (repeatable)."),
    ] = None,
    offset: Annotated[
        list[str] | None,
        typer.Option(
            "--offset",
            help="Only the letter at PARTITION:OFFSET of the dead-letter topic, as listed "
            "(repeatable; OFFSET alone where one partition has it).",
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Send the chosen letters (--reason, --offset) that pass the current decoder "
            "back to the sales topic; a sale already counted is not counted again.",
        ),
    ] = False,
    examples: Annotated[int, typer.Option(min=0, help="Examples shown of each reason.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one a letter.")] = False,
    idle: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds of fetch answers without a new message that count as the end."
        ),
    ] = 2.0,
) -> None:
    """The dead letters (events the workers refused) by reason, with examples and what the
    current decoder says of each now. With --replay, the chosen ones that pass it now are sent
    back to the sales topic, unchanged (docs/operations.md, "Dead letters")."""
    from streams.client.dead_letters import (
        as_json as letters_json,
    )
    from streams.client.dead_letters import (
        read_letters,
        render,
        select,
    )
    from streams.client.dead_letters import (
        replay as send_again,
    )
    from streams.errors import DeadLetterChoiceError

    settings = load_settings()
    reasons, positions = reason or [], offset or []
    if replay and not reasons and not positions:
        raise DeadLetterChoiceError(
            "--replay needs --reason or --offset: choose the dead letters to send again"
        )
    letters = select(asyncio.run(read_letters(settings, idle)), reasons, positions)
    if not replay:
        if as_json:
            for doc in letters_json(letters, settings):
                typer.echo(json.dumps(doc))
        else:
            typer.echo(render(letters, settings, examples))
        return
    done = asyncio.run(send_again(letters, settings))
    held: dict[str, int] = {}
    for _, why in done.held:
        held[why] = held.get(why, 0) + 1
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "replayed": [x.position for x in done.sent],
                    "held": [{"position": x.position, "why": w} for x, w in done.held],
                }
            )
        )
    else:
        typer.echo(f"replayed {len(done.sent)} of {len(letters)} to {settings.topics.sales}")
        for why, n in sorted(held.items(), key=lambda kv: -kv[1]):
            typer.echo(f"  not sent, {n}: {why}")
    if not done.sent:
        first = done.held[0][1] if done.held else "nothing chosen"
        raise DeadLetterChoiceError(
            f"none of the {len(letters)} chosen dead letters passes now ({first})"
        )


def register(app: typer.Typer) -> None:
    app.command("dead-letters")(dead_letters)
