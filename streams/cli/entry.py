"""The ``pricelab`` command line.

pricelab up                      start the embedded broker and Redis (loopback), create topics
pricelab topics                  create every topic (partitions, compaction, retention); idempotent
pricelab worker --role R ...     run a faust worker (controller, analysis)
pricelab demo                    the live demo on the embedded stack
pricelab experiment ...          create/list/show/pause/resume/stop/freeze (through the commands topic)
pricelab assignments PRODUCT     the assignment in force for a product
pricelab estimates EXPERIMENT    the latest estimates, from the estimates topic (--follow)
pricelab health EXPERIMENT       the health checks the console's Health section shows (exit 1: a problem)
pricelab dead-letters            the dead letters by reason; --replay sends fixed ones again
pricelab panel export EXP ...    the panel the analysis worker analyses, as CSV or Parquet
pricelab console                 the web console (streams/console; docs/console.md)
pricelab acl [--kafka]           the Redis (or Kafka) ACLs of the roles (controller, analysis, operator)
pricelab schedule / analyze / simulate / compare-designs / graph / report ...   offline tools

Every refusal reaches the operator as one sentence on stderr with exit status 2 (:func:`main`):
a bad spec or option, a missing file or column, a broker or Redis that does not answer. A
traceback means a bug.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import typer

import streams.cli.dead_letters as dead_letters
import streams.cli.deploy as deploy
import streams.cli.estimates as estimates
import streams.cli.experiment as experiment
import streams.cli.health as health
import streams.cli.panel as panel
import streams.cli.stack as stack
import streams.console.cli as console
from controller.settings import load_settings
from core.errors import PricelabError

_app = typer.Typer(
    name="pricelab",
    help="Event-driven controller for price experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# the command groups, in the order help lists them
for _group in (stack, experiment, estimates, health, dead_letters, deploy, panel, console):
    _group.register(_app)


# ---------------------------------------------------------------------- offline tools
def _spec_info(path: Path) -> Any:
    """A spec file as the analysis worker is told of it (for ``analyze --method spillover``)."""
    from controller.panel_source import experiment_info
    from controller.spec import load_spec_file
    from core import status

    return experiment_info(load_spec_file(path), status.ENDED)


def _play_live(spec: Any, **kw: Any) -> list[str]:
    """``pricelab simulate --live`` (lab.cli): play the market into the running stack."""
    from streams.live.play import play, summary

    run = asyncio.run(play(load_settings(), spec, **kw))
    return summary(run, kw.get("periods"))


def _register_analysis() -> None:
    from analysis import cli as analysis_cli

    analysis_cli.register(_app, spec_info=_spec_info)


def _register_lab() -> None:
    from lab import cli as lab_cli

    lab_cli.register(_app, live=_play_live)


def _register_graph() -> None:
    from analysis import graph_cli

    graph_cli.register(_app)


def _register_schedule() -> None:
    from controller import schedule_cli

    schedule_cli.register(_app)


def _register_report() -> None:
    from streams.cli.report import register as register_report

    register_report(_app)


#: the offline tools' commands, each registered by its plugin; in the order the whole help
#: lists them
_PLUGINS: dict[str, Callable[[], None]] = {
    "analyze": _register_analysis,
    "simulate": _register_lab,
    "compare-designs": _register_lab,
    "plan": _register_lab,
    "graph": _register_graph,
    "schedule": _register_schedule,
    "report": _register_report,
}

_registered: set[Callable[[], None]] = set()


def _load_plugins(command: str | None = None) -> None:
    """Register the offline tools' commands (analyze, simulate, plan, graph, schedule, report
    ...): ``command``'s plugin alone, or every one (None: the whole help, or a command that is
    not theirs, which click then refuses with the whole list). They import numpy, pandas and
    scipy, which takes most of a second each: an operator's command (experiment, assignments,
    estimates ...) does without them, and ``pricelab schedule`` without the estimators."""
    wanted = [_PLUGINS[command]] if command in _PLUGINS else list(_PLUGINS.values())
    for register in wanted:
        if register not in _registered:
            _registered.add(register)
            register()


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
        "health",
        "dead-letters",
        "panel",
        "contracts",
        "acl",
        "console",
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

    for command in experiment.experiment_app.registered_commands:
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
        # an offline tool (its plugin alone), or the whole help (every one)
        _load_plugins(None if "--help" in args[:1] else first)
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
