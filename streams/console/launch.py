"""``pricelab console`` in a child process, on given settings: what ``pricelab demo --console``
leaves up after the demo, and what the browser test signs in to. One helper for both."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, NoReturn

from controller.errors import EmbeddedStackError
from controller.settings import Settings

_SAID_PASSWORD = re.compile(r"console: sign in as admin with the one-time password (\S+)")
_SAID_URL = re.compile(r"console: (http://\S+)")


class ConsoleProcess:
    """The console on ``settings`` (its host and port among them), its log in ``log``."""

    def __init__(self, settings: Settings, log: Path | None = None) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        #: the lab's one-time admin password, when the console said one
        self.password: str | None = None
        self._log: IO[str] | None = None

    def start(self, timeout: float = 30.0) -> ConsoleProcess:
        """Start it and wait until it has said its URL (and its password) and answers
        ``/health``; raise EmbeddedStackError, with its log's end, when it does not."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")}
        env |= self.settings.to_env()
        self._log = (
            self.log.open("w") if self.log is not None else open(os.devnull, "w")  # noqa: SIM115
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "console"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        deadline = time.monotonic() + timeout
        # its first lines, read on a thread (a pipe's buffered reader and a select on its
        # descriptor disagree about what is left to read)
        said: queue.Queue[str] = queue.Queue()
        out = self.proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                said.put(line)

        threading.Thread(target=read, daemon=True).start()
        while not self.url:
            try:
                line = said.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._fail("did not say its URL")
            if (m := _SAID_PASSWORD.search(line)) is not None:
                self.password = m.group(1)
            elif (m := _SAID_URL.search(line)) is not None:
                self.url = m.group(1).rstrip("/")
        while not self._healthy():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self._fail("did not answer /health")
            time.sleep(0.1)  # a poll of a server starting up, with a deadline
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:  # noqa: S310 - our own
                return bool(r.status == 200)
        except OSError:
            return False

    def _fail(self, what: str) -> NoReturn:
        self.stop()
        tail = self.log.read_text()[-2000:] if self.log is not None and self.log.exists() else ""
        raise EmbeddedStackError(f"the console {what}{': ' + tail if tail else ''}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
