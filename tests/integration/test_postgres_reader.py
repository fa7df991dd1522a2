"""The one reader against a real PostgreSQL server (Debian's ``postgresql`` package, started
here in a temporary directory, as other tests start ``redis-server``): ``plan --history URL
--table NAME`` and ``analyze URL --query SQL`` give the answers the same table gives as a CSV,
ids stored as text keep their zeros, and what cannot be read is one sentence, exit 2, with the
password left out."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.cli import main
from streams.live.embedded import free_port
from tests.unit import _metamorphic as m

pytestmark = pytest.mark.integration


def _as_postgres(argv: list[str]) -> list[str]:
    """The server refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    adbc = pytest.importorskip("adbc_driver_postgresql.dbapi")
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))  # Debian's, any version
    initdb = str(found[-1]) if found else shutil.which("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # not under pytest's root-only temporary directory: the postgres user must reach it
    root = Path(tempfile.mkdtemp(prefix="pricelab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "pricelab", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(  # -w: returns once the server accepts connections
        _as_postgres(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    url = f"postgresql://pricelab:unused-secret@127.0.0.1:{port}/postgres"
    try:
        with adbc.connect(url) as con, con.cursor() as cur:
            cur.adbc_ingest("history", m.history(11), mode="create")
            ladder, _ = m.relabelled(m.product_ladder(3), "product")
            cur.adbc_ingest("ladder", ladder, mode="create")
            con.commit()
        yield url
    finally:
        stop = [pg_ctl, "-D", str(data), "-m", "fast", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_plan_reads_a_history_table_on_the_server_as_its_csv(server: str, tmp_path: Path) -> None:
    from tests.unit.lab.test_metamorphic_plan import answer, plan

    code, a, err = plan(tmp_path / "csv", m.history(11))
    assert code == 0, err
    spec = tmp_path / "csv" / "spec.json"
    argv = ["plan", str(spec), "--history", server, "--table", "history", "--unit", "sku",
            "--time", "day", "--outcome", "units", "--effect", "0.4", "--sims", "20", "--seed",
            "0", "--jobs", "1", "--json"]  # fmt: skip
    code, out, err = run(argv)
    assert code == 0, err
    m.assert_same(answer(a), answer(json.loads(out)))


def test_analyze_reads_a_query_on_the_server_as_its_csv(server: str, tmp_path: Path) -> None:
    ladder, _ = m.relabelled(m.product_ladder(3), "product")
    path, _ = m.write(ladder, tmp_path, "csv")
    options = ["--unit", "product", "--time", "day", "--outcome", "revenue", "--arm", "arm",
               "--control", "list", "--method", "dm", "--json"]  # fmt: skip
    code, a, err = run(["analyze", str(path), *options])
    assert code == 0, err
    code, b, err = run(["analyze", server, "--query", "SELECT * FROM ladder", *options])
    assert code == 0, err
    m.assert_same(m.numbers(json.loads(a)), m.numbers(json.loads(b)))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--table", "nope"], 'relation "nope" does not exist'),
        ([], "give --table NAME or --query SQL"),
        (["--query", "SELECT units FROM history"], "['sku', 'day'] not found"),
    ],
)
def test_what_the_server_cannot_give_is_one_sentence(
    server: str, options: list[str], says: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {"id": "pg", "design": "random-days", "treatment_policy": "t", "control_policy": "c",
             "start": "2026-03-02T00:00:00+00:00", "end": "2026-03-16T00:00:00+00:00",
             "products": ["P00", "P01"]}
        )
    )  # fmt: skip
    argv = ["plan", str(spec), "--history", server, *options, "--unit", "sku", "--time", "day",
            "--outcome", "units"]  # fmt: skip
    code, _, err = run(argv)
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "unused-secret" not in err
