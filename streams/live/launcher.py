"""Start and stop real ``pricelab worker`` processes: one launcher for the demo, the tests, the
studies and the benchmarks.

Each process gets its own free metrics and web ports (so several can run side by side, as
``--scale`` does in compose), its settings through the environment (``Settings.to_env``) and a
log file. :meth:`WorkerProcess.start` returns once ``/health`` answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from controller.settings import Settings
from streams.live.embedded import free_port
from streams.worker.memory import CONTROLLER_MMAP_THRESHOLD

#: glibc malloc settings for an analysis worker (set at exec: ``mallopt`` caps the mmap
#: threshold at 32 MB). A cycle allocates ~1 GB of short-lived numpy arrays of ~70 MB each at
#: 100,000 x 90; by default each is mmapped, page-faulted in and unmapped every cycle. With
#: these, freed memory stays in the heap for the next cycle: the steady cycle's estimate
#: (``from_long`` + ``dm`` + ``ht``) fell from 2.0-2.8 s to 1.5-1.8 s (medians of three
#: runs each, /tmp script, 100,000 x 90), at the same peak RSS; the process then holds its
#: peak between cycles. docker-compose.yml sets the same value (checked by a contract test).
ANALYSIS_GLIBC_TUNABLES = (
    "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"
)


#: glibc malloc settings for a controller worker: its mmap threshold fixed (why, and what it
#: costs: ``streams.worker.memory.CONTROLLER_MMAP_THRESHOLD``). A controller started without
#: GLIBC_TUNABLES sets the same threshold itself (``controller_malloc_at_start``).
#: docker-compose.yml sets the same value (checked by a contract test).
CONTROLLER_GLIBC_TUNABLES = f"glibc.malloc.mmap_threshold={CONTROLLER_MMAP_THRESHOLD}"


def role_env(roles: tuple[str, ...] | set[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker of these roles is started with, beyond its settings: the
    malloc settings for its role (analysis's, when it serves both), unless ``environ`` already
    sets GLIBC_TUNABLES: an operator's own value, even an empty one (glibc's defaults), wins
    for every role."""
    if "GLIBC_TUNABLES" in environ:
        return {}
    if "analysis" in roles:
        return {"GLIBC_TUNABLES": ANALYSIS_GLIBC_TUNABLES}
    if "controller" in roles:
        return {"GLIBC_TUNABLES": CONTROLLER_GLIBC_TUNABLES}
    return {}


class WorkerProcess:
    #: the logs this process's workers made for themselves (not those given as ``log``): a
    #: test session removes them when it passes and keeps them when it fails
    made_logs: list[Path] = []

    def __init__(
        self,
        settings: Settings,
        roles: tuple[str, ...] = ("controller",),
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.settings = settings
        self.roles = roles
        self.env = dict(env or {})
        self.web_port = free_port()
        self.metrics_port = free_port()
        if log is None:
            fd, name = tempfile.mkstemp(prefix="pricelab-worker-", suffix=".log")
            os.close(fd)
            log = Path(name)
            WorkerProcess.made_logs.append(log)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it (see :meth:`wait_healthy`)."""
        env = (
            os.environ
            | role_env(self.roles, os.environ)
            | self.settings.to_env()
            | {
                "PRICELAB_WEB_PORT": str(self.web_port),
                "PRICELAB_METRICS_PORT": str(self.metrics_port),
            }
            | self.env
        )
        args = [sys.executable, "-m", "streams.cli", "worker"]
        for r in self.roles:
            args += ["--role", r]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def wait_healthy(self, wait: float = 60.0) -> WorkerProcess:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.check_alive()
            if http_ok(self.web_port, "/health"):
                return self
            time.sleep(0.2)  # polling /health: the process gives no other signal
        raise TimeoutError(f"worker not healthy in {wait}s:\n{self.tail()}")

    def start(self, wait: float = 60.0) -> WorkerProcess:
        """Start the process and return once its ``/health`` answers."""
        return self.launch().wait_healthy(wait)

    def check_alive(self) -> None:
        """RuntimeError with the log's tail when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.roles} exited with {self.proc.returncode}:\n{self.tail()}"
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return str(r.read().decode())

    def kill9(self) -> None:
        """SIGKILL: no shutdown of any kind (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def http_ok(port: int, path: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
