"""One frozen settings object per process, loaded from ``PRICELAB_*`` environment variables.

Nested fields use ``__``: ``PRICELAB_KAFKA__BOOTSTRAP_SERVERS=broker:9092``,
``PRICELAB_REDIS__URL=redis://redis:6379/0``, ``PRICELAB_TOPICS__SALES=...``.
Built once in ``main()`` and passed down; nothing else reads ``os.environ``.
Secrets are ``SecretStr`` so they never print in logs or reprs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def check_key_prefix(prefix: str) -> str:
    """The key prefix, if it can tag Redis keys (controller/store/keys.py): no braces (they
    would move the hash tag) and no ':' at its ends."""
    if not prefix or "{" in prefix or "}" in prefix or prefix[0] == ":" or prefix[-1] == ":":
        raise ValueError(
            f"key prefix {prefix!r}: give a non-empty name without braces or a ':' at its ends"
        )
    return prefix


def check_tls_files(
    prefix: str,
    *,
    ca: str | None,
    cert: str | None,
    key: str | None,
    names: tuple[str, str, str],
) -> None:
    """Each TLS file a setting names exists and holds what it should: certificates valid now
    (controller/certs.py), a private key that is the certificate's own (in its own file or
    in the certificate's); else one sentence naming the setting."""
    from controller.certs import (
        check_certificate_file,
        check_key_file,
        check_key_pair,
        holds_private_key,
    )
    from controller.clock import WallClock
    from controller.errors import ConfigurationError

    now = WallClock().now()  # certificates expire by the wall's time, whatever the lab's
    ca_s, cert_s, key_s = (prefix + n for n in names)
    if ca:
        check_certificate_file(ca, ca_s, now, bundle=True)
    if cert:
        check_certificate_file(cert, cert_s, now)
        if not key and not holds_private_key(cert):
            raise ConfigurationError(
                f"{cert_s} is set without {key_s}, and holds no private key: give the client "
                "certificate's private key"
            )
        if key:
            check_key_file(key, key_s)
        check_key_pair(cert, key or None, cert_s, key_s)
    elif key:
        raise ConfigurationError(f"{key_s} is set without {cert_s}: give the client certificate")


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "pricelab"
    partitions: int = Field(default=4, ge=1, description="Partitions for topics pricelab creates.")
    replication_factor: int = Field(default=1, ge=1)
    #: retention of the event topics (sales, competitor prices, commands and their replies);
    #: longer than allowed_lateness, so a late sale can still be read
    event_retention: timedelta = timedelta(days=7)
    #: retention of the record topics (estimates, experiment events, dead letters)
    record_retention: timedelta = timedelta(days=90)
    #: how pricelab's producers compress what they write (Kafka's ``compression.type``): a
    #: flip's million near-identical assignment messages shrink ~60x with zstd, which the
    #: producer, the wire and the broker then handle instead of ~300 MB (benchmarks/README.md).
    #: Readers need the codec: every maintained Kafka client reads zstd (Kafka >= 2.1)
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_ok(cls, v: str) -> str:
        servers = [x.strip() for x in v.split(",")]
        if not all(servers):
            raise ValueError("must be host:port addresses separated by commas")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if sep and (not host or not port.isdigit() or not 0 < int(port) < 65536):
                raise ValueError(f"{server!r} is not host:port with a port from 1 to 65535")
        return ",".join(servers)

    @property
    def producer_compression(self) -> str | None:
        """``compression_type`` as aiokafka's producer takes it (None: none)."""
        return None if self.compression_type == "none" else self.compression_type

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for aiokafka clients (security options passed through)."""
        kw: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            check_tls_files(
                "PRICELAB_KAFKA__",
                ca=self.ssl_cafile,
                cert=self.ssl_certfile,
                key=self.ssl_keyfile,
                names=("SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"),
            )
            kw["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kw


class RedisSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    #: a Redis Cluster: the URL names one of its nodes (the others are discovered). A URL
    #: starting with redis+cluster:// or rediss+cluster:// selects it too
    cluster: bool = False
    #: a Redis Sentinel deployment: the sentinels' addresses (``host:port``, comma-separated;
    #: the port defaults to 26379). The client asks them for the primary of
    #: ``sentinel_service`` and follows a failover to the replica they promote; the URL then
    #: gives only the scheme (``rediss://``: TLS, to the sentinels too), the database and
    #: credentials, and its host is not used
    sentinels: str | None = None
    #: the name the sentinels monitor the primary under (their ``sentinel monitor <name> ...``)
    sentinel_service: str | None = Field(default=None, validate_default=True)
    #: the sentinels' own password (their ``requirepass``), when they need one
    sentinel_password: SecretStr | None = None
    #: replicas that must have a sales batch (Redis ``WAIT``) before its offsets are
    #: committed, a decision before it is published, a command's change before its reply;
    #: 0: not waited for (replication stays asynchronous, and a failover may lose a committed
    #: batch's sales, a published decision, a command replied to)
    wait_replicas: int = 0
    #: how long each waits for them; fewer in time is an outage: the batch is tried again,
    #: a decision or a reply waits on where it is
    wait_timeout_ms: int = 1000
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: SecretStr) -> SecretStr:
        # the URL may hold a password: the message never repeats it
        try:
            parts = urlsplit(v.get_secret_value())
            port = parts.port
        except ValueError:
            raise ValueError("is not a valid URL (is the port a number from 1 to 65535?)") from None
        if parts.scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
            raise ValueError(
                "must start with redis://, rediss://, unix://, redis+cluster:// or "
                "rediss+cluster://"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host (e.g. redis://127.0.0.1:6379/0)")
        if port == 0:
            raise ValueError("has port 0; give a port from 1 to 65535")
        return v

    @field_validator("sentinels")
    @classmethod
    def _sentinels_ok(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            return None  # an empty variable (``${SENTINELS:-}``) leaves Sentinel off
        addresses = [x.strip() for x in v.split(",")]
        if not all(addresses):
            raise ValueError("must be the sentinels' host:port addresses separated by commas")
        for address in addresses:
            sentinel_address(address)
        url = info.data.get("url")
        scheme = url.get_secret_value().split("://", 1)[0] if url is not None else ""
        if info.data.get("cluster") or scheme.endswith("+cluster"):
            raise ValueError(
                "is set for a Redis Cluster (PRICELAB_REDIS__CLUSTER or a +cluster URL), which "
                "fails over by itself: unset one of them"
            )
        if scheme == "unix":
            raise ValueError(
                "is set and PRICELAB_REDIS__URL starts with unix://: the sentinels name TCP "
                "primaries, so give a redis:// (or rediss://) URL for the database and "
                "credentials"
            )
        return ",".join(addresses)

    @field_validator("sentinel_service")
    @classmethod
    def _service_ok(cls, v: str | None, info: ValidationInfo) -> str | None:
        if "sentinels" not in info.data:  # refused itself: one sentence is enough
            return v
        if info.data["sentinels"] is None:
            if v is not None:
                raise ValueError(
                    "is set without PRICELAB_REDIS__SENTINELS: give the sentinels' addresses "
                    "too, or unset it"
                )
            return v
        if v is None or not v.strip():
            raise ValueError(
                "is unset while PRICELAB_REDIS__SENTINELS is set: give the name the sentinels "
                "monitor the primary under (their `sentinel monitor <name> ...`)"
            )
        if any(c.isspace() for c in v):
            raise ValueError(f"{v!r} holds a space: give the name as the sentinels spell it")
        return v

    @field_validator("sentinel_password")
    @classmethod
    def _sentinel_password_ok(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is not None and "sentinels" in info.data and info.data["sentinels"] is None:
            raise ValueError(
                "is set without PRICELAB_REDIS__SENTINELS: give the sentinels' addresses too, "
                "or unset it"
            )
        return v

    @field_validator("wait_replicas")
    @classmethod
    def _wait_replicas_ok(cls, v: int, info: ValidationInfo) -> int:
        if v < 0:
            raise ValueError(f"is {v}: give how many replicas to wait for, or 0 not to wait")
        url = info.data.get("url")
        scheme = url.get_secret_value().split("://", 1)[0] if url is not None else ""
        if v and (info.data.get("cluster") or scheme.endswith("+cluster")):
            raise ValueError(
                "is set for a Redis Cluster (PRICELAB_REDIS__CLUSTER or a +cluster URL), whose "
                "nodes each have their own replicas, which pricelab does not wait for: unset it"
            )
        return v

    @field_validator("wait_timeout_ms")
    @classmethod
    def _wait_timeout_ok(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(
                f"is {v}: give the milliseconds a sales batch or a decision waits for its "
                "replicas, from 1 (Redis's WAIT 0 would wait for ever)"
            )
        return v

    @property
    def is_cluster(self) -> bool:
        return self.cluster or self.url.get_secret_value().split("://", 1)[0].endswith("+cluster")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port) pairs; empty without Sentinel."""
        return [sentinel_address(x) for x in (self.sentinels or "").split(",") if x]


