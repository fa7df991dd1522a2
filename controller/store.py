"""All Redis state of pricelab, behind one object. Nothing else talks to Redis.

Key layout (prefix ``pl`` by default, see docs/architecture.md):

    {p}:exp:index                 set of experiment ids
    {p}:exp:{id}:spec             the validated spec (JSON)
    {p}:exp:{id}:state            hash: status, flipped_period, seq, missed_flips, created_ms,
                                  claim (the gen of its product claims)
    {p}:exp:{id}:creating         gen of a creation in progress (a lease, PX)
    {p}:exp:{id}:a:{k}            hash product -> "arm|P(treat)|blackout_until_ms|reason" for period k
    {p}:exp:{id}:flip:{k}         flip claim "owner|seq" with a lease (PX)
    {p}:exp:{id}:cells            hash "k|product|field" -> sums (u units, r revenue, n orders, h head units)
    {p}:exp:{id}:excluded         hash "k|product|reason" -> units kept for audit, not analysed
    {p}:exp:{id}:totals           hash "units:{status}" / "events:{status}" -> running totals
    {p}:exp:{id}:windows          hash window id -> JSON exclusion window (pauses)
    {p}:exp:{id}:trigger_state    hash meta / p:{product} / f:{product} -> trigger tracker state
    {p}:exp:{id}:trigger_v        version of that state (bumped on every save)
    {p}:exp:{id}:triggers         hash product -> trigger period
    {p}:exp:{id}:cs               hash sequence key -> target SE of its confidence sequence,
                                  fixed at the sequence's first look (HSETNX)
    {p}:lock:{name}               short read-modify-write locks
    {p}:freezes                   hash freeze id -> JSON operator freeze
    {p}:product:{product}         claim "id|gen" ("id" before gens) on the product; it counts
                                  only while live (see _HOLDS), stale keys are taken over
    {p}:seen:{event_id}           dedupe marker "status|experiment|k" (TTL = dedupe_ttl)
    {p}:version                   bumped on every experiment or freeze change (cache invalidation)
    {p}:clock                     simulated time in ms (clock mode 'simulated')
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple

from redis.asyncio import Redis

from controller.designs import Assignment, PeriodAssignments
from controller.errors import ConflictError, StoreError
from controller.settings import Settings
from controller.spec import Arm, ExperimentSpec, load_spec

log = logging.getLogger("pricelab.store")


def make_redis(settings: Settings) -> Redis:
    r = settings.redis
    kw: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 10,
        # redis-py 8 defaults to 5 s; kept long for big single calls (a million-product
        # experiment's spec is ~10 MB); a dead server is still noticed by the connect timeout
        # and the health check
        "socket_timeout": 120,
        "socket_connect_timeout": 5,
    }
    if r.username:
        kw["username"] = r.username
    if r.password is not None:
        kw["password"] = r.password.get_secret_value()
    if r.tls_ca_file:
        kw["ssl_ca_certs"] = r.tls_ca_file
    if r.tls_cert_file:
        kw["ssl_certfile"] = r.tls_cert_file
        kw["ssl_keyfile"] = r.tls_key_file
    return Redis.from_url(r.url.get_secret_value(), **kw)


def to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def from_ms(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000.0, UTC)


# Creating an experiment claims each of its products ({p}:product:{product} = the claim
# "id|gen", gen unique to one creation attempt) in chunks of a few thousand, one short script
# per chunk, so that Redis keeps serving the sales path and other experiments' flips in between
# (one script over a million products held Redis for ~6.5 s). The experiment becomes visible
# (index, spec, state) in one last script, and only if its creation marker - a lease that
# every chunk renews - is still its own. A claim counts only while it is live: its creation's
# marker is still there, or its experiment exists with that gen and is neither stopped nor
# ended. The claims of a worker that died mid-create therefore stop counting when its lease
# expires, and later creations take them over.
_HOLDS = """
local function holds(p, h)
  -- the experiment behind claim h and 'running' or 'creating' if the claim is live, else false
  local x, g = string.match(h, '^([^|]*)|?(.*)$')
  if g ~= '' and redis.call('GET', p..':exp:'..x..':creating') == g then return x, 'creating' end
  local st = redis.call('HMGET', p..':exp:'..x..':state', 'status', 'claim')
  if st[1] and st[1] ~= 'stopped' and st[1] ~= 'ended' and (st[2] or '') == g then
    return x, 'running'
  end
  return false
