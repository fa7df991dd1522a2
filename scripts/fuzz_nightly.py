"""Nightly fuzzing: the CI fuzz tests with many more hypothesis examples.

Usage: .venv/bin/python scripts/fuzz_nightly.py [--examples 20000] [-- extra pytest args]

Runs tests/unit/test_fuzz_decoders.py with PRICELAB_FUZZ_EXAMPLES set (CI uses 150) and
hypothesis' example database kept in .hypothesis/ so that any failure found at night is
replayed first by the next CI run on the same machine. Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20_000, help="examples per property")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    args = ap.parse_args()
    env = os.environ | {"PRICELAB_FUZZ_EXAMPLES": str(args.examples)}
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        str(ROOT / "tests" / "unit" / "test_fuzz_decoders.py"),
        "--hypothesis-show-statistics", "--timeout=0", *args.pytest_args,
    ]  # fmt: skip
    t0 = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    print(
        f"fuzz_nightly: {args.examples} examples per property, {time.monotonic() - t0:.0f}s, "
        f"exit {code}"
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
