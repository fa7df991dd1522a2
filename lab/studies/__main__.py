"""The studies' one runner: ``python -m lab.studies NAME [--runs N] [--jobs J] [--render-only]``.

Runs a declared study (:mod:`lab.studies.harness`), saves its results under docs/figures and
renders its page from them; ``--render-only`` renders from the saved results, ``--dry-run``
prints the summary and writes nothing, ``--set key=value`` changes one of the study's own
options. ``python -m lab.studies`` alone lists the studies.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.hashseed import pin_hash_seed
from lab.studies import catalog
from lab.studies.harness import load_results, render, run_study


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.studies", description=__doc__)
    ap.add_argument("name", nargs="?", help="the study (none: list them)")
    ap.add_argument("--runs", type=int, default=None, help="runs per case (default: the study's)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--render-only", action="store_true", help="render from the saved results")
    ap.add_argument("--dry-run", action="store_true", help="print the summary, write nothing")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if not args.name:
        for name, study in catalog.STUDIES.items():
            own = ", ".join(f"{k}={v}" for k, v in study.options.items())
            print(
                f"{name:22} {len(study.cases):2} cases, {study.runs:4} runs"
                f"{f' ({own})' if own else ''} -> docs/figures/{study.results}"
            )
        return 0
    try:
        study = catalog.get(args.name)
        if study.hash_seed and not args.render_only and argv is None:
            pin_hash_seed(["-m", "lab.studies", *sys.argv[1:]])
        bad = [kv for kv in args.set if "=" not in kv]
        if bad:
            raise LabError(f"--set takes KEY=VALUE, not {bad[0]!r}")
        options = dict(kv.split("=", 1) for kv in args.set)
        study = study.with_options(args.runs, **{k: _value(v) for k, v in options.items()})
        if args.render_only:
            page = render(study, load_results(study))
            own = "has no page" + (" (refreshed the page it feeds)" if study.refresh else "")
            print(f"rendered {page}" if page else f"{study.name} {own}")
            return 0
        results = run_study(study, jobs=args.jobs, save=not args.dry_run)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