end
"""

_CREATE_BEGIN = """
-- ARGV: prefix, id, gen, lease_ms
local p, id = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', p..':exp:index', id) == 1 then return 'exists' end
if not redis.call('SET', p..':exp:'..id..':creating', ARGV[3], 'NX', 'PX', ARGV[4]) then
  return 'busy'
end
return 'ok'
"""

_CLAIM_PRODUCTS = (
    _HOLDS
    + """
-- KEYS: product keys (at most 3,999: MSET gets them through unpack, limited to 8,000 values)
-- ARGV: prefix, id, gen, lease_ms
-- All of the chunk or none of it: {'ok'}, {'lost'} (the creation's lease expired, or it was
-- refused), or {'conflict', i, experiment, 'running'|'creating'} for the first product KEYS[i]
-- held live, which also ends the creation.
local p, id, gen = ARGV[1], ARGV[2], ARGV[3]
local marker = p..':exp:'..id..':creating'
if redis.call('GET', marker) ~= gen then return {'lost'} end
redis.call('PEXPIRE', marker, ARGV[4])
local mine = id..'|'..gen
local held = redis.call('MGET', unpack(KEYS))
local live = {}
for i = 1, #KEYS do
  local h = held[i]
  if h and h ~= mine then
    local l = live[h]
    if l == nil then
      local x, kind = holds(p, h)
      l = x and {x, kind} or false
      live[h] = l
    end
    if l then
      redis.call('DEL', marker)  -- refused: every claim of this creation dies with it, and a
      return {'conflict', i, l[1], l[2]}  -- chunk already sent after this one finds 'lost'
    end
  end
end
local kv = {}
for i = 1, #KEYS do kv[2 * i - 1] = KEYS[i]; kv[2 * i] = mine end
redis.call('MSET', unpack(kv))
return {'ok'}
"""
)

_CREATE_FINISH = """
-- ARGV: prefix, id, gen, spec_json, created_ms
local p, id, gen = ARGV[1], ARGV[2], ARGV[3]
local marker = p..':exp:'..id..':creating'
if redis.call('GET', marker) ~= gen then return 'lost' end
redis.call('SADD', p..':exp:index', id)
redis.call('SET', p..':exp:'..id..':spec', ARGV[4])
redis.call('HSET', p..':exp:'..id..':state', 'status', 'running', 'flipped_period', -1,
           'seq', 0, 'missed_flips', 0, 'created_ms', ARGV[5], 'claim', gen)
redis.call('INCR', p..':version')
redis.call('DEL', marker)
return 'ok'
"""

_CREATE_ABORT = """
-- ARGV: prefix, id, gen: drop the creation marker if it is still this attempt's
local marker = ARGV[1]..':exp:'..ARGV[2]..':creating'
if redis.call('GET', marker) == ARGV[3] then redis.call('DEL', marker) end
return 1
"""

_UNCLAIM = (
    _HOLDS
    + """
-- KEYS: product keys (at most 7,999); ARGV: prefix, claim ("id|gen"; "id" before gens)
-- Deletes the keys that still hold the claim, once it is dead (creation aborted or its lease
-- expired, experiment stopped or ended); returns -1 and deletes nothing while it is live.
if holds(ARGV[1], ARGV[2]) then return -1 end
local held = redis.call('MGET', unpack(KEYS))
local gone = {}
for i = 1, #KEYS do
  if held[i] == ARGV[2] then gone[#gone + 1] = KEYS[i] end
end
if #gone > 0 then redis.call('DEL', unpack(gone)) end
return #gone
"""
)

# Complete a flip only once: the state's flipped_period moves forward, never back.
_COMPLETE_FLIP = """
-- ARGV: prefix, id, k, seq, missed
local st = ARGV[1]..':exp:'..ARGV[2]..':state'
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[3]) > cur then
  redis.call('HSET', st, 'flipped_period', ARGV[3], 'seq', ARGV[4])
  redis.call('HINCRBY', st, 'missed_flips', ARGV[5])
  redis.call('HINCRBY', st, 'flips', 1)
  return 1
