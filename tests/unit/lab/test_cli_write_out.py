"""The lab commands' ``--out`` (lab.cli._write_out, shared by simulate, compare-designs and
plan): each file written is named; a directory that cannot be written is one sentence and
exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from lab.cli import _write_out


def test_each_file_written_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write() -> list[Path]:
        (tmp_path / "a.csv").write_text("x\n")
        return [tmp_path / "a.csv"]

    _write_out(tmp_path, write, err=True)
    assert capsys.readouterr().err == f"wrote {tmp_path / 'a.csv'}\n"


def test_a_directory_that_cannot_be_written_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory should be

    def write() -> list[Path]:
        (blocked / "out").mkdir(parents=True)
        return []

    with pytest.raises(typer.Exit) as done:
        _write_out(blocked / "out", write)
    assert done.value.exit_code == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == f"error: cannot write to {blocked / 'out'}: Not a directory\n"