def sentinel_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; ``host`` alone: Sentinel's port 26379) as a pair, or a
    ValueError saying what is wrong with it (never the address itself when it looks like a
    URL or holds ``user:password@``: the sentence reaches logs)."""
    if "@" in address or "://" in address:
        raise ValueError(
            "holds a URL or credentials (user:password@): give the sentinels as host:port, "
            "and their password in PRICELAB_REDIS__SENTINEL_PASSWORD"
        )
    host, port = address, "26379"
    if address.startswith("["):
        inside, sep, after = address[1:].partition("]")
        host, port = inside, after.removeprefix(":") if sep and after else port
        if not sep or (after and not after.startswith(":")):
            host = ""
    elif address.count(":") == 1:
        host, port = address.split(":")
    elif ":" in address:
        host = ""  # an IPv6 address without brackets: the port cannot be told apart
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{address!r} is not host:port with a port from 1 to 65535 (an IPv6 address "
            "in brackets: [::1]:26379)"
        )
    return host, int(port)


class TopicSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    competitor_prices: str = "pricelab.competitor-prices"
    sales: str = "pricelab.sales"
    assignments: str = "pricelab.assignments"
    estimates: str = "pricelab.estimates"
    commands: str = "pricelab.commands"
    command_replies: str = "pricelab.command-replies"
    experiment_events: str = "pricelab.experiment-events"
    dead_letter: str = "pricelab.dead-letter"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class AnalysisSettings(BaseModel):
    """How the analysis worker reads an experiment too large to hold whole (issue #42,
    ``analysis.chunked``; docs/operations.md, "Experiments of many products")."""

    model_config = ConfigDict(frozen=True)

    #: an experiment of more products than this is read in chunks of products: its
    #: estimators that are sums over products (dm, ht, hajek) from every product's sums,
    #: every other one on a seeded sample (at 100,000 products x 90 days the whole panel
    #: took 1.55 GB: benchmarks/README.md)
    chunked_above: int = Field(default=100_000, ge=0)
    #: products read at a time (a multiple of the compacted periods' 65,536-product blocks
    #: reads each block once); one chunk's matrices are ~30 bytes a product-period
    chunk_products: int = Field(default=65_536, ge=1)
    #: products of the seeded sample on which the estimators that are not sums over
    #: products (fe, cuped, the synthetic controls, ...) and the elasticity are fitted
    sample_products: int = Field(default=20_000, ge=0)
    #: one experiment's chunks spread over the analysis workers (analysis.sharded): the
    #: partitions of the shard topic whose consumer group assigns them (0: off, each worker
    #: analyses every experiment alone). Choose at least the number of analysis workers
    #: (a worker beyond it owns no shard); fixed once the topic exists
    shards: int = Field(default=0, ge=0)
    #: seconds the worker that merges a look waits for the other workers' chunks before it
    #: computes the missing ones itself
    shard_wait_s: float = Field(default=60.0, gt=0)


class ConsoleSettings(BaseModel):
    """The web console (``pricelab console``, streams/console; docs/console.md)."""

    model_config = ConfigDict(frozen=True)

    #: loopback by default: reaching it from elsewhere is a deliberate choice (a proxy in front)
    host: str = "127.0.0.1"
    port: int = Field(default=6080, ge=0, le=65535)
    #: the users who may sign in: one ``name:role:argon2-hash`` a line
    #: (``pricelab console hash`` makes a line); unset, only the one-time admin of the lab
    users_file: Path | None = None
    #: take the user from this request header, set by a trusted upstream that signs users in
    #: (oauth2-proxy: ``X-Forwarded-User``), instead of the console's own sign-in; the users
    #: file still gives each user's role. Only behind that upstream: anyone who reaches the
    #: console directly could set the header
    trusted_user_header: str | None = None
    #: signs the session cookies; unset, a random one per process (sessions end with it)
    session_secret: SecretStr | None = None
    #: how long a sign-in lasts
    session_max_age: timedelta = timedelta(hours=12)
    #: send the session cookie over HTTPS only (behind a TLS proxy)
    secure_cookies: bool = False
    #: seconds of broker answers without a new estimate that count as "caught up" when the
    #: console first reads an experiment's estimates (streams.client.estimates)
    estimates_idle: float = Field(default=1.0, gt=0)
    #: seconds an action waits for the controller's reply
    command_timeout: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRICELAB_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    #: every Redis key starts with it (catalog keys as ``{<prefix>}:...``, see
    #: controller/store/keys.py): no braces
    key_prefix: str = "pl"
    #: prefix of the worker's Kafka consumer groups (``<app_id>-controller``, ``...-sales``);
    #: deployments (or tests) sharing a broker need their own
    app_id: str = "pricelab"

    clock: Literal["wall", "simulated"] = "wall"
    #: the embedded broker (``pricelab up``, the demo) refuses a message on an output topic
    #: that breaks its contract (Tansu's schema registry, docs/broker.md). It costs the broker
    #: ~12 us of CPU a message (docs/broker.md has the measurement), which Apache
    #: Kafka does not pay, so it is off by default; the integration tests turn it on
    embedded_contract_checks: bool = False

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    web_host: str = "127.0.0.1"
    web_port: int = 6066

    #: how often the controller checks for period boundaries and freezes (seconds of wall time)
    tick_interval: float = 1.0
    #: how often the analysis worker publishes estimates (seconds of wall time)
    analysis_interval: float = 60.0
    analysis: AnalysisSettings = AnalysisSettings()
    console: ConsoleSettings = ConsoleSettings()
    #: a sale later than this (by the controller clock) goes to the dead-letter topic
    allowed_lateness: timedelta = timedelta(days=2)
    #: a sale further in the future than this is rejected as clock skew
    max_future_skew: timedelta = timedelta(minutes=10)
    #: competitor events may arrive this late for trigger rules; older ones are stale
    trigger_watermark_lag: timedelta = timedelta(minutes=5)
    #: a sale's event id is remembered for dedupe until its period closes to sales (the
    #: period's end + allowed_lateness), plus this margin (the markers expire by Redis's own
    #: clock: the margin also covers a simulated clock that runs slower than the wall's)
    dedupe_margin: timedelta = timedelta(days=1)
    #: sales batch: up to this many events, or whatever arrived within sales_batch_within seconds
    sales_batch_size: int = 2000
    sales_batch_within: float = 0.05
    #: how much the sales and competitor consumers fetch ahead per partition (aiokafka's
    #: ``max_partition_fetch_bytes``, 1 MiB by default there): what a fetch brings waits in the
    #: worker's memory until its batches take it. 256 KiB cost no ingest rate, and did not
    #: flatten the soak's RSS either (benchmarks/README.md, "Issue #56: the consumers fetch
    #: 256 KiB a partition ahead"; docs/operations.md). Whether the embedded broker honours it
    #: for record batches larger than it is not measured
    sales_fetch_partition_bytes: int = Field(default=256 * 1024, ge=64 * 1024)
    #: competitor prices: a batch is what arrived within this many seconds. Both windows are
    #: their consumers' fetch max wait: the embedded broker (Tansu) answers a fetch at its max
    #: wait, not when data arrives, so the window bounds an event's latency there; and an idle
    #: consumer fetches once a window, so they cost an idle controller worker and the broker
    #: CPU (with 10 ms and 50 ms: 6.5% and 6.4% of a core; 100 ms both: 1.4% and 2.4%;
    #: docs/broker.md). Against Apache Kafka, which answers as data arrives, longer windows
    #: cost no latency
    competitor_batch_within: float = 0.01
    #: an experiment's turn (the lease under which its decisions are made: flips, commands)
    #: expires after this long if its worker dies (then another finishes its decision); so
    #: does a half-done experiment creation (its product claims then stop counting)
    flip_lease: timedelta = timedelta(seconds=30)
    #: how long a starting worker waits for the broker and Redis to answer before it exits 2
    start_timeout: timedelta = timedelta(seconds=15)
    #: a worker turns unready when one of its consumer groups stays unassigned this long
    ready_group_grace: timedelta = timedelta(seconds=60)
    #: largest command message accepted, in bytes
    max_command_bytes: int = 1_000_000
    #: who may issue commands: comma-separated actor names (``alice,bob``; an actor
    #: ``alice@host`` is matched by its name); empty: any well-formed actor. The CLI refuses
    #: another ``--as`` and the controller refuses (and records) a command from one
    actors: str = ""
    #: what to do with a sale of a product in no experiment: count it, or dead-letter it
    unknown_product: Literal["count", "dead-letter"] = "dead-letter"
    log_level: str = "INFO"
    #: the Redis ACL users' passwords, for ``pricelab acl`` only (controller/store/acl.py);
    #: the workers log in with PRICELAB_REDIS__USERNAME / __PASSWORD
    acl_password_controller: SecretStr | None = None
    acl_password_analysis: SecretStr | None = None
    acl_password_operator: SecretStr | None = None
    #: the web console's (optional: ``pricelab acl`` prints its user when it is set)
    acl_password_console: SecretStr | None = None

    @field_validator("key_prefix")
    @classmethod
    def _prefix_ok(cls, v: str) -> str:
        return check_key_prefix(v)

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a child process load these same settings.

        The values may hold secrets: pass them to a child's environment, never to a log.
        """
        env: dict[str, str] = {}

        def put(prefix: str, value: object) -> None:
            if value is None:
                return
            if isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    put(f"{prefix}__{name.upper()}", getattr(value, name))
                return
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, timedelta):
                seconds = f"{value.total_seconds():f}".rstrip("0").rstrip(".")
                value = f"PT{seconds}S"
            env[prefix] = str(value)

        for name in type(self).model_fields:
            put(f"PRICELAB_{name.upper()}", getattr(self, name))
        return env


def load_settings() -> Settings:
    """The settings from the environment; a bad variable raises ConfigurationError naming it."""
    from pydantic import ValidationError

    from controller.errors import ConfigurationError

    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "PRICELAB_" + "__".join(str(x).upper() for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"{where}: {msg}") from None
