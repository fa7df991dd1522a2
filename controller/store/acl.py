"""Least privilege in Redis: one ACL user per role, generated from the store's own key names.

Each role (the controller worker, the analysis worker, the operator's CLI) is given exactly
the commands it runs and, for each command, the keys it runs it on, with Redis 7's read and
write key permissions (``%R~``, ``%W~``). The keys are the patterns of ``keys.pattern`` (so a
key renamed there is renamed here); a Lua script says which command it runs on which keys in
``--! acl COMMAND key...`` lines at its top (checked against its ``redis.call`` lines by
tests/unit/controller/store/test_acl.py), and a role lists the scripts it runs and its direct commands below.

One selector per keyed command, ``(+hset %W~a %W~b)``: Redis allows a command when one
selector allows the command and all its keys, so a role that may ``DEL`` a key (the analysis
worker dropping a compacted period's records) may not ``HSET`` it. A script's own commands
are checked against the user too (Redis checks every ``redis.call``), so ``EVALSHA`` grants
nothing by itself. The workers' readiness probe (``/ready``) and metrics run in the worker
process on its own connection: ``PING`` is their only Redis command.

The simulated clock is set by a driver (the demo, the tests, ``pricelab simulate --live``),
not by a role: no role may write it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import controller.store.keys as keys
from controller.store.base import lua

__all__ = [
    "OPTIONAL_ROLES",
    "ROLES",
    "Role",
    "acl_lines",
    "missing_permission",
    "script_commands",
    "script_declarations",
]

#: the key permission each command pricelab runs needs, from Redis 7's key specs
#: (``COMMAND INFO``: ACCESS needs read, INSERT/UPDATE/DELETE need write)
ACCESS: dict[str, str] = {
    "GET": "R",
    "GETRANGE": "R",
    "MGET": "R",
    "HGET": "R",
    "HMGET": "R",
    "HGETALL": "R",
    "HLEN": "R",
    "HSCAN": "R",
    "SMEMBERS": "R",
    "SISMEMBER": "R",
    "SMISMEMBER": "R",
    "SCARD": "R",
    "SDIFF": "R",
    "EXISTS": "R",
    "EVALSHA_RO": "R",
    "SET": "W",
    "SETRANGE": "W",
    "MSET": "W",
    "DEL": "W",
    "HSET": "W",
    "HSETNX": "W",
    "HDEL": "W",
    "SADD": "W",
    "SREM": "W",
    "EXPIRE": "W",
    "PEXPIRE": "W",
    "INCR": "RW",
    "INCRBY": "RW",
    "HINCRBY": "RW",
    "BITFIELD": "RW",
    # the keys a script is given: Redis cannot tell how it uses them (its own calls are
    # checked one by one)
    "EVALSHA": "RW",
}

#: commands without keys: the health check, MULTI/EXEC around a pipeline, loading a script
KEYLESS_READ = ("ping", "script|load")
KEYLESS_WRITE = ("multi", "exec")

_DECLARATION = re.compile(r"^--! acl ([A-Z_]+)((?: [a-z_]+)+)\s*$", re.MULTILINE)
_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z_]+)'")


@cache
def script_declarations(name: str) -> dict[str, frozenset[str]]:
    """What script ``lua/<name>.lua`` (with its includes) declares: command -> key names."""
    out: dict[str, set[str]] = {}
    for command, names in _DECLARATION.findall(lua(name)):
        out.setdefault(command, set()).update(names.split())
    return {c: frozenset(ks) for c, ks in out.items()}


def script_commands(name: str) -> frozenset[str]:
    """The commands script ``name`` calls, read from its ``redis.call`` lines."""
    return frozenset(c.upper() for c in _CALL.findall(lua(name)))


@dataclass(frozen=True)
class Role:
    """A role's Redis user: the scripts it runs and the commands it sends itself, each with
    the names of the keys it sends them to (``keys.CATALOG_KEYS``, ``keys.EXPERIMENT_KEYS``)."""

    name: str
    #: the settings variable that holds its password
    password_env: str
    scripts: tuple[str, ...]
    #: scripts it runs with EVALSHA_RO (read-only: their commands read)
    read_only_scripts: tuple[str, ...]
    direct: tuple[tuple[str, tuple[str, ...]], ...]
    #: MULTI/EXEC (a pipeline in a transaction)
    transactions: bool = True
    #: its own commands without keys
    keyless: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        return f"pricelab-{self.name}"

    def grants(self) -> dict[str, set[str]]:
        """command -> key names, every command this role runs (scripts' own calls included)."""
        out: dict[str, set[str]] = {}
        for command, direct in self.direct:
            out.setdefault(command, set()).update(direct)
        for kind, scripts in (("EVALSHA", self.scripts), ("EVALSHA_RO", self.read_only_scripts)):
            for script in scripts:
                declared = script_declarations(script)
                for command, names in declared.items():
                    out.setdefault(command, set()).update(names)
                    out.setdefault(kind, set()).update(names)
        return out


# reads every role makes: the experiments, their specs and states, the clock (and which one
# the controller runs on), the pauses, freezes and trigger periods laid over what is in force
_COMMON: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SMEMBERS", ("index",)),
    ("GET", ("spec", "clock", "clock_mode")),
    ("HGETALL", ("state", "windows", "freezes", "triggers")),
)
# reads of the panel: compacted periods, live sums and records (hscan_text.lua; in chunks of
# products, hmget_text.lua)
_PANEL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GET", ("columns", "sums")),
    # chunks of products: a compacted period's header and blocks, an open one's sums (chunks.py)
    ("GETRANGE", ("columns", "sums")),
    ("HMGET", ("records_version",)),
)

