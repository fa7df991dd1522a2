"""The README's five-minute walkthrough, run as written.

The bash block under "Five-minute walkthrough" is run by bash, command by command, in a fresh
directory that sees the repository's ``docs/`` and ``.venv``: the embedded stack and two
workers in the background on the ports the README names, the market played into them with
``pricelab simulate --live``, the operator's views and commands, the offline tools. Two
things differ from a person at a terminal, and only these: the set-up line (``./run setup``)
runs on the suite's own ``.venv``, which ``./run test`` has just set up (so it must find
nothing to install), and the background processes' output goes to log files, so that each
command's own output can be read. Every command must exit 0, and what it prints
must show the walkthrough's promise: a live estimate, a live report, a non-empty panel, the
state after each command, and the refusal after the stop.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: what the README's commands bind: broker, Redis, two workers' metrics and web ports
PORTS = (9092, 6379, 9464, 6066, 9465, 6067)


def walkthrough_commands() -> list[str]:
    """The README block's commands: continuation lines joined, comments and blanks dropped."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five-minute walkthrough", 1)[1]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending.strip())
        pending = ""
    return commands


def _without_comment(cmd: str) -> str:
    # the README's trailing comments start with "  #" (no command here has a '#' of its own)
    return re.split(r"\s+#", cmd, maxsplit=1)[0].strip()


