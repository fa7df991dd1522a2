"""The Lua scripts and the Python side share one list of stored status words
(core/status.py): every status word a script writes or compares is one of its
constants, the scripts' "final" is its FINAL, and a script naming a word the Python side does
not define fails the check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import controller.store
from core import status

LUA = Path(controller.store.__file__).parent / "lua"

#: where a status word stands in a script: the value written to or compared with an
#: experiment's 'status' field, a holders entry ("status|gen"), a variable holding either
#: (``st``, ``st[1]``), and the claim kind holds() returns
_CONTEXTS = [
    re.compile(r"'HSET'\s*,\s*[^,]+,\s*'status'\s*,\s*'([^']*)'"),  # HSET(k, 'status', 'running'
    re.compile(r"'status'\s*\)\s*[=~]=\s*'([^']*)'"),  # HGET(..., 'status') == 'creating'
    re.compile(r"\bst(?:\[1\])?\s*[=~]=\s*'([^']*)'"),  # st ~= 'stopped', st[1] ~= 'running'
    re.compile(r"'([^'|]+)\|'\s*\.\."),  # 'running|'..gen
    re.compile(r"\breturn\s+\w+\s*,\s*'([^']*)'"),  # holds(): return x, 'creating'
]
#: the words holds() counts as final (a claim of such an experiment is dead)
_FINAL = re.compile(r"\bst\s*~=\s*'([^']*)'")

#: the stored status no script names: a paused experiment's claims are live because it is not
#: final, and the trigger script refuses every status but 'running'
NOT_IN_LUA = {status.PAUSED}


def _code(path: Path) -> str:
    """The script without its comments (no script has '--' inside a string)."""
    return "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())


def status_words(lua_dir: Path) -> dict[str, set[str]]:
    """script name -> the status words it writes or compares."""
    out: dict[str, set[str]] = {}
    for path in sorted(lua_dir.glob("*.lua")):
        code = _code(path)
        words = {m for rx in _CONTEXTS for m in rx.findall(code)}
        if words:
            out[path.name] = words
    return out


def problems(lua_dir: Path) -> list[str]:
    """Every disagreement between the scripts in ``lua_dir`` and core/status.py."""
    found = status_words(lua_dir)
    out = [
        f"{name} names the status {word!r}, which core/status.py does not define"
        for name, words in found.items()
        for word in sorted(words - set(status.STORED) - {status.RELEASING})
    ]
    used = set().union(*found.values()) if found else set()
    for word in sorted(set(status.STORED) - used - NOT_IN_LUA):
        out.append(f"no script names the status {word!r} (or the check no longer sees it)")
    final = set(_FINAL.findall(_code(lua_dir / "holds.lua")))
    if final != status.FINAL:
        out.append(
            f"holds.lua counts {sorted(final)} as final, status.FINAL {sorted(status.FINAL)}"
        )
    return out


def test_every_status_word_of_the_lua_scripts_is_a_python_constant_and_vice_versa() -> None:
    assert problems(LUA) == []
    found = status_words(LUA)
    # and holds.lua's claim kind of a stopped experiment whose last messages are not out
    assert set().union(*found.values()) == set(status.STORED) - NOT_IN_LUA | {status.RELEASING}
    assert {"create_init.lua", "create_open.lua", "holds.lua", "trigger_save.lua"} <= set(found)


def test_a_script_naming_a_word_the_python_side_does_not_define_fails(tmp_path: Path) -> None:
    lua = tmp_path / "lua"
    shutil.copytree(LUA, lua)
    script = lua / "trigger_save.lua"
    code = script.read_text()
    assert "st[1] ~= 'running'" in code
    script.write_text(code.replace("st[1] ~= 'running'", "st[1] ~= 'halted'"))
    assert problems(lua) == [
        "trigger_save.lua names the status 'halted', which core/status.py does not define"
    ]
    # a final word the Python side does not know: named, and holds.lua's final differs
    holds = lua / "holds.lua"
    holds.write_text(holds.read_text().replace("st ~= 'ended'", "st ~= 'archived'"))
    got = problems(lua)
    assert any("holds.lua names the status 'archived'" in p for p in got)
    assert any("holds.lua counts" in p for p in got)


def test_the_assignment_messages_status_is_one_of_the_modes() -> None:
    from typing import get_args

    from streams.worker.schemas import AssignmentMessage

    assert set(get_args(AssignmentMessage.model_fields["status"].annotation)) == set(status.MODES)