# reads of the drafts (``pricelab experiment drafts``, the console's drafts tab): every
# draft's summary, one draft's, and its spec
_DRAFTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HGETALL", ("drafts",)),
    ("HGET", ("drafts",)),
    ("GET", ("draft_specs",)),
)

ROLES: tuple[Role, ...] = (
    Role(
        "controller",
        "PRICELAB_ACL_PASSWORD_CONTROLLER",
        scripts=(
            "create_begin",
            "claim_products",
            "create_init",
            "create_commit",
            "create_abort",
            "create_drop",
            "create_open",
            "unclaim",
            "turn",
            "turn_end",
            "decide",
            "published",
            "ingest",
            "trigger_save",
            "draft_save",
            "retire",
        ),
        read_only_scripts=(),
        direct=(
            *_COMMON,
            ("GET", ("version", "claims", "trigger_version")),
            ("HGET", ("state", "holders", "freezes")),
            # the state; and the guards of the barriers before a WAIT: a decision's state, a
            # creation's holder, a freeze's (or its cancel's) entry, a draft's, a trigger
            # save's mark (PRICELAB_REDIS__WAIT_REPLICAS)
            (
                "HMGET",
                ("state", "holders", "freezes", "cancelled_freezes", "drafts", "trigger_saved"),
            ),
            ("HGETALL", ("holders", "cancelled_freezes", "trigger_state")),
            # sync_holder, windows, freezes, flips (records bracketed by their version)
            ("HSET", ("holders", "windows", "freezes", "cancelled_freezes", "records")),
            ("HSETNX", ("freezes",)),
            ("HDEL", ("freezes", "trigger_saved")),  # and a trigger save's mark once replicated
            # redis-py's incr; "replicated": the barrier before a WAIT (sales, decisions, replies)
            ("INCRBY", ("version", "trail", "replicated")),
            ("SET", ("clock_mode",)),  # at start: the clock it runs on, which the CLI follows
            ("HINCRBY", ("records_version",)),
            # an adaptive ladder's flip: the latest look, each period's probabilities
            # recorded once (HSETNX then HGET, in MULTI) and all of them read
            ("HGET", ("adaptive_look", "allocations")),
            ("HSETNX", ("allocations",)),
            ("HGETALL", ("allocations",)),
            # drafts (controller.drafts): the one saved before, the live ones' ids (a
            # discard's hint), and a discard (kept without its spec, in MULTI)
            ("HGET", ("drafts",)),
            ("HGETALL", ("drafts",)),
            ("HSET", ("drafts",)),
            ("DEL", ("draft_specs",)),
            # the experiments not retired, which of its kept specs are, the retired products
            # (controller/retirement.py: ExperimentStore.experiments_unretired, retire)
            ("SDIFF", ("index", "retired")),
            ("SMISMEMBER", ("retired",)),
            ("SISMEMBER", ("retired",)),
            ("SCARD", ("retired",)),
            ("SMEMBERS", ("retired_products",)),
            ("SADD", ("retired_products",)),
        ),
        # a sales batch waits for its replicas (PRICELAB_REDIS__WAIT_REPLICAS)
        keyless=("wait",),
    ),
    Role(
        "analysis",
        "PRICELAB_ACL_PASSWORD_ANALYSIS",
        # look_put: an adaptive ladder's latest look, for the controller's flip
        scripts=("close_period", "store_period", "look_put"),
        # hmget_text: an open period's records of a chunk of products (store/chunks.py)
        read_only_scripts=("hscan_text", "hmget_text"),
        direct=(
            *_COMMON,
            *_PANEL,
            ("EXISTS", ("old_cells",)),  # a period of the layout before packed sums
            ("HGET", ("sequence_targets",)),
            ("HSETNX", ("sequence_targets",)),
            # one experiment's analysis over several workers: each chunk's part of a look
            ("SET", ("partials",)),
            ("MGET", ("partials",)),
            # an adaptive ladder's recorded probabilities, the weights of its IPW/AIPW
            ("HGETALL", ("allocations",)),
        ),
    ),
    Role(
        "operator",
        "PRICELAB_ACL_PASSWORD_OPERATOR",
        scripts=(),
        read_only_scripts=("hscan_text",),
        direct=(
            *_COMMON,
            *_PANEL,
            ("GET", ("claims",)),
            ("HGET", ("holders",)),
            # an adaptive ladder's recorded probabilities (``pricelab assignments``); the
            # sales counted by status (``pricelab health``'s sales check, as the console's)
            ("HGETALL", ("cancelled_freezes", "allocations", "totals")),
            *_DRAFTS,
        ),
        transactions=False,
    ),
)


