"""`pricelab acl`: the Redis users of the roles, generated from the store's key names and its
scripts' declarations (controller/store/acl.py); tests/integration/test_redis_acl.py loads
them into a real Redis 7."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from pydantic import SecretStr

import controller.store.keys as keys
from controller.settings import Settings
from controller.store.acl import ROLES, acl_lines, script_commands, script_declarations
from streams.cli import main
from streams.worker.logging import secret_values

LUA = resources.files("controller.store").joinpath("lua")
SCRIPTS = sorted(Path(str(f)).stem for f in LUA.iterdir() if str(f).endswith(".lua"))
STORE = Path(__file__).resolve().parents[4] / "controller" / "store"
PASSWORDS = {"controller": "a", "analysis": "b", "operator": "c"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_declares_exactly_the_commands_it_calls_on_named_keys(name: str) -> None:
    declared = script_declarations(name)
    assert set(declared) == script_commands(name)
    names = set(keys.CATALOG_KEYS) | set(keys.EXPERIMENT_KEYS)
    assert all(ks and ks <= names for ks in declared.values()), declared


def test_every_experiment_key_the_store_names_is_in_the_key_table() -> None:
    """The suffixes after an experiment's base, as the store modules (``f"{base}:state"``,
    ``f"{self.exp(id)}:a:{k}"``) and the scripts (``base..':excluded'``) write them."""
    suffixes = {v.split(":")[0].removesuffix("*") for v in keys.EXPERIMENT_KEYS.values()}
    python = re.compile(r"\{(?:base|self\.exp\([a-z_.]+\))\}:([a-z_]+)")
    lua = re.compile(r"base\s*\.\.\s*'?:([a-z_]+)")
    found: set[str] = set()
    for path in STORE.glob("*.py"):
        found |= set(python.findall(path.read_text()))
    for path in STORE.glob("lua/*.lua"):
        found |= set(lua.findall(path.read_text()))
    assert {"state", "a", "sums", "seen", "excluded", "totals"} <= found  # the scan sees them
    assert found <= suffixes, found - suffixes


def _users(prefix: str = "pl") -> dict[str, str]:
    return {line.split()[1]: line for line in acl_lines(prefix, PASSWORDS)}


def _selectors(line: str) -> dict[str, list[str]]:
    """command -> its key permissions, from the line's ``(+cmd %R~... )`` selectors."""
    out: dict[str, list[str]] = {}
    for body in re.findall(r"\(([^)]*)\)", line):
        command, *perms = body.split()
        out[command.removeprefix("+")] = perms
    return out


def test_the_operator_may_read_and_never_write() -> None:
    line = _users()["pricelab-operator"]
    for command, perms in _selectors(line).items():
        assert all(p.startswith("%R~") for p in perms), (command, perms)
    assert "+evalsha " not in line and "(+evalsha " not in line
    assert "+multi" not in line and "+@" not in line and "nopass" not in line


def test_the_analysis_worker_may_drop_compacted_records_but_never_write_them() -> None:
    sel = _selectors(_users()["pricelab-analysis"])
    records = "pl:exp:{*}:a:*"
    assert sel["del"] == [f"%W~{records}", "%W~pl:exp:{*}:sums:*"]
    writes = {c for c, ps in sel.items() if any(p.endswith(records) and "W" in p for p in ps)}
    assert writes == {"del", "evalsha"}  # evalsha: a script's own HSET is checked by Redis
    assert "pl:exp:{*}:turn" not in " ".join(p for ps in sel.values() for p in ps)
    assert "{pl}:product:*" not in " ".join(p for ps in sel.values() for p in ps)


def test_no_role_may_write_the_simulated_clock() -> None:
    for line in _users().values():
        for perms in _selectors(line).values():
            assert "%W~{pl}:clock" not in perms and "%RW~{pl}:clock" not in perms


def test_lines_follow_the_key_prefix_and_hash_the_passwords() -> None:
    users = _users("shop7")
    assert list(users) == ["pricelab-controller", "pricelab-analysis", "pricelab-operator"]
    # sha256("a"), a published test vector
    sha_a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert f" on #{sha_a} " in users["pricelab-controller"]
    for line in users.values():
        assert "{pl}" not in line and "pl:exp:" not in line
        assert "%R~{shop7}:exp:index" in line


def test_the_cli_prints_the_lines_and_refuses_a_missing_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for role in ROLES:
        monkeypatch.setenv(role.password_env, PASSWORDS[role.name])
    with pytest.raises(SystemExit) as done:
        main(["acl"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["user", f"pricelab-{r}"] for r in ("controller", "analysis", "operator")
    ]
    assert "#ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" in lines[0]
    monkeypatch.delenv("PRICELAB_ACL_PASSWORD_ANALYSIS")
    with pytest.raises(SystemExit) as done:
        main(["acl"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PRICELAB_ACL_PASSWORD_ANALYSIS is not set" in err


def test_acl_passwords_are_scrubbed_from_logs() -> None:
    s = Settings(acl_password_operator=SecretStr("op-pw-123"))
    assert "op-pw-123" in secret_values(s)
    assert "op-pw-123" not in repr(s)
