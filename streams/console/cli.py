"""``pricelab console``: serve the web console; ``pricelab console user NAME --role ROLE``: a
line of the users file."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from controller.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.console.auth import Users

console_app = typer.Typer(
    help="The web console: see, decide and act in a browser (docs/console.md).",
    invoke_without_command=True,
)


def users_of(settings: Settings, say: Callable[[str], None] = typer.echo) -> Users:
    """The users who may sign in: the users file's and, in the lab (a simulated clock, or no
    users file), a one-time ``admin`` whose password is said once."""
    from streams.console.auth import Users

    path = settings.console.users_file
    users = Users.load(path) if path is not None else Users()
    if settings.clock == "simulated" or path is None:
        password = users.add_one_time_admin()
        say(f"console: sign in as admin with the one-time password {password}")
    return users


#: the name of the handler :func:`console_logging` adds
CONSOLE_LOG = "pricelab-console-stderr"


def console_logging() -> None:
    """The console's own warnings on its standard error (its log): the CLI's entry point puts
    a null handler on the root logger, so that a command's clients (aiokafka, redis) log
    nothing and the command says its one sentence, and uvicorn configures only its own
    loggers. Without this a slow answer (streams.console.metrics) or a read of the audit
    trail that stopped short (streams.client.history) would be dropped; the clients' own
    logs stay quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(CONSOLE_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    for name in ("pricelab", "streams"):
        logger = logging.getLogger(name)
        if all(h.get_name() != CONSOLE_LOG for h in logger.handlers):  # once
            logger.addHandler(handler)


async def serve(settings: Settings, users: Users) -> None:
    import uvicorn

    from streams.console.app import make_console
    from streams.console.server import build_console_app

    app = build_console_app(make_console(settings, users))
    cs = settings.console
    config = uvicorn.Config(
        app,
        host=cs.host,
        port=cs.port,
        log_level="warning",
        # live streams never end on their own: a stop closes them after this many seconds
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = uvicorn.Server(config)
    await server.serve()


@console_app.callback()
def console(ctx: typer.Context) -> None:
    """Serve the console on PRICELAB_CONSOLE__HOST:PORT (127.0.0.1:6080 by default) until
    stopped. In the lab it prints a one-time admin password first."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    users = users_of(settings)
    cs = settings.console
    typer.echo(f"console: http://{cs.host}:{cs.port}/", err=False)
    sys.stdout.flush()
    console_logging()
    asyncio.run(serve(settings, users))


@console_app.command("user")
def user(
    name: Annotated[str, typer.Argument(help="The user's name (the actor of their commands).")],
    role: Annotated[
        str, typer.Option(help="viewer, analyst (records decisions), operator or admin.")
    ] = "viewer",
) -> None:
    """Print a users-file line for NAME with ROLE; the password is read from standard input
    (a terminal asks for it, hidden)."""
    from streams.console.auth import check_user, hash_line

    check_user(name, role)  # before the password is asked for
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    typer.echo(hash_line(name, role, password))


def register(app: typer.Typer) -> None:
    app.add_typer(console_app, name="console")
