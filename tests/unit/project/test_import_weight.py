"""What a controller worker and the CLI's commands import at start: not the statistics stack.

A controller worker starts on every deploy and restart, and every ``pricelab`` command is a new
process: scipy, scikit-learn, the analysis package and the lab cost 0.6-1.5 s of CPU to import
and none of the controller's paths needs them at start. ``controller.adaptive`` (imported by
the spec) once imported scipy at its top, which every CLI call and controller start paid; its
rule now imports scipy when a flip of an adaptive ladder first runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _printed(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (its imports counted from nothing)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


HEAVY = ("scipy", "sklearn", "analysis", "lab", "matplotlib")

#: the modules a controller worker and the experiment/schedule commands load
LIGHT = (
    "controller.spec",
    "controller.flipper",
    "streams.worker.app",
    "streams.worker.runtime",
    "streams.cli.entry",
    "streams.cli.experiment",
)


def test_the_controller_worker_and_the_cli_load_no_statistics_stack() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in LIGHT)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    assert _printed(code) == "[]"


def test_the_controller_worker_and_the_cli_load_no_pandas() -> None:
    """pandas is the analysis role's (its panel source reads cells into frames): a controller
    worker imported it through ``controller.panel_source`` at the top of its runtime, 0.3 s
    of CPU at every start, until the analysis role imported that module itself."""
    code = (
        "import sys\n" + "".join(f"import {m}\n" for m in LIGHT) + "print('pandas' in sys.modules)"
    )
    assert _printed(code) == "False"


def test_an_offline_command_loads_its_own_plugin_alone() -> None:
    """``pricelab schedule`` registers the schedule command only: no estimator, no lab."""
    code = (
        "import sys\n"
        "import streams.cli.entry as entry\n"
        "entry._load_plugins('schedule')\n"
        "names = {c.name for c in entry._app.registered_commands}\n"
        "print('schedule' in names, 'simulate' in names, "
        f"sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    assert _printed(code) == "True False []"


def test_the_lab_commands_register_without_the_estimators_or_the_market() -> None:
    """``pricelab simulate`` (``--live`` too), ``plan`` and ``compare-designs`` register their
    options without importing the comparison, the market or the reader: those come with the
    command's work. ``simulate --live`` never needs the estimators (lab.compare imported
    analysis.arms, scipy.stats and scikit-learn: a second of CPU per call)."""
    code = (
        "import sys\n"
        "import streams.cli.entry as entry\n"
        "entry._load_plugins('simulate')\n"
        "names = {c.name for c in entry._app.registered_commands}\n"
        "print(sorted(names & {'simulate', 'plan', 'compare-designs'}), sorted(m for m in "
        "('lab.compare', 'lab.market', 'lab.simulate', 'analysis.reader', 'analysis.arms', "
        "'scipy', 'sklearn', 'pandas') if m in sys.modules))"
    )
    assert _printed(code) == "['compare-designs', 'plan', 'simulate'] []"


def test_reading_estimates_loads_no_statistics_stack() -> None:
    """``pricelab estimates``, ``simulate --live`` and the demo read the estimates topic
    through streams.client.estimates: it once imported analysis.metrics (every estimator,
    scipy.stats, scikit-learn) for the metrics' captions and analysis.verdict's scipy for a
    power function it never calls, 1.9 s of CPU per process."""
    code = (
        "import sys\n"
        "import streams.client.estimates\n"
        "print(sorted(m for m in ('scipy', 'sklearn', 'pandas', 'analysis.metrics') "
        "if m in sys.modules))"
    )
    assert _printed(code) == "[]"
