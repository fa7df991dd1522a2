"""`pricelab up`: broker and Redis as child processes on loopback, topics created, clean stop."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from aiokafka.admin import AIOKafkaAdminClient

pytestmark = pytest.mark.integration


def test_up_starts_both_creates_topics_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--kafka-port", "0", "--redis-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while "redis" not in lines or "topics" not in lines:
            assert time.monotonic() < deadline, lines
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"pricelab up exited: {proc.poll()}"
            key, _, value = line.strip().partition(" ")
            lines[key] = value.strip()
        kafka = lines["kafka"]
        host, port = kafka.split(":")
        assert host == "127.0.0.1"
        assert lines["redis"].startswith("redis://127.0.0.1:")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 2
        # both listen on loopback only
        for child in children:
            for c in child.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    assert c.laddr.ip == "127.0.0.1", (child.name(), c.laddr)

        async def topics() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
            await admin.start()
            try:
                return await admin.list_topics()
            finally:
                await admin.close()

        assert "pricelab.assignments" in asyncio.run(topics())
        with socket.create_connection(
            ("127.0.0.1", int(lines["redis"].rsplit(":", 1)[1].split("/")[0]))
        ) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(16).startswith(b"+PONG")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