end
return 0
"""

# Claim a flip: a new claim gets the next sequence number; a stale claim (dead worker,
# lease expired) is re-claimed with the SAME sequence number so a redo republishes the
# same version.
_CLAIM_FLIP = """
-- ARGV: prefix, id, k, owner, lease_ms
local base = ARGV[1]..':exp:'..ARGV[2]
local st = base..':state'
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[3]) <= cur then return {'done', ''} end
local claim = base..':flip:'..ARGV[3]
local held = redis.call('GET', claim)
if held then
  local owner = string.match(held, '^(.-)|')
  if owner ~= ARGV[4] then return {'busy', string.match(held, '|(.*)$') or ''} end
  redis.call('PEXPIRE', claim, ARGV[5])
  return {'mine', string.match(held, '|(.*)$')}
end
local seqkey = base..':flipseq:'..ARGV[3]
local seq = redis.call('GET', seqkey)
if not seq then
  seq = tostring(redis.call('HINCRBY', st, 'seq_counter', 1))
  redis.call('SET', seqkey, seq)
end
redis.call('SET', claim, ARGV[4]..'|'..seq, 'PX', ARGV[5])
return {'claimed', seq}
"""

# Sales: per event, decide its status, dedupe by event id, and accumulate the panel cell.
# The batch arrives as one string (one line per event, fields split by '|'; ids cannot hold
# '|' or newlines) so the client packs one argument, not nine per event. Per event Redis
# does one HGET (cached per cell within the batch) and one SET NX (the dedupe marker doubles
# as the existence check); the cell, exclusion and total increments are summed in Lua and
# written once per batch. The script is atomic: a batch is in Redis entirely or not at all.
_INGEST = r"""
-- ARGV: prefix, ttl_s, batch; batch lines:
--   event_id|exp|k|product|ts_ms|head_end_ms|units|revenue|pre_reason\n
-- Every Lua string is interned (hashed, looked up, later swept): per-experiment keys are
-- built once per batch, not per sale, and totals are summed by status before their keys are.
local p, ttl = ARGV[1], ARGV[2]
local seen = p..':seen:'
local out = {}
local ints, floats, exps = {}, {}, {}
local function add(t, key, field, v)
  local h = t[key]
  if not h then h = {}; t[key] = h end
  h[field] = (h[field] or 0) + v
