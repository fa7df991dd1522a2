"""`pricelab up`: broker and Redis as child processes on loopback, topics created, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from aiokafka.admin import AIOKafkaAdminClient

pytestmark = pytest.mark.integration


def _printed(proc: subprocess.Popen, *keys: str) -> dict[str, str]:
    """What ``pricelab up`` printed, by each line's first word, once ``keys`` have been."""
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while not all(k in lines for k in keys):
        assert time.monotonic() < deadline, lines
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"pricelab up exited: {proc.poll()}"
        key, _, value = line.strip().partition(" ")
        lines[key] = value.strip()
    return lines


def _stop_up(proc: subprocess.Popen) -> None:
    """Stop ``pricelab up`` as an operator would (SIGTERM, which stops its children), and on a
    failed test kill whatever children are left: they run in sessions of their own and would
    outlive a killed parent."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def test_up_starts_both_creates_topics_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--kafka-port", "0", "--redis-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _printed(proc, "redis", "topics")
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
        _stop_up(proc)


@pytest.mark.parametrize("checks", [True, False])
def test_up_checks_the_output_contracts_when_the_setting_says_so(checks: bool) -> None:
    """PRICELAB_EMBEDDED_CONTRACT_CHECKS: with it the broker refuses an assignment that is
    not one (here: not JSON); without it (the default) the broker stores it, as Apache Kafka
    would, and pays nothing per message."""
    import os

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    env = os.environ | {"PRICELAB_EMBEDDED_CONTRACT_CHECKS": str(checks).lower()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--kafka-port", "0", "--redis-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        kafka = _printed(proc, "kafka", "topics")["kafka"]

        async def produce() -> str | None:
            producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait("pricelab.assignments", b"not json", key=b"P1")
                return None
            except KafkaError as exc:
                return type(exc).__name__
            finally:
                await producer.stop()

        answer = asyncio.run(produce())
        assert (answer is not None) is checks, answer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        _stop_up(proc)


#: ``pricelab up --tls`` on free ports
UP_TLS = [
    sys.executable,
    "-m",
    "streams.cli",
    "up",
    "--tls",
    "--kafka-port",
    "0",
    "--redis-port",
    "0",
]


def test_up_tls_prints_client_settings_that_work_and_serves_no_plaintext():
    """``pricelab up --tls``: what it prints is all a client needs; the CLI with exactly those
    settings creates the topics over TLS, and stops the three children on SIGTERM."""
    import os
    import shlex
    from pathlib import Path

    proc = subprocess.Popen(
        UP_TLS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _printed(proc, "export")
        assert lines["redis"].startswith("rediss://127.0.0.1:")
        env = dict(item.split("=", 1) for item in shlex.split(lines["export"]))
        assert env["PRICELAB_KAFKA__SECURITY_PROTOCOL"] == "SSL"
        assert Path(env["PRICELAB_KAFKA__SSL_CAFILE"]) == Path(lines["ca"])
        assert (
            Path(env["PRICELAB_REDIS__TLS_CA_FILE"])
            .read_text()
            .startswith("-----BEGIN CERTIFICATE-----")
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        names = sorted(c.name() for c in children)
        assert len(children) == 3 and names[0].startswith("redis"), names
        assert names[1].startswith("stunnel") and names[2] == "tansu", names
        base = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")}
        topics = subprocess.run(
            [sys.executable, "-m", "streams.cli", "topics"],
            capture_output=True,
            text=True,
            timeout=60,
            env=base | env,
        )
        assert topics.returncode == 0, topics.stderr
        listed = subprocess.run(
            [sys.executable, "-m", "streams.cli", "experiment", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env=base | env,
        )
        assert listed.returncode == 0, listed.stderr
        # the Redis port printed serves TLS only: a plaintext PING gets no +PONG
        port = int(lines["redis"].rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PING\r\n")
            try:
                answer = s.recv(16)
            except (ConnectionResetError, TimeoutError):
                answer = b""
            assert not answer.startswith(b"+PONG")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
    finally:
        _stop_up(proc)


def test_up_tls_without_stunnel_is_one_sentence(tmp_path):
    """A machine without stunnel: ``up --tls`` names the package to install, exit 2 (it looks
    for stunnel before it starts anything)."""
    proc = subprocess.run(
        UP_TLS,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # no stunnel on this PATH
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: TLS for the embedded broker needs stunnel, since Tansu 0.6 serves no TLS "
        "itself (docs/broker.md): apt-get install stunnel4"
    ]
