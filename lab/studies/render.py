"""Pages from templates: a study's prose is a Jinja2 template under
``lab/studies/templates/`` filled from its saved results, never an f-string in Python.

Filters for figures: ``pct`` (0.953 -> ``95.3%``), ``num`` (a format spec: ``x | num('+.2f')``),
``thousands`` (19447 -> ``19,447``) and ``cell`` (a table cell, ``-`` when missing); the macro
``table(rows, cols)`` of ``macros.md.j2`` lays out a Markdown table. ``render_text(..., trace=[])`` records every value the
template printed, so a test can tell that each number on a page is either the template's own
text or a value from the saved results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from lab.errors import LabError

TEMPLATES = Path(__file__).resolve().parent / "templates"


def pct(x: float, digits: int = 1) -> str:
    """A share as a percentage: ``pct(0.9528)`` is ``95.3%``."""
    return f"{100 * x:.{digits}f}%"


def num(x: float, spec: str = ".2f") -> str:
    """``x`` in a format spec: ``num(0.0328, '+.2f')`` is ``+0.03``."""
    return format(x, spec)


def cell(x: Any, spec: str = ".3f") -> str:
    """A table cell: text as it is (``spec`` "s"), a count ("d"), a number in ``spec``, and
    ``-`` for a missing or infinite number."""
    if spec == "s":
        return str(x)
    if not (isinstance(x, float | int) and math.isfinite(x)):
        return "-"
    return format(int(x), "d") if spec == "d" else format(x, spec)


def thousands(x: float) -> str:
    """A count with thousands separators: ``19,447``."""
    return f"{int(x):,}"


def environment(trace: list[str] | None = None) -> Environment:
    """The templates' environment; with ``trace``, every printed value is appended to it."""

    def finalize(value: Any) -> Any:
        if trace is not None:
            trace.append(str(value))
        return value

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
        finalize=finalize,
    )
    env.filters.update(pct=pct, num=num, thousands=thousands, cell=cell)
    return env


def template_source(name: str) -> str:
    return (TEMPLATES / name).read_text()


def render_text(name: str, context: dict[str, Any], trace: list[str] | None = None) -> str:
    """The template ``name`` filled from ``context``."""
    return environment(trace).get_template(name).render(**context)


def markers(section: str) -> tuple[str, str]:
    return f"<!-- {section}:start -->", f"<!-- {section}:end -->"


def replace_section(doc: str, section: str, text: str) -> str:
    """``doc`` with the section between ``section``'s markers replaced by ``text`` (which
    carries the markers itself)."""
    start, end = markers(section)
    if start not in doc or end not in doc:
        raise LabError(f"the page has no {start} ... {end} section to rewrite")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + text.rstrip("\n") + tail


def rendered_page(doc: Path, template: str, section: str, context: dict[str, Any]) -> str:
    """What :func:`render_page` would write, without writing it."""
    text = render_text(template, context)
    return replace_section(doc.read_text(), section, text) if section else text


def render_page(doc: Path, template: str, section: str, context: dict[str, Any]) -> Path:
    """Write ``doc`` (or its ``section``) from ``template`` filled from ``context``."""
    doc.write_text(rendered_page(doc, template, section, context))
    return doc
