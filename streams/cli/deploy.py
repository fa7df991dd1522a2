"""``pricelab contracts`` and ``pricelab acl``: what a deployment loads beside the image - the
topics' message contracts and the roles' ACLs (Redis, or Kafka with ``--kafka``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.settings import load_settings


def contracts(
    out: Annotated[
        Path, typer.Option(help="Directory for the JSON Schemas and asyncapi.yaml.")
    ] = Path("docs/contracts"),
) -> None:
    """Write the message contracts: a JSON Schema per topic and the AsyncAPI 3 document,
    generated from the wire models (a version's first schema is kept under frozen/)."""
    from streams.worker.contracts import write

    for path in write(out, load_settings()):
        typer.echo(f"wrote {path}")


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
    operator, and the console when PRICELAB_ACL_PASSWORD_CONSOLE is set), generated from the store's key names and its scripts' declared keys; each
    password is read from PRICELAB_ACL_PASSWORD_<ROLE> and written as its SHA-256. With
    --kafka: each role's topics and consumer groups as kafka-acls.sh commands, generated from
    the topics the workers and the CLI open (streams/cli/kafka_acl.py)."""
    from controller.errors import ConfigurationError
    from controller.store.acl import OPTIONAL_ROLES, ROLES, acl_lines

    settings = load_settings()
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
    for role in OPTIONAL_ROLES:  # the console's user: when its password is set
        secret = getattr(settings, role.password_env.removeprefix("PRICELAB_").lower())
        if secret is not None and secret.get_secret_value():
            passwords[role.name] = secret.get_secret_value()
    for line in acl_lines(settings.key_prefix, passwords):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    for command in (contracts, acl):
        app.command()(command)