end
local pat = '([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)\n'
for eid, exp, k, prod, ts, head_end, units, revenue, reason in string.gmatch(ARGV[3], pat) do
  local e = exps[exp]
  if not e then
    local base = p..':exp:'..exp
    e = {base = base, cells = base..':cells', excluded = base..':excluded',
         akeys = {}, units = {}, events = {}}
    exps[exp] = e
  end
  local status = reason
  local arm = ''
  if status == '' then
    local ak = e.akeys[k]
    if not ak then
      ak = {key = e.base..':a:'..k, recs = {}}
      e.akeys[k] = ak
    end
    local rec = ak.recs[prod]
    if rec == nil then
      rec = redis.call('HGET', ak.key, prod)
      ak.recs[prod] = rec
    end
    if not rec then
      status = 'unassigned'
    else
      local a, bu, why = string.match(rec, '^([^|]*)|[^|]*|([^|]*)|(.*)$')
      arm = a
      local t = tonumber(ts)
      if bu ~= '' and t < tonumber(bu) then
        status = why
      elseif t < tonumber(head_end) then
        status = 'head'
      else
        status = 'ok'
      end
    end
  end
  local fresh = redis.call('SET', seen..eid, status..'|'..exp..'|'..k..'|'..arm,
                           'NX', 'EX', ttl)
  if fresh then
    local u = tonumber(units)
    if status == 'ok' then
      local cell = k..'|'..prod..'|'
      add(ints, e.cells, cell..'u', u)
      add(floats, e.cells, cell..'r', tonumber(revenue))
      add(ints, e.cells, cell..'n', 1)
    elseif status == 'head' then
      add(ints, e.cells, k..'|'..prod..'|h', u)
    else
      add(ints, e.excluded, k..'|'..prod..'|'..status, u)
    end
    e.units[status] = (e.units[status] or 0) + u
    e.events[status] = (e.events[status] or 0) + 1
    out[#out+1] = status
  else
    out[#out+1] = 'dup'
  end
end
for _, e in pairs(exps) do
  local totals = e.base..':totals'
  for st, v in pairs(e.units) do add(ints, totals, 'units:'..st, v) end
  for st, v in pairs(e.events) do add(ints, totals, 'events:'..st, v) end
end
for key, h in pairs(ints) do
  for f, v in pairs(h) do redis.call('HINCRBY', key, f, string.format('%d', v)) end
end
for key, h in pairs(floats) do
  for f, v in pairs(h) do redis.call('HINCRBYFLOAT', key, f, string.format('%.17g', v)) end
end
-- one string, not an array: the client parses one reply instead of one per event
return table.concat(out, ',')
"""


# Save a batch's trigger state only if nobody else wrote it since it was read (optimistic:
# one round trip, no lock): the tracker's version and the experiments version must both be
# the ones the batch was computed from.
_TRIGGER_SAVE = """
-- KEYS: state hash, triggers hash, experiment state, trigger version, experiments version
-- ARGV: expected trigger version, expected experiments version,
--       n, (field, value) * n, m, gone field * m, t, (product, period) * t
-- Returns {new trigger version, seq or -1}, or {-1, trigger version, experiments version}
-- (nothing written) when either version moved.
local tv = tonumber(redis.call('GET', KEYS[4]) or '0')
local ev = tonumber(redis.call('GET', KEYS[5]) or '0')
if tv ~= tonumber(ARGV[1]) or ev ~= tonumber(ARGV[2]) then return {-1, tv, ev} end
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
local seq = -1
if n > 0 then
  for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
  seq = redis.call('HINCRBY', KEYS[3], 'seq_counter', 1)
end
return {redis.call('INCR', KEYS[4]), seq}
"""


@dataclass(frozen=True)
class ExperimentState:
    spec: ExperimentSpec
    status: str
    flipped_period: int
    seq: int
    missed_flips: int
    flips: int
    frozen: bool = False


class SaleRow(NamedTuple):
    """One routed sale for :meth:`Store.ingest` (a tuple: built per event, ~3x cheaper than a
    frozen dataclass)."""

    event_id: str
    experiment: str
    period: int
    product: str
    ts_ms: int
    head_end_ms: int
    units: int
    revenue: float
    pre_reason: str = ""


def encode_record(a: Assignment) -> str:
    arm = "T" if a.arm == Arm.TREATMENT else "C"
    bu = "" if a.blackout_until is None else str(to_ms(a.blackout_until))
    return f"{arm}|{a.probability:.6g}|{bu}|{a.blackout_reason or ''}"


def decode_record(rec: str) -> tuple[Arm, float, datetime | None, str | None]:
    arm, prob, bu, why = rec.split("|", 3)
    return (
        Arm.TREATMENT if arm == "T" else Arm.CONTROL,
        float(prob),
        None if bu == "" else from_ms(bu),
        why or None,
    )


def _bulk_strings(parts: Sequence[str]) -> bytes:
    """Redis-protocol bulk strings of ``parts``, in one string (lengths count bytes)."""
    body = "".join([f"${len(x)}\r\n{x}\r\n" for x in parts])
    if not body.isascii():
        body = "".join([f"${len(x.encode())}\r\n{x}\r\n" for x in parts])
    return body.encode()


def _packed_hsets(
    key: str, pairs: Iterable[tuple[str, str]], chunk: int
) -> Iterator[tuple[bytes, int]]:
    """HSET commands of ``chunk`` fields each, in the Redis protocol, with their field counts.

    Packed here, in one string per command: redis-py packs argument by argument, which cost
    ~6 us per field on a million-product flip, several times what Redis takes to store it.
    """
    k = key.encode()
    head = b"$4\r\nHSET\r\n$%d\r\n%s\r\n" % (len(k), k)
    it = iter(pairs)
    while batch := list(islice(it, chunk)):
        body = _bulk_strings([x for pair in batch for x in pair])
        yield b"*%d\r\n" % (2 + 2 * len(batch)) + head + body, len(batch)


def _packed_evalsha(sha: str, keys: Sequence[str], args: Sequence[str]) -> bytes:
    """EVALSHA in the Redis protocol, packed in one string (see :func:`_packed_hsets`)."""
    n = str(len(keys))
    head = f"*{3 + len(keys) + len(args)}\r\n$7\r\nEVALSHA\r\n${len(sha)}\r\n{sha}\r\n${len(n)}\r\n{n}\r\n"
    return head.encode() + _bulk_strings([*keys, *args])


def _text(x: bytes | str | None) -> str | None:
    return x.decode() if isinstance(x, bytes) else x


class Store:
    """Async facade over Redis for experiments, flips, blackout windows and the sales panel."""

    def __init__(self, redis: Redis, prefix: str = "pl") -> None:
        self.redis = redis
        self.p = prefix
        self._specs: dict[str, ExperimentSpec] = {}
        self._create_begin = redis.register_script(_CREATE_BEGIN)
        self._create_finish = redis.register_script(_CREATE_FINISH)
        self._create_abort = redis.register_script(_CREATE_ABORT)
        self._claim = redis.register_script(_CLAIM_FLIP)
        self._complete = redis.register_script(_COMPLETE_FLIP)
        self._ingest = redis.register_script(_INGEST)
        self._trigger_save = redis.register_script(_TRIGGER_SAVE)

    # ------------------------------------------------------------------ experiments
    async def create_experiment(
        self, spec: ExperimentSpec, now: datetime, *, lease_ms: int = 30_000, chunk: int = 2000
    ) -> None:
        """Claim every product of ``spec`` and record it as running, or raise ConflictError.

        A product is in at most one running experiment: each chunk of claims is checked and
        written by one script, and of two creations racing for common products exactly one
        gets them all (both claim in sorted order, so the one that takes the first common
        product also takes the others). A refused creation releases what it claimed; one whose
        worker died mid-way stops counting when ``lease_ms`` passes without progress.
        """
        if not 1 <= chunk <= 3999:
            raise ValueError("chunk must be 1..3999 (the script MSETs through Lua's unpack)")
        gen = uuid.uuid4().hex[:12]
        begin = await self._create_begin(args=[self.p, spec.id, gen, lease_ms])
        if begin == "exists":
            raise ConflictError(f"experiment {spec.id!r} already exists")
        if begin == "busy":
            raise ConflictError(f"experiment {spec.id!r} is being created by another command")
        products = sorted(spec.all_products())
        keys = [f"{self.p}:product:{x}" for x in products]
        sent = 0  # keys of the chunks sent so far: claimed, or maybe claimed if cut off
        try:
            sha = await self.redis.script_load(_CLAIM_PRODUCTS)
            args = [self.p, spec.id, gen, str(lease_ms)]
            async with self._connection() as conn:
                # two chunks in flight: the next is packed and sent while Redis runs this one
                in_flight: deque[int] = deque()
                for start in [*range(0, len(keys), chunk), None]:
                    if start is not None:
                        part = keys[start : start + chunk]
                        sent = start + len(part)
                        await conn.send_packed_command(
                            [_packed_evalsha(sha, part, args)], check_health=False
                        )
                        in_flight.append(start)
                    while in_flight and (start is None or len(in_flight) >= 2):
                        first = in_flight.popleft()
                        self._claimed(
                            await conn.read_response(), spec.id, products, first, lease_ms
                        )
            done = await self._create_finish(
                args=[self.p, spec.id, gen, spec.to_json(), to_ms(now)]
            )
            if done != "ok":
                raise StoreError(
                    f"creating {spec.id!r}: lease lost (no progress for {lease_ms} ms)"
                )
        except BaseException:
            try:
                await self._create_abort(args=[self.p, spec.id, gen])
                await self._unclaim(f"{spec.id}|{gen}", keys[:sent], chunk)
            except Exception:  # Redis gone: the claims die with the lease anyway
                log.warning("could not release the claims of aborted creation %s", spec.id)
            raise
        self._specs[spec.id] = spec  # what a reader would parse back from the stored JSON

    @staticmethod
    def _claimed(
        res: list[Any], exp_id: str, products: list[str], start: int, lease_ms: int
    ) -> None:
        """Raise unless a chunk of claims (products from ``start`` on) went through."""
        if res[0] == "conflict":
            product, holder, kind = products[start + int(res[1]) - 1], res[2], res[3]
            where = (
                f"already in running experiment {holder!r}"
                if kind == "running"
                else f"being claimed by experiment {holder!r}, whose creation is in progress"
            )
            raise ConflictError(
                f"product {product!r} is {where}; a product can be in at most one running "
                "experiment"
            )
        if res[0] != "ok":
            raise StoreError(f"creating {exp_id!r}: lease lost (no progress for {lease_ms} ms)")

    async def _unclaim(self, claim: str, keys: Sequence[str], chunk: int = 2000) -> int:
        """Delete the product keys still holding ``claim`` once it is dead; keys deleted."""
        if not keys:
            return 0
        sha = await self.redis.script_load(_UNCLAIM)
        gone = 0
        async with self._connection() as conn:
            for start in range(0, len(keys), chunk):
                await conn.send_packed_command(
                    [_packed_evalsha(sha, keys[start : start + chunk], [self.p, claim])],
                    check_health=False,
                )
                n = int(await conn.read_response())
                if n < 0:  # live: nothing to release
                    break
                gone += n
        return gone

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection for self-packed commands; dropped if replies may be pending."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            yield conn
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def experiment_ids(self) -> list[str]:
        return sorted(await self.redis.smembers(f"{self.p}:exp:index"))

    async def get_experiment(self, exp_id: str) -> ExperimentState:
        spec = self._specs.get(exp_id)
        if spec is None:
            # specs are immutable once created: fetch and parse each once per process
            raw = await self.redis.get(f"{self.p}:exp:{exp_id}:spec")
            if raw is None:
                raise StoreError(f"no experiment {exp_id!r}")
            spec = self._specs[exp_id] = load_spec(raw)
        st = await self.redis.hgetall(f"{self.p}:exp:{exp_id}:state")
        if not st:
            raise StoreError(f"no state for experiment {exp_id!r}")
        return ExperimentState(
            spec=spec,
            status=st.get("status", "unknown"),
            flipped_period=int(st.get("flipped_period", -1)),
            seq=int(st.get("seq", 0)),
            missed_flips=int(st.get("missed_flips", 0)),
            flips=int(st.get("flips", 0)),
            frozen=st.get("frozen", "0") == "1",
        )

    async def experiments(self) -> list[ExperimentState]:
        return [await self.get_experiment(e) for e in await self.experiment_ids()]

    async def set_status(self, exp_id: str, status: str) -> None:
        """Set the status. Stopped or ended, the experiment's product claims die with it (see
        _HOLDS): its products are free at once; :meth:`release_products` deletes the keys."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"{self.p}:exp:{exp_id}:state", "status", status)
        pipe.incr(f"{self.p}:version")
        await pipe.execute()

    async def release_products(self, exp_id: str) -> int:
        """Delete the product keys of a stopped or ended experiment (they no longer count, so
        this is housekeeping, done after the kill switch has published); keys deleted."""
        spec = (await self.get_experiment(exp_id)).spec
        gen = _text(await self.redis.hget(f"{self.p}:exp:{exp_id}:state", "claim"))
        claim = f"{exp_id}|{gen}" if gen else exp_id
        return await self._unclaim(claim, [f"{self.p}:product:{x}" for x in spec.all_products()])

    # ------------------------------------------------------------------ triggers and locks
    async def trigger_state_version(self, exp_id: str) -> int:
        return int(await self.redis.get(f"{self.p}:exp:{exp_id}:trigger_v") or 0)

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        """(version, tracker state) of an experiment's trigger rule; state None before any."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(f"{self.p}:exp:{exp_id}:trigger_v")
        pipe.hgetall(f"{self.p}:exp:{exp_id}:trigger_state")
        v, raw = await pipe.execute()
        if not raw:
            return int(v or 0), None
        meta = json.loads(raw.get("meta", "{}"))
        state = {
            "watermark": meta.get("watermark"),
            "stale": meta.get("stale", 0),
            "fired": {k[2:]: json.loads(x) for k, x in raw.items() if k.startswith("f:")},
            "products": {k[2:]: json.loads(x) for k, x in raw.items() if k.startswith("p:")},
        }
        return int(v or 0), state

    async def save_trigger_state(
        self,
        exp_id: str,
        expected: int,
        experiments_version: int,
        meta: dict[str, Any],
        products: dict[str, dict[str, Any] | None],
        fired: dict[str, dict[str, Any]],
        triggers: dict[str, int],
    ) -> tuple[int, int | None] | tuple[None, int]:
        """Write what changed (meta, touched products - None deletes -, new fires) and take a
        sequence number when something fired, in one round trip, provided the state is still
        at version ``expected`` and the experiments (:meth:`version`) at
        ``experiments_version``. Returns (new state version, sequence number or None), or
        (None, current experiments version) with nothing written when either had moved."""
        fields = {"meta": json.dumps(meta)}
        fields |= {f"p:{p}": json.dumps(st) for p, st in products.items() if st is not None}
        fields |= {f"f:{p}": json.dumps(f) for p, f in fired.items()}
        gone = [f"p:{p}" for p, st in products.items() if st is None]
        args: list[str | int] = [expected, experiments_version, len(fields)]
        for k, v in fields.items():
            args += [k, v]
        args += [len(gone), *gone, len(triggers)]
        for p, k in triggers.items():
            args += [p, k]
        base = f"{self.p}:exp:{exp_id}"
        res = await self._trigger_save(
            keys=[
                f"{base}:trigger_state",
                f"{base}:triggers",
                f"{base}:state",
                f"{base}:trigger_v",
                f"{self.p}:version",
            ],
            args=args,
        )
        if int(res[0]) < 0:
            return None, int(res[2])
        return int(res[0]), (int(res[1]) if triggers else None)

    async def triggers(self, exp_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(f"{self.p}:exp:{exp_id}:triggers")
        return {p: int(k) for p, k in raw.items()}

    async def set_frozen(self, exp_id: str, frozen: bool) -> None:
        await self.redis.hset(f"{self.p}:exp:{exp_id}:state", "frozen", "1" if frozen else "0")

    async def next_seq(self, exp_id: str) -> int:
        """A new sequence number for an out-of-band publish (pause, resume, stop, end)."""
        return int(await self.redis.hincrby(f"{self.p}:exp:{exp_id}:state", "seq_counter", 1))

    async def version(self) -> int:
        return int(await self.redis.get(f"{self.p}:version") or 0)

    async def experiment_of(self, product: str) -> str | None:
        """The running (or paused) experiment holding the product, if any."""
        claim = _text(await self.redis.get(f"{self.p}:product:{product}"))
        if claim is None:
            return None
        exp_id, _, gen = claim.partition("|")
        status, held = await self.redis.hmget(f"{self.p}:exp:{exp_id}:state", "status", "claim")
        if status is None or status in ("stopped", "ended") or _text(held or "") != gen:
            return None  # a creation in progress or abandoned, or a stale key
        return exp_id

    # ------------------------------------------------------------------ exclusion windows
    async def open_window(self, exp_id: str, window_id: str, start: datetime, reason: str) -> None:
        doc = json.dumps({"start_ms": to_ms(start), "end_ms": None, "reason": reason})
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"{self.p}:exp:{exp_id}:windows", window_id, doc)
        pipe.incr(f"{self.p}:version")
        await pipe.execute()

    async def close_windows(self, exp_id: str, end: datetime) -> None:
        key = f"{self.p}:exp:{exp_id}:windows"
        windows = await self.redis.hgetall(key)
        pipe = self.redis.pipeline(transaction=True)
        for wid, raw in windows.items():
            doc = json.loads(raw)
            if doc["end_ms"] is None:
                doc["end_ms"] = to_ms(end)
                pipe.hset(key, wid, json.dumps(doc))
        pipe.incr(f"{self.p}:version")
        await pipe.execute()

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(f"{self.p}:exp:{exp_id}:windows")
        return [json.loads(v) for v in raw.values()]

    async def add_freeze(self, freeze_id: str, doc: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"{self.p}:freezes", freeze_id, json.dumps(doc))
        pipe.incr(f"{self.p}:version")
        await pipe.execute()

    async def freezes(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(f"{self.p}:freezes")
        return [json.loads(v) | {"id": k} for k, v in raw.items()]

    # ------------------------------------------------------------------ flips
    async def claim_flip(self, exp_id: str, k: int, owner: str, lease_ms: int) -> tuple[str, int]:
        status, seq = await self._claim(args=[self.p, exp_id, k, owner, lease_ms])
        return status, int(seq) if seq else -1

    async def write_assignments(
        self, exp_id: str, k: int, records: Iterable[Assignment], chunk: int = 5000
    ) -> int:
        key = f"{self.p}:exp:{exp_id}:a:{k}"
        if isinstance(records, PeriodAssignments):  # one record text per distinct assignment
            texts = [encode_record(t) for t in records.templates]
            pairs: Iterable[tuple[str, str]] = zip(
                records.products, map(texts.__getitem__, records.codes), strict=True
            )
        else:
            pairs = ((a.product, encode_record(a)) for a in records)
        n = 0
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            commands = _packed_hsets(key, pairs, chunk)
            while group := list(islice(commands, 20)):  # 20 commands per round trip
                await conn.send_packed_command([cmd for cmd, _ in group], check_health=False)
                for _, fields in group:
                    await conn.read_response()
                    n += fields
        except BaseException:
            await conn.disconnect()  # replies may be pending: the connection cannot be reused
            raise
        finally:
            await pool.release(conn)
        return n

    async def complete_flip(self, exp_id: str, k: int, seq: int, missed: int, owner: str) -> bool:
        done = await self._complete(args=[self.p, exp_id, k, seq, missed])
        # release the claim only if it is still ours
        claim = f"{self.p}:exp:{exp_id}:flip:{k}"
        held = await self.redis.get(claim)
        if held is not None and held.split("|", 1)[0] == owner:
            await self.redis.delete(claim)
        return bool(done)

    async def assignment_record(self, exp_id: str, k: int, product: str) -> str | None:
        return await self.redis.hget(f"{self.p}:exp:{exp_id}:a:{k}", product)  # type: ignore[no-any-return]

    async def assignment_records_for(self, exp_id: str, ks: Sequence[int]) -> list[dict[str, str]]:
        """The records of several periods in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for k in ks:
            pipe.hgetall(f"{self.p}:exp:{exp_id}:a:{k}")
        return list(await pipe.execute()) if ks else []

    async def assignment_records(self, exp_id: str, k: int) -> dict[str, str]:
        return await self.redis.hgetall(f"{self.p}:exp:{exp_id}:a:{k}")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ sales panel
    async def ingest(self, rows: Sequence[SaleRow], ttl_s: int) -> list[str]:
        """Apply a batch atomically: one status per row ('ok', 'head', 'dup', or a reason)."""
        if not rows:
            return []
        batch = "".join(
            [
                f"{r.event_id}|{r.experiment}|{r.period}|{r.product}|{r.ts_ms}|"
                f"{r.head_end_ms}|{r.units}|{float(r.revenue)!r}|{r.pre_reason}\n"
                for r in rows
            ]
        )
        # a '|' or newline inside an id would shift the fields; wire ids cannot hold them
        if batch.count("\n") != len(rows) or batch.count("|") != 8 * len(rows):
            raise StoreError("sale ids, products and reasons cannot hold '|' or newlines")
        return str(await self._ingest(args=[self.p, ttl_s, batch])).split(",")

    async def sale_status(self, event_id: str) -> dict[str, str] | None:
        raw = await self.redis.get(f"{self.p}:seen:{event_id}")
        if raw is None:
            return None
        status, exp, k, arm = raw.split("|", 3)
        return {"status": status, "experiment": exp, "period": k, "arm": arm}

    async def cells(self, exp_id: str) -> dict[str, str]:
        return await self.redis.hgetall(f"{self.p}:exp:{exp_id}:cells")  # type: ignore[no-any-return]

    async def totals(self, exp_id: str) -> dict[str, int]:
        """Units and events by status ('units:ok', 'events:washout', ...) for an experiment."""
        raw = await self.redis.hgetall(f"{self.p}:exp:{exp_id}:totals")
        return {k: int(v) for k, v in raw.items()}

    async def fix_sequence_target(self, exp_id: str, key: str, target_se: float) -> float:
        """The stored target SE of the experiment's sequence ``key``, storing ``target_se``
        first when there is none (the first writer wins; the value round-trips exactly)."""
        name = f"{self.p}:exp:{exp_id}:cs"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(name, key, repr(float(target_se)))
        pipe.hget(name, key)
        _, stored = await pipe.execute()
        return float(stored)

    async def excluded(self, exp_id: str) -> dict[str, str]:
        return await self.redis.hgetall(f"{self.p}:exp:{exp_id}:excluded")  # type: ignore[no-any-return]
