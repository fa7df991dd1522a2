"""Fixed string hashing for the studies' scripts.

analysis.clustering's Louvain partition depends on the order of string hashes, so the cluster
design's classes, and every figure computed from them, change between processes unless
``PYTHONHASHSEED`` is fixed. A study calls :func:`pin_hash_seed` after parsing its arguments.
"""

from __future__ import annotations

import os
import sys


def pin_hash_seed(args: list[str] | None = None) -> None:
    """Re-execute the running script (or ``python ARGS``, e.g. ``-m lab.studies NAME``) with
    ``PYTHONHASHSEED=0`` unless it is already set so."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        argv = [sys.executable, *(sys.argv if args is None else args)]
        os.execve(sys.executable, argv, os.environ | {"PYTHONHASHSEED": "0"})
