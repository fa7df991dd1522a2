"""Start and stop real `pricelab worker` processes for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller.settings import Settings
from streams.embedded import free_port


class WorkerProcess:
    def __init__(self, settings: Settings, roles: tuple[str, ...] = ("controller",)) -> None:
        self.settings = settings
        self.roles = roles
        self.web_port = free_port()
        self.metrics_port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="pricelab-worker-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 60.0) -> WorkerProcess:
        env = (
            os.environ
            | self.settings.to_env()
            | {
                "PRICELAB_WEB_PORT": str(self.web_port),
                "PRICELAB_METRICS_PORT": str(self.metrics_port),
            }
        )
        args = [sys.executable, "-m", "streams.cli", "worker"]
        for r in self.roles:
            args += ["--role", r]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            if _http_ok(self.web_port, "/health"):
                return self
            time.sleep(0.2)
        raise TimeoutError(f"worker not healthy in {wait}s:\n{self.log.read_text()[-3000:]}")

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return r.read().decode()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _http_ok(port: int, path: str) -> bool:
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
