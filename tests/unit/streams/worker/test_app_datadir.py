"""A worker leaves nothing in the directory it was started from: faust makes its data directory
even with in-memory tables, and it used to land in the working directory (a repository checkout
collected one ``<app_id>-controller-data`` per test run)."""

from __future__ import annotations

import shutil
from pathlib import Path

from controller.settings import Settings
from streams.worker.app import build_app


def test_faust_data_directory_is_outside_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app, _ = build_app(Settings(app_id="datadir-check"), {"controller"})
    datadir = Path(app.conf.datadir).resolve()
    assert not datadir.is_relative_to(tmp_path)
    assert "datadir-check" in datadir.name
    assert list(tmp_path.iterdir()) == []
    # faust makes it with mkdir(exist_ok=True) at start, without parents
    try:
        app._create_directories()
        assert datadir.is_dir()
        assert list(tmp_path.iterdir()) == []
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


def test_a_quiet_worker_does_not_log_at_debug_for_a_spinner() -> None:
    """At WARNING, faust's worker would set the root logger to DEBUG for its terminal spinner,
    so that every library's debug call built a record; the worker runs without it."""
    import logging

    from streams.worker.app import faust_worker

    settings = Settings(app_id="spinner-check", log_level="WARNING")
    app, _ = build_app(settings, {"controller"})
    worker = faust_worker(app, settings)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        root.handlers = [logging.NullHandler()]
        worker.on_setup_root_logger(root, logging.WARNING)  # what faust calls at start
        assert root.level != logging.DEBUG
        assert [type(h).__name__ for h in root.handlers] == ["NullHandler"]
    finally:
        root.setLevel(level)
        root.handlers = handlers
