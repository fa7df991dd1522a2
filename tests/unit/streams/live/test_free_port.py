"""free_port draws below the kernel's ephemeral range: a service restarted on its port after a
kill must find it free, and an outgoing connection can take any port in that range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from streams.live import embedded
from streams.live.embedded import LOWEST_PORT, ephemeral_range, free_port


def test_a_port_is_drawn_below_the_ephemeral_range_and_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = tmp_path / "range"
    span.write_text("32768\t60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE", span)
    assert ephemeral_range(span) == (32768, 60999)
    ports = {free_port(rng=random.Random(seed)) for seed in range(20)}
    assert all(LOWEST_PORT <= p < 32768 for p in ports)
    assert len(ports) > 1  # drawn, not one fixed port
    for port in ports:  # each is free: a listener can bind it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_not_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    span = tmp_path / "range"
    span.write_text("32768 60999")
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE", span)
    taken = free_port(rng=random.Random(7))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", taken))
        s.listen()
        # the same draw again: the first port it tries is taken, so it moves on
        assert free_port(rng=random.Random(7)) != taken


def test_without_a_readable_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE", tmp_path / "absent")
    assert ephemeral_range() is None
    ports = {free_port() for _ in range(5)}
    kernel = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if kernel.exists():  # Linux: the kernel's choice is in its ephemeral range
        low, high = (int(x) for x in kernel.read_text().split())
        assert all(low <= p <= high for p in ports), ports
    assert all(0 < p < 65536 for p in ports)


def test_the_range_is_read_from_the_kernels_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = tmp_path / "range"
    span.write_text("20000 40000\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE", span)
    assert ephemeral_range() == (20000, 40000)
    assert all(LOWEST_PORT <= free_port(rng=random.Random(s)) < 20000 for s in range(10))