def _run_in_own_group(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``argv`` in a process group of its own, its output captured; whatever way it ends (done,
    timed out, or the test interrupted), every process left in the group (the README's
    background stack and workers) is stopped: SIGTERM, so that `pricelab up` stops the broker
    and Redis it started, then SIGKILL for any still there after 20 s. The script's own EXIT
    trap does this when bash exits normally; a timeout kills bash before its trap runs."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the group, SIGKILL to whatever is left after 20 s; bash reaped."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap bash: a zombie still counts as in the group
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                break
            time.sleep(0.1)  # polling a condition with a deadline, not synchronisation
        else:
            continue
        break
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    busy = []
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    assert not busy, f"the walkthrough's ports are taken on this machine: {busy}"
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    for name in ("run", "pyproject.toml"):  # ./run setup finds the suite's .venv set up
        (tmp_path / name).symlink_to(ROOT / name)
    # ./run setup installs nothing when .venv's stamp is this pyproject's (./run test wrote it);
    # a stale stamp would make it install pricelab from this temporary directory
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    assert (ROOT / ".venv" / ".pricelab-installed").read_text().strip() == stamp
    commands = walkthrough_commands()
    assert commands[0].startswith("./run setup")
    assert len(commands) > 20
    script = ["trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    shown: list[str] = []
    for i, cmd in enumerate(commands):
        bare = _without_comment(cmd)
        if bare.endswith("&"):  # a background process: its output to a log of its own
            script.append(f"{bare[:-1].strip()} > bg-{i}.log 2>&1 &")
            continue
        shown.append(bare)
        script += [f"echo '@@cmd {i}'", bare, f'echo "@@rc $? {i}"']
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")}
    env.pop("VIRTUAL_ENV", None)
    # the block as written, but its `pricelab up` checks every output message's contract
    env["PRICELAB_EMBEDDED_CONTRACT_CHECKS"] = "true"
    proc = _run_in_own_group(["bash", "-c", "\n".join(script)], tmp_path, env, timeout=540)
    out: dict[int, str] = {}
    codes: dict[int, int] = {}
    current: int | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("@@cmd "):
            current = int(line.split()[1])
            out[current] = ""
        elif line.startswith("@@rc "):
            _, rc, cmd_no = line.split()
            codes[int(cmd_no)] = int(rc)
        elif current is not None:
            out[current] += line + "\n"
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in tmp_path.glob("bg-*.log"))
    failed = {commands[i]: rc for i, rc in codes.items() if rc != 0}
    assert not failed, f"{failed}\nstderr: {proc.stderr[-3000:]}{logs}"
    assert len(codes) == len(shown), f"not every command ran: {proc.stderr[-3000:]}{logs}"

    def output_of(prefix: str, nth: int = 0) -> str:
        hits = [i for i, c in enumerate(commands) if _without_comment(c).startswith(prefix)]
        return out[hits[nth]]

    assert "ready: .venv has pricelab" in output_of("./run setup")
    live = output_of("pricelab simulate --live")
    # the 7th period is in force, not complete, until the clock passes its end
    assert "estimate dm   after  6 periods" in live and "estimate fe   after  6 periods" in live
    # the scorecard after the last look: every metric (the spec gives unit costs), with truths
    assert "reading: units " in live and "profit " in live.split("reading:")[1], live
    for metric in ("units", "revenue", "profit", "price", "elasticity"):
        assert re.search(rf"^{metric}\s+[-+]\d", live, re.M), (metric, live)
    assert re.search(
        r"^walkthrough\s+random-days\s+running\s+period\s+6\b",
        output_of("pricelab experiment list"),
        re.M,
    )
    assert '"status": "running"' in output_of("pricelab assignments P0001")
    table = output_of("pricelab estimates walkthrough")
    assert re.search(r"^\s*units\s+fe\s", table, re.M) and re.search(
        r"^\s*profit\s+fe\s", table, re.M
    ), table
    assert "relative_ci_low" in output_of("pricelab analyze live.csv")
    cells = re.search(r"wrote (\d+) cells", output_of("pricelab panel export"))
    assert cells and int(cells.group(1)) == 40 * 6
    # the second terminal, without PRICELAB_CLOCK: the same cells, on the stack's clock
    second = output_of("env -u PRICELAB_CLOCK pricelab panel export")
    assert "wrote 240 cells (6 completed periods)" in second, second
    index = tmp_path / "report" / "index.html"
    assert index.is_file() and "walkthrough" in index.read_text()
    assert '"status": "paused"' in output_of("pricelab assignments P0001", 1)
    assert '"state": "stopped"' in output_of("pricelab experiment stop")
    refused = output_of("pricelab experiment resume walkthrough ||")
    assert "refused, as it should be" in refused
    assert "a stopped experiment is final" in proc.stderr
    # a typo of the id is refused in one sentence that names the id meant, not an empty trail
    assert "refused, as it should be" in output_of("pricelab experiment history walktrough")
    assert "there is no experiment 'walktrough' (did you mean 'walkthrough'?" in proc.stderr
    # the trail: the operator's commands under the shell's user@host, with their reasons,
    # the refused resume among them, and the worker's own decisions
    trail = output_of("pricelab experiment history walkthrough")
    assert trail.startswith("trail of walkthrough:"), trail
    assert "stop accepted" in trail and "reason: walkthrough done" in trail
    assert "resume REFUSED: experiment 'walkthrough' was stopped" in trail
    # the decision recorded after the stop, with its words and reason
    assert (
        "decision accepted: keep the control (arm 'control'); reason: a walkthrough, not a "
        "launch" in trail
    ), trail
    assert re.search(r"^\S+\s+(started|flipped)\s+worker ", trail, re.M), trail
    # in the order things happened (the clock stood still through them): each command
    # before the decision it caused
    lines = trail.splitlines()[1:]

    def where(step: str) -> int:
        """The first line of a command (``pause accepted``) or of a decision (``paused``)."""
        if " " in step:
            return next(i for i, ln in enumerate(lines) if f" {step}" in ln)
        return next(i for i, ln in enumerate(lines) if ln.split()[1] == step)

    steps = ["pause accepted", "paused", "resume accepted", "resumed", "freeze accepted",
             "frozen", "unfreeze accepted", "unfrozen", "stop accepted", "stopped"]  # fmt: skip
    at = [where(step) for step in steps]
    assert at == sorted(at), trail
    # the roles' Redis users, hashed passwords only, and their Kafka grants
    users = (tmp_path / "users.acl").read_text().splitlines()
    assert [u.split()[1] for u in users] == [
        "pricelab-controller",
        "pricelab-analysis",
        "pricelab-operator",
    ]
    assert all(re.search(r" on #[0-9a-f]{64} ", u) and "nopass" not in u for u in users)
    assert int(output_of("pricelab acl --kafka").strip()) > 10
    assert "tablets" in output_of("pricelab analyze panel.csv", 1) or "segment" in output_of(
        "pricelab analyze panel.csv", 1
    )


def test_a_timed_out_walkthrough_leaves_no_process_behind(tmp_path: Path) -> None:
    """The stack the README starts in the background must not outlive a walkthrough that
    timed out: bash is killed before its EXIT trap runs, so the group is stopped for it."""
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        _run_in_own_group(["bash", "-c", script], tmp_path, dict(os.environ), timeout=2)
    pid = int(pidfile.read_text())
    status = Path(f"/proc/{pid}/status")
    # gone, or a zombie its new parent has not reaped yet: either way no longer running
    assert not status.exists() or "\nState:\tZ" in status.read_text()
