"""benchmarks/probe_catchup_memory.py's ``--depth``: put this directory first on a controller
worker's ``PYTHONPATH`` and it loads benchmarks/memtrace (the memory trace) and, with
``PRICELAB_PROBE_SALES_DEPTH`` set, makes it the default ``depth`` of
``streams.worker.consumer.BatchConsumer``: the sales consumer takes the default, the
competitor consumer passes its own. A probe's knob, not a setting."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_MEMTRACE = Path(__file__).resolve().parents[1] / "memtrace" / "sitecustomize.py"
_spec = importlib.util.spec_from_file_location("pricelab_memtrace", _MEMTRACE)
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))

if os.environ.get("PRICELAB_PROBE_SALES_DEPTH"):
    from streams.worker.consumer import BatchConsumer

    _defaults = dict(BatchConsumer.__init__.__kwdefaults__ or {})
    _defaults["depth"] = int(os.environ["PRICELAB_PROBE_SALES_DEPTH"])
    BatchConsumer.__init__.__kwdefaults__ = _defaults
