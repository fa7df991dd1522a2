"""Nightly fuzzing: the CI fuzz tests with more hypothesis examples, then atheris (optional).

The atheris stage is coverage-guided fuzzing of the same decoders (scripts/fuzz_atheris.py).

Usage: .venv/bin/python scripts/fuzz_nightly.py [--examples 20000] [--atheris SECONDS]
       [-- extra pytest args]

Runs tests/unit/streams/worker/test_fuzz_decoders.py with PRICELAB_FUZZ_EXAMPLES set (CI uses 150) and
hypothesis' example database kept in .hypothesis/ so that any failure found at night is
replayed first by the next CI run on the same machine (``--examples 0`` skips this stage).
``--atheris SECONDS`` then runs scripts/fuzz_atheris.py for that long, with its corpus kept in
.fuzz/atheris-corpus/ (each night starts where the last stopped) and any crashing input
written to .fuzz/atheris-crashes/. atheris is in the dev extra on Linux x86_64; elsewhere
install it by hand (it needs clang with libFuzzer to build). Exit status: the first stage
that failed (2 when atheris is asked for but missing).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--examples", type=int, default=20_000, help="examples per property (0: skip hypothesis)"
    )
    ap.add_argument(
        "--atheris", type=int, default=0, metavar="SECONDS", help="then fuzz with atheris"
    )
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    args = ap.parse_args()
    code = 0
    if args.examples > 0:
        env = os.environ | {"PRICELAB_FUZZ_EXAMPLES": str(args.examples)}
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            str(ROOT / "tests" / "unit" / "test_fuzz_decoders.py"),
            "--hypothesis-show-statistics", "--timeout=0", *args.pytest_args,
        ]  # fmt: skip
        t0 = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        print(
            f"fuzz_nightly: {args.examples} examples per property, "
            f"{time.monotonic() - t0:.0f}s, exit {code}"
        )
    if args.atheris > 0:
        atheris_code = run_atheris(args.atheris)
        code = code or atheris_code
    return code


def run_atheris(seconds: int) -> int:
    """scripts/fuzz_atheris.py for ``seconds`` on the kept corpus; libFuzzer's exit status."""
    if importlib.util.find_spec("atheris") is None:
        print(
            "fuzz_nightly: atheris is not installed: `.venv/bin/pip install atheris` (a wheel "
            "on Linux x86_64 with CPython 3.11; elsewhere it builds with clang and libFuzzer)"
        )
        return 2
    sys.path.insert(0, str(ROOT / "scripts"))
    import fuzz_atheris

    work = ROOT / ".fuzz"
    corpus, crashes = work / "atheris-corpus", work / "atheris-crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    fuzz_atheris.write_seeds(corpus)
    fuzz_atheris.write_dictionary(work / "atheris.dict")
    cmd = [
        sys.executable, str(ROOT / "scripts" / "fuzz_atheris.py"),
        f"-max_total_time={seconds}", f"-dict={work / 'atheris.dict'}",
        f"-artifact_prefix={crashes}/", "-timeout=10", "-rss_limit_mb=4096",
        # past the 64 KB event limit (too_large) and deep enough for nesting limits
        "-max_len=70000", "-use_value_profile=1",
        "-print_final_stats=1", str(corpus),
    ]  # fmt: skip
    t0 = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT)
    n = sum(1 for _ in corpus.iterdir())
    print(
        f"fuzz_nightly: atheris {time.monotonic() - t0:.0f}s, corpus {n} inputs, exit {code}"
        + (f"; crashing inputs in {crashes}" if code else "")
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
