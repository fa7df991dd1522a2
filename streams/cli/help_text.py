"""Help that reads in whole sentences: the CLI's docstrings reflowed, and ``experiment create``'s
help generated from the spec model.

Typer's rich help keeps a docstring's single line breaks (in the command list and in every
paragraph after a command's first), so text wrapped at the source's width broke mid-sentence
on the terminal. :func:`whole_sentences` joins the lines of each prose paragraph; paragraphs
whose lines are indented (examples, field lists) keep their lines.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import typer
from rich.markup import escape

#: a spec that `pricelab experiment create` accepts (tests/unit/streams/cli/test_help.py validates it)
EXAMPLE_SPEC = """\
id: shoes-test
design: random-days
products: [sku-101, sku-102, sku-103, sku-104]
treatment_policy: elasticity-v2
control_policy: rule-based-v1
start: 2026-03-23T00:00:00+01:00
end: 2026-04-06T00:00:00+02:00
timezone: Europe/Berlin"""


def reflow(text: str) -> str:
    """``text`` with the lines of each prose paragraph joined (an indented paragraph, or one
    whose lines start a list item, keeps its lines)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        block = any(line[:1].isspace() or line.startswith(("- ", "* ")) for line in lines[1:])
        out.append(paragraph if block or paragraph.startswith("\b") else " ".join(lines))
    return "\n\n".join(out)


def whole_sentences(app: typer.Typer) -> None:
    """Reflow the help of ``app``, of its commands and of its sub-apps (idempotent)."""
    if isinstance(app.info.help, str):
        app.info.help = reflow(app.info.help)
    for command in app.registered_commands:
        text = command.help if command.help is not None else inspect.getdoc(command.callback)
        if isinstance(text, str):
            command.help = reflow(text)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            whole_sentences(group.typer_instance)


def spec_fields_help() -> str:
    """One indented line per ExperimentSpec field: its name, whether it is required or its
    default, and its description (from the model, so it cannot drift)."""
    from controller.spec import ExperimentSpec

    lines = []
    for name, field in ExperimentSpec.model_fields.items():
        if field.is_required():
            note = "required"
        else:
            default = field.get_default(call_default_factory=True)
            note = f"default {_shown(default)}" if _shown(default) else "optional"
        lines.append(f"  {name} ({note}): {field.description or ''}".rstrip())
    return escape("\n".join(lines))


def _shown(value: Any) -> str:
    if isinstance(value, timedelta):
        if not value:
            return "PT0S"
        hours, rest = divmod(value, timedelta(hours=1))
        if rest:
            return ""
        return f"P{hours // 24}D" if hours and hours % 24 == 0 else f"PT{hours}H"
    if isinstance(value, bool | int | float | str) and value != "":
        return str(value)
    return ""


def create_help(summary: str) -> str:
    """``experiment create``'s help: ``summary``, every spec field, an example, where to read on."""
    example = "\n".join(f"  {line}" for line in EXAMPLE_SPEC.splitlines())
    return "\n\n".join(
        [
            reflow(summary),
            "The spec's fields (YAML or JSON):",
            spec_fields_help(),
            "A minimal spec:",
            escape(example),
            "Each design's settings and when to choose it: docs/designs.md; a spec per design: "
            "docs/examples/.",
        ]
    )


__all__ = ["EXAMPLE_SPEC", "create_help", "reflow", "spec_fields_help", "whole_sentences"]
