"""Help in whole sentences, and ``experiment create --help`` generated from the spec model,
through the real entry point."""

from __future__ import annotations

import re

import pytest
import yaml

from controller.spec import ExperimentSpec, load_spec
from streams.cli import main
from streams.cli.help_text import EXAMPLE_SPEC, reflow

PAGES = [
    [],
    ["analyze"],
    ["plan"],
    ["simulate"],
    ["experiment"],
    *(["experiment", c] for c in ("create", "pause", "resume", "stop", "freeze", "unfreeze")),
    *(["experiment", c] for c in ("history", "freezes", "list", "show")),
    *(["experiment", c] for c in ("draft", "drafts", "discard")),
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def _premature_breaks(lines: list[str]) -> list[str]:
    """Lines broken before the column was full: the next line's first word would have fit
    (greedy wrapping, as rich does, never leaves room for it). ``lines`` are one paragraph."""
    width = max((len(line) for line in lines), default=0)
    return [
        f"{a!r} | {b!r}"
        for a, b in zip(lines, lines[1:], strict=False)
        if b.split() and len(a) + 1 + len(b.split()[0]) <= width
    ]


def _command_list_entries(page: str) -> list[list[str]]:
    """The help lines of each command in a 'Commands' panel."""
    rows = page.split("─ Commands ─")[1].splitlines()[1:]
    rows = [r[1:-1] for r in rows if r.startswith("│")]
    first = rows[0]
    offset = len(first) - len(first.lstrip()) + len(first.split()[0])
    offset += len(first[offset:]) - len(first[offset:].lstrip())
    entries: list[list[str]] = []
    for row in rows:
        if row[:offset].strip():
            entries.append([])
        entries[-1].append(row[offset:].rstrip())
    return entries


def _description(page: str) -> list[list[str]]:
    """The paragraphs of a help page's description (between the usage line and the panels)."""
    body = page.split("Usage:")[1].split("╭")[0].splitlines()[1:]
    paragraphs: list[list[str]] = [[]]
    for line in body:
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    # indented blocks (field lists, examples) keep their lines
    return [p for p in paragraphs if p and not p[0].startswith("   ")]


@pytest.mark.parametrize("argv", PAGES, ids=lambda a: " ".join(a) or "pricelab")
def test_every_help_page_wraps_whole_sentences(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    page = _help(argv, capsys)
    broken = [b for p in _description(page) for b in _premature_breaks(p)]
    if "─ Commands ─" in page:
        broken += [b for e in _command_list_entries(page) for b in _premature_breaks(e)]
    assert not broken, "\n".join(broken)


def test_reflow_joins_prose_and_keeps_indented_blocks() -> None:
    text = "First line\ngoes on.\n\nA list:\n  - one\n  - two\n\nSecond\nparagraph."
    assert reflow(text) == "First line goes on.\n\nA list:\n  - one\n  - two\n\nSecond paragraph."


def test_create_help_lists_every_spec_field_an_example_and_the_docs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    page = _flat(_help(["experiment", "create"], capsys))
    for name, field in ExperimentSpec.model_fields.items():
        assert field.description, f"ExperimentSpec.{name} has no description"
        assert re.search(rf"\b{name} \((required|optional|default [^)]*)\): ", page), name
        assert _flat(field.description) in page, name
    for line in EXAMPLE_SPEC.splitlines():
        assert _flat(line) in page
    assert "docs/designs.md" in page and "docs/examples/" in page


def test_the_example_in_create_help_is_a_valid_spec() -> None:
    spec = load_spec(yaml.safe_load(EXAMPLE_SPEC))
    assert spec.design == "random-days" and len(spec.products) == 4