#: roles whose user ``pricelab acl`` prints only when their password is set
OPTIONAL_ROLES: tuple[Role, ...] = (
    # the web console (streams/console): the experiments, their specs and states, and what
    # is laid over them (the freezes, cancelled ones too); the panel and the sales totals,
    # read as the operator's report reads them (its health section); which experiment holds
    # a product (its product search: ``pricelab assignments``' reads); no write (it acts
    # through the commands topic)
    Role(
        "console",
        "PRICELAB_ACL_PASSWORD_CONSOLE",
        scripts=(),
        read_only_scripts=("hscan_text",),
        # HMGET state: the list's fields of every experiment (Store.listed_experiments)
        direct=(
            *_COMMON,
            *_PANEL,
            # allocations: an adaptive ladder's recorded probabilities (the schedule view)
            ("HGETALL", ("cancelled_freezes", "totals", "allocations")),
            ("HMGET", ("state",)),
            ("GET", ("claims",)),
            ("HGET", ("holders",)),
            *_DRAFTS,
        ),
        transactions=False,
    ),
)


#: the keyed reads a probe may run on a key that does not exist, with their extra arguments
READ_PROBES: dict[str, tuple[str, ...]] = {
    "GET": (),
    "GETRANGE": ("0", "0"),
    "MGET": (),
    "HGET": ("f",),
    "HMGET": ("f",),
    "HGETALL": (),
    "HLEN": (),
    "HSCAN": ("0",),
    "SMEMBERS": (),
    "SISMEMBER": ("m",),
    "SMISMEMBER": ("m",),
    "SCARD": (),
    "SDIFF": (),
    "EXISTS": (),
}
#: stands for every ``*`` of a key pattern in a probe: no key pricelab writes has this name
PROBE = "pricelab-acl-probe"


async def missing_permission(redis: Any, role_name: str, prefix: str) -> str | None:
    """The first permission the role needs that Redis refuses its user, as ``PING`` or
    ``HGETALL on <pattern>``, found by running every keyed read of the role once on a key of
    each pattern that does not exist (harmless); None when all pass. Writes cannot be probed
    without writing: a refused write is named by Redis itself (``run the 'hset' command``) or,
    for a key, by the command that met it."""
    from redis.exceptions import NoPermissionError

    try:
        await redis.ping()
    except NoPermissionError:
        return "PING"
    for command, names in sorted(role(role_name).grants().items()):
        extra = READ_PROBES.get(command)
        if extra is None:
            continue
        for name in sorted(names):
            pattern = keys.pattern(prefix, name)
            try:
                await redis.execute_command(command, pattern.replace("*", PROBE), *extra)
            except NoPermissionError:
                return f"{command} on {pattern}"
    return None


def role(name: str) -> Role:
    for r in (*ROLES, *OPTIONAL_ROLES):
        if r.name == name:
            return r
    raise KeyError(name)


def password_hash(password: str) -> str:
    """The ACL file's form of a password: ``#`` and its SHA-256 in hex."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_line(r: Role, prefix: str, password: str) -> str:
    """The role's ``user`` line of a Redis ACL file."""
    words = ["user", r.user, "reset", "on", password_hash(password), "resetchannels", "-@all"]
    keyless = KEYLESS_READ + (KEYLESS_WRITE if r.transactions else ()) + r.keyless
    words += [f"+{c}" for c in keyless]
    grants = r.grants()
    for command in sorted(grants):
        access = ACCESS[command]  # a command missing here is a bug: KeyError
        perm = f"%{access}~"
        patterns = sorted(keys.pattern(prefix, n) for n in grants[command])
        words.append("(" + " ".join([f"+{command.lower()}", *(perm + p for p in patterns)]) + ")")
    return " ".join(words)


def acl_lines(prefix: str, passwords: dict[str, str]) -> list[str]:
    """Every role's line, in :data:`ROLES` order, then each optional role's whose password is
    given (:data:`OPTIONAL_ROLES`); ``passwords``: role name -> password."""
    keys.check_prefix(prefix)
    optional = [r for r in OPTIONAL_ROLES if r.name in passwords]
    return [acl_line(r, prefix, passwords[r.name]) for r in (*ROLES, *optional)]
