"""Experiments, their product claims, blackout windows and operator freezes.

Creating an experiment claims each of its products (``{pl}:product:<product>`` = the claim
"id|gen", gen unique to one creation attempt) in chunks of a few thousand, one short script
per chunk, so that Redis keeps serving the sales path and other experiments' flips in between
(one script over a million products held Redis for ~6.5 s). Then its spec and state are
written in its own slot with status 'creating' (``lua/create_init.lua``), it becomes visible
(index, holders, version) in one catalog script, only if its creation marker - a lease that
every chunk renews - is still its own, and it is opened ('running', ``lua/create_open.lua``;
the flip tick's :meth:`ExperimentStore.reconcile` does it for a worker that died first). A claim counts only while it is live: its creation's marker is
still there, or its experiment is in the holders hash with that gen and is neither stopped
nor ended, or is but its last messages are not all out yet (``releasing``: a new holder's
messages must come after them; ``lua/holds.lua``). The claims of a worker that died mid-create therefore stop
counting when its lease expires, and later creations take them over.

Claims, leases, the index and the holders hash are catalog keys, in one hash slot (see
``keys``); an experiment's spec and state are in its own. A write that spans both (a status
change, a new window) is two steps, ordered so that a reader in between errs safely: a stop
moves the experiment's status (which the flip and trigger scripts check) before it frees the
products (holders).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import controller.store.keys as keys
from controller.errors import ConflictError, StoreError
from controller.lifecycle import State, state_of
from controller.spec import ExperimentSpec, load_spec
from controller.store.base import UNAVAILABLE, RedisStore, _text, lua, to_ms
from controller.store.resp import packed_evalsha
from core import status as status_word

log = logging.getLogger("pricelab.store")


@dataclass
class ExperimentState:
    spec: ExperimentSpec
    status: str
    flipped_period: int
    seq: int
    missed_flips: int
    flips: int
    frozen: bool = False
    #: periods below ``closed`` refuse sales; those below ``compacted`` are stored as columns
    closed: int = 0
    compacted: int = 0
    #: set at creation since the compacted layout (issue #17); None for older experiments,
    #: whose cells are in the old single hash and must never be compacted
    n_products: int | None = None
    #: the sequence number of the last decision whose messages are all out (``seq`` above it:
    #: the decision in force is still to be published)
    published: int = 0
    created_ms: int = 0
    backfilled: int = 0
    #: who sent its create command (None: not known, e.g. created before it was kept)
    created_by: str | None = None
    #: what the decision in force was built with: the freezes laid over its messages, and
    #: the event it announced (a redo repeats both)
    decision_freezes: list[dict[str, Any]] = field(default_factory=list)
    decision_event: tuple[str, dict[str, Any]] | None = None
    #: the ``triggered`` events of the kept fires the decision in force took in (a redo
    #: repeats them before its event: lua/decide.lua)
    decision_fired: list[dict[str, Any]] = field(default_factory=list)

    def published_through(self, k: int) -> bool:
        """Period ``k`` (or a later one) is in force and every message of the decision in
        force is out: what a reader of the topic can wait for after a flip."""
        return self.flipped_period >= k and self.published >= self.seq

    @property
    def shows_frozen(self) -> bool:
        """The freeze overlay as an operator is shown it (controller.lifecycle.State)."""
        return self.lifecycle.shows_frozen

    @property
    def lifecycle(self) -> State:
        """The lifecycle state (controller.lifecycle)."""
        return state_of(self.status, self.frozen, self.flipped_period)

    @property
    def phase(self) -> str:
        """What an operator is shown: creating, created, running, paused, stopped, ended."""
        return self.lifecycle.phase.value


#: the state fields a list of experiments shows (streams.client.commands._overview: the
#: phase and freeze overlay, the period in force, the sequence, when and by whom it was
#: created, the boundaries caught up late)
LISTED = ("status", "frozen", "flipped_period", "seq", "created_ms", "created_by", "missed_flips")


def _event(raw: str | None) -> tuple[str, dict[str, Any]] | None:
    doc = json.loads(raw) if raw else None
    return None if doc is None else (str(doc[0]), dict(doc[1]))


#: an experiment's state as the overlap sentence says it
_PHASE_WORDS = {
    "created": "created (its start is ahead)",
    "stopped": "stopped (its products are being released)",
    "ended": "ended (its products are being released)",
}


def holder_value(status: str, gen: str, seq: int, published: int) -> str:
    """What the holders hash says of an experiment (``lua/holds.lua`` reads it): its status
    and claim gen, and ``releasing`` while a stopped or ended one's last messages are not all
    out (its claims still count)."""
    out = f"{status}|{gen}"
    if status in status_word.FINAL and seq > published:
        out += "|" + status_word.RELEASING
    return out


class _Overlap(ConflictError):
    """A claim found a product held live by another experiment (``kind``: running, which
    also covers created and paused, or creating); turned into the sentence once the refused
    creation is undone (ExperimentStore._overlap)."""

    def __init__(self, product: str, holder: str, kind: str) -> None:
        self.product, self.holder, self.kind = product, holder, kind
        super().__init__(f"product {product!r} is in experiment {holder!r}")


class ExperimentStore(RedisStore):
    """Experiments, claims, windows and freezes."""

    def __init__(self, redis: Any, prefix: str = "pl") -> None:
        super().__init__(redis, prefix)
        self._specs: dict[str, ExperimentSpec] = {}

    async def create_experiment(
        self,
        spec: ExperimentSpec,
        now: datetime,
        *,
        lease_ms: int = 30_000,
        chunk: int = 2000,
        created_by: str | None = None,
    ) -> None:
        """Claim every product of ``spec`` and record it as running, or raise ConflictError.
        ``created_by``: who sent the create command (kept with its state, so that a list of
        experiments shows it without reading the audit trail).

        A product is in at most one running experiment: each chunk of claims is checked and
        written by one script, and of two creations racing for common products exactly one
        gets them all (both claim in sorted order, so the one that takes the first common
        product also takes the others). A refused creation releases what it claimed; one whose
        worker died mid-way stops counting when ``lease_ms`` passes without progress.
        """
        if not 1 <= chunk <= 3999:
            raise ValueError("chunk must be 1..3999 (the script MSETs through Lua's unpack)")
        gen = uuid.uuid4().hex[:12]
        marker, holders = keys.creating(self.p, spec.id), self.cat("holders")
        begin = await self._script("create_begin")(
            keys=[self.cat("exp:index"), marker, self.cat("fence")],
            args=[spec.id, gen, lease_ms],
        )
        if begin == "exists":
            raise ConflictError(f"experiment {spec.id!r} already exists")
        if begin == "busy":
            raise ConflictError(f"experiment {spec.id!r} is being created by another command")
        fence = int(begin)
        products = sorted(spec.all_products())
        claims = [keys.product(self.p, x) for x in products]
        sent = 0  # keys of the chunks sent so far: claimed, or maybe claimed if cut off
        base = self.exp(spec.id)
        try:
            sha = await self.redis.script_load(lua("claim_products"))
            args = [self.cat("creating:"), spec.id, gen, str(lease_ms)]
            async with self._connection(marker) as conn:
                # two chunks in flight: the next is packed and sent while Redis runs this one
                in_flight: deque[int] = deque()
                for start in [*range(0, len(claims), chunk), None]:
                    if start is not None:
                        part = claims[start : start + chunk]
                        sent = start + len(part)
                        await conn.send_packed_command(
                            [packed_evalsha(sha, [marker, holders, *part], args)],
                            check_health=False,
                        )
                        in_flight.append(start)
                    while in_flight and (start is None or len(in_flight) >= 2):
                        first = in_flight.popleft()
                        self._claimed(
                            await conn.read_response(), spec.id, products, first, lease_ms
                        )
            init = await self._script("create_init")(
                keys=[f"{base}:spec", f"{base}:state"],
                args=[fence, gen, spec.to_json(), to_ms(now), len(products), created_by or ""],
            )
            done = (
                init == "ok"
                and await self._script("create_commit")(
                    keys=[
                        marker,
                        self.cat("exp:index"),
                        holders,
                        self.cat("version"),
                        keys.drafts(self.p),
                        keys.draft_spec(self.p, spec.id),
                    ],
                    args=[spec.id, gen],
                )
                == "ok"
            )
            if not done:
                raise StoreError(
                    f"creating {spec.id!r}: lease lost (no progress for {lease_ms} ms)"
                )
        except BaseException as exc:
            try:
                end = await self._script("create_abort")(
                    keys=[marker, holders], args=[spec.id, gen]
                )
                if end == "committed":  # only the reply was lost: it exists, keep it all
                    log.warning("creation of %s was committed, but its reply was lost", spec.id)
                else:
                    await self._script("create_drop")(
                        keys=[f"{base}:spec", f"{base}:state"], args=[fence]
                    )
                    await self._unclaim(f"{spec.id}|{gen}", claims[:sent], chunk)
            except Exception:  # Redis gone: the claims die with the lease anyway
                log.warning("could not release the claims of aborted creation %s", spec.id)
            if isinstance(exc, _Overlap):
                raise ConflictError(await self._overlap(spec, exc)) from None
            raise
        self._specs[spec.id] = spec  # what a reader would parse back from the stored JSON
        try:
            await self._open(spec.id, gen)
        except UNAVAILABLE:  # created and committed: the next flip tick opens it (reconcile)
            log.warning("experiment %s is created; the next flip tick will open it", spec.id)

    async def _overlap(self, spec: ExperimentSpec, conflict: _Overlap) -> str:
        """The sentence for a creation refused over products another experiment holds: that
        experiment's real state, how many of the spec's products it holds, a few of them."""
        if conflict.kind == status_word.RELEASING:
            return (
                f"product {conflict.product!r} is still in experiment {conflict.holder!r}, "
                "which has stopped or ended but whose last assignment messages the broker "
                "has not taken yet; its products are free once they are out (the controller "
                "sends them again at every tick): try again then"
            )
        if conflict.kind != status_word.RUNNING:
            return (
                f"product {conflict.product!r} is being claimed by experiment "
                f"{conflict.holder!r}, whose creation is in progress; a product can be in at "
                "most one experiment that has not stopped or ended"
            )
        try:
            held = await self.get_experiment(conflict.holder)
        except StoreError:  # gone meanwhile: say what the claim said
            common, phase = [conflict.product], "live"
        else:
            common = sorted(set(spec.all_products()) & set(held.spec.all_products()))
            common = common or [conflict.product]
            phase = _PHASE_WORDS.get(held.phase, held.phase)
            if held.shows_frozen:
                phase += " and frozen"
        n, shown = len(common), ", ".join(repr(p) for p in common[:3])
        which = (
            f"product {shown} is"
            if n == 1
            else f"{n} of its products ({shown}{', ...' if n > 3 else ''}) are"
        )
        return (
            f"{which} already in experiment {conflict.holder!r}, which is {phase}; a product "
            "can be in at most one experiment that has not stopped or ended"
        )

    @staticmethod
    def _claimed(
        res: list[Any], exp_id: str, products: list[str], start: int, lease_ms: int
    ) -> None:
        """Raise unless a chunk of claims (products from ``start`` on) went through."""
        if res[0] == "conflict":
            raise _Overlap(products[start + int(res[1]) - 1], str(res[2]), str(res[3]))
        if res[0] != "ok":
            raise StoreError(f"creating {exp_id!r}: lease lost (no progress for {lease_ms} ms)")

    async def _unclaim(self, claim: str, claims: Sequence[str], chunk: int = 2000) -> int:
        """Delete the product keys still holding ``claim`` once it is dead; keys deleted."""
        if not claims:
            return 0
        sha = await self.redis.script_load(lua("unclaim"))
        gone = 0
        holders = self.cat("holders")
        async with self._connection(holders) as conn:
            for start in range(0, len(claims), chunk):
                part = claims[start : start + chunk]
                await conn.send_packed_command(
                    [packed_evalsha(sha, [holders, *part], [self.cat("creating:"), claim])],
                    check_health=False,
                )
                n = int(await conn.read_response())
                if n < 0:  # live: nothing to release
                    break
                gone += n
        return gone

    async def experiment_ids(self) -> list[str]:
        return sorted(await self.redis.smembers(self.cat("exp:index")))

    async def get_experiment(self, exp_id: str) -> ExperimentState:
        spec = self._specs.get(exp_id)
        if spec is None:
            # specs are immutable once created: fetch and parse each once per process
            raw = await self.redis.get(f"{self.exp(exp_id)}:spec")
            if raw is None:
                raise StoreError(f"no experiment {exp_id!r}")
            spec = self._specs[exp_id] = load_spec(raw, stored=True)
        st = await self.redis.hgetall(f"{self.exp(exp_id)}:state")
        return self._state(exp_id, spec, st)

    def _state(self, exp_id: str, spec: ExperimentSpec, st: dict[str, Any]) -> ExperimentState:
        if not st:
            raise StoreError(f"no state for experiment {spec.id!r}")
        return ExperimentState(
            spec=spec,
            status=st.get("status", "unknown"),
            flipped_period=int(st.get("flipped_period", -1)),
            seq=int(st.get("seq", 0)),
            missed_flips=int(st.get("missed_flips", 0)),
            flips=int(st.get("flips", 0)),
            frozen=st.get("frozen", "0") == "1",
            closed=int(st.get("closed", 0)),
            compacted=int(st.get("compacted", 0)),
            n_products=int(st["n_products"]) if "n_products" in st else None,
            # an experiment from before 'published' was kept has nothing pending
            published=int(st.get("published", st.get("seq", 0))),
            created_ms=int(st.get("created_ms", 0)),
            backfilled=int(st.get("backfilled", 0)),
            created_by=st.get("created_by") or None,
            decision_freezes=json.loads(st.get("dfreezes") or "[]"),
            decision_event=_event(st.get("devent")),
            decision_fired=json.loads(st.get("dfired") or "[]"),
        )

    async def _parse_specs(self, ids: list[str]) -> dict[str, ExperimentSpec]:
        """The specs of ``ids``: those parsed already, and the others fetched and parsed in
        one round trip. Returned, not read back from the cache after the await: another
        reader of this store (the flip tick, the sales routing, the trigger routes share it)
        may drop a retired one from the cache meanwhile."""
        specs = {e: s for e in ids if (s := self._specs.get(e)) is not None}
        missing = [e for e in ids if e not in specs]
        if not missing:
            return specs
        pipe = self.redis.pipeline(transaction=False)
        for e in missing:
            pipe.get(f"{self.exp(e)}:spec")
        for e, raw in zip(missing, await pipe.execute(), strict=True):
            if raw is None:
                raise StoreError(f"no experiment {e!r}")
            specs[e] = self._specs[e] = load_spec(raw, stored=True)
        return specs

    async def experiments(self) -> list[ExperimentState]:
        """Every indexed experiment: the specs not parsed yet in one round trip, then every
        state in one (a round trip per experiment made a list of 1,000 cost ~0.5 s:
        benchmarks/bench_console.py)."""
        ids = await self.experiment_ids()
        specs = await self._parse_specs(ids)
        pipe = self.redis.pipeline(transaction=False)
        for e in ids:
            pipe.hgetall(f"{self.exp(e)}:state")
        states = await pipe.execute()
        return [self._state(e, specs[e], st) for e, st in zip(ids, states, strict=True)]

    async def experiments_unmarked(self, mark: str) -> list[ExperimentState]:
        """Every indexed experiment but those whose sequence-targets hash holds ``mark``
        (the analysis worker's :data:`core.final_look.FINAL_LOOK`: their analysis is over)
        and those stopped or ended before they flipped a period (never analysed): one round
        trip for the states and marks, one for the specs not parsed yet. The specs of the
        ones left out are neither parsed nor kept (a worker's memory must not grow with
        every experiment ever run)."""
        ids = await self.experiment_ids()
        pipe = self.redis.pipeline(transaction=False)
        for e in ids:
            pipe.hgetall(f"{self.exp(e)}:state")
            pipe.hget(f"{self.exp(e)}:cs", mark)
        got = await pipe.execute()
        states, marks = got[0::2], got[1::2]
        marked = {e for e, m in zip(ids, marks, strict=True) if m is not None}
        # stopped or ended before it flipped a period: no look is ever taken of it, so no
        # final look ever marks it (its spec, every product of it, would be kept for good)
        marked.update(
            e
            for e, st in zip(ids, states, strict=True)
            if st.get("status") in status_word.FINAL and int(st.get("flipped_period", -1)) < 0
        )
        for e in marked:
            self._specs.pop(e, None)
        live = [(e, st) for e, st in zip(ids, states, strict=True) if e not in marked]
        specs = await self._parse_specs([e for e, _ in live])
        return [self._state(e, specs[e], st) for e, st in live]

    async def experiments_unretired(self) -> list[ExperimentState]:
        """Every indexed experiment but the retired ones (controller.retirement), for the
        controller's readers: the flip tick, the sales routing, the trigger routes. One round
        trip for their ids (the index less the retired set, in Redis), one for which of the
        specs this process keeps are retired, one for the states, one for the specs not
        parsed yet. The specs of retired experiments are neither parsed nor kept (a
        controller's memory and its tick's work in Python must not grow with every
        experiment ever run; Redis's ``SDIFF`` still reads the whole index); a command that
        reads one (:meth:`get_experiment`) parses it again, and the next call drops it."""
        retired = self.cat("exp:retired")
        kept = list(self._specs)
        # not pipelined: redis-py's cluster pipeline refuses multi-key commands such as
        # SDIFF (both keys are the catalog's, one slot, so the command itself is fine)
        ids = sorted(await self.redis.sdiff([self.cat("exp:index"), retired]))
        if kept:
            for e, gone in zip(kept, await self.redis.smismember(retired, kept), strict=True):
                if gone:
                    self._specs.pop(e, None)
        pipe = self.redis.pipeline(transaction=False)
        for e in ids:
            pipe.hgetall(f"{self.exp(e)}:state")
        states = await pipe.execute()
        specs = await self._parse_specs(ids)
        return [self._state(e, specs[e], st) for e, st in zip(ids, states, strict=True)]

    async def retire(self, spec: ExperimentSpec, chunk: int = 10_000) -> bool:
        """Record the experiment as retired (controller.retirement): its products first, in
        the retired products set (what the sales routing reads to keep ``unknown_product``
        for products no experiment holds any more), then its id (``lua/retire.lua``, which
        moves the version). Idempotent: any number of controllers may call it. True if this
        call retired it; False if it was already, or if the holders hash still says its last
        messages are not all out (the next tick's reconcile repairs that, then retires it)."""
        if await self.redis.sismember(self.cat("exp:retired"), spec.id):
            # another controller's tick retired it since this one read the experiments: its
            # products are in the set (a controller per tick would add them all again)
            return False
        products = sorted(spec.all_products())
        key = self.cat("exp:retired-products")
        for start in range(0, len(products), chunk):
            await self.redis.sadd(key, *products[start : start + chunk])
        done = int(
            await self._script("retire")(
                keys=[self.cat("exp:retired"), self.cat("holders"), self.cat("version")],
                args=[spec.id],
            )
        )
        if done >= 0:
            self._specs.pop(spec.id, None)
        return done == 1

    async def retired_count(self) -> int:
        """How many experiments are retired (the set only grows)."""
        return int(await self.redis.scard(self.cat("exp:retired")))

    async def retired_products(self, excluding: Container[str] = ()) -> set[str]:
        """The products of every retired experiment (bounded by the catalogue) but those in
        ``excluding``: read after :meth:`retired_count`, it holds the products of at least
        that many. One ``SMEMBERS``, whole, not ``SSCAN``: a scan's cursor resumed on another
        server (a retried call after a failover or a restart) skips members silently, and the
        routing would trust the short set (the whole reply is only held while filtered)."""
        members = await self.redis.smembers(self.cat("exp:retired-products"))
        return {p for p in members if p not in excluding}

    @property
    def specs_held(self) -> int:
        """How many experiment specs this process keeps parsed."""
        return len(self._specs)

    async def listed_experiments(self) -> list[ExperimentState]:
        """Every indexed experiment with only the state a list of experiments shows
        (:data:`LISTED`; the other fields at their defaults), for
        ``streams.client.commands.read_overviews``: a sixth of :meth:`experiments`' reply
        to parse, which is most of what a list of 1,000 costs (benchmarks/bench_console.py)."""
        ids = await self.experiment_ids()
        specs = await self._parse_specs(ids)
        pipe = self.redis.pipeline(transaction=False)
        for e in ids:
            pipe.hmget(f"{self.exp(e)}:state", LISTED)
        got = await pipe.execute()
        return [
            self._state(
                e,
                specs[e],
                {k: v for k, v in zip(LISTED, values, strict=True) if v is not None},
            )
            for e, values in zip(ids, got, strict=True)
        ]

    async def set_status(self, exp_id: str, status: str) -> None:
        """Write the status outright and sync the catalog: the store's primitive, for store
        tests and repairs. The controller moves a status only through :meth:`decide` (the
        lifecycle's compare and set), then :meth:`sync_holder`."""
        await self.redis.hset(f"{self.exp(exp_id)}:state", "status", status)
        await self.sync_holder(exp_id)

    async def sync_holder(self, exp_id: str) -> None:
        """After a status change (decide.lua moves the experiment's own state first), and
        after a final decision's messages are out: copy the status to the catalog's holders
        hash and move the version. Stopped or ended, the experiment's product claims die with
        it (``lua/holds.lua``) once its last messages are out (until then the holder reads
        ``releasing``, and a new creation cannot claim its products: a pricing system must
        read the new holder's messages after its last ones); :meth:`release_products` then
        deletes the keys. A process that dies in between leaves the holders behind:
        :meth:`reconcile` repairs that on the next flip tick."""
        status, gen, seq, published = await self.redis.hmget(
            f"{self.exp(exp_id)}:state", "status", "claim", "seq", "published"
        )
        # an experiment from before 'published' was kept has nothing pending (_state)
        held = holder_value(
            _text(status) or "", _text(gen) or "", int(seq or 0), int(published or seq or 0)
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.cat("holders"), exp_id, held)
        pipe.incr(self.cat("version"))
        await pipe.execute()

    async def reconcile(self, states: Sequence[ExperimentState]) -> int:
        """Finish the cross-slot steps a dead process left half done, for the indexed
        experiments ``states``: open one committed but still 'creating' (create_open.lua), and
        bring the holders hash to each experiment's own status (which moves first, see
        :meth:`sync_holder`). Returns how many were repaired; called on every flip tick."""
        holders = await self.redis.hgetall(self.cat("holders"))
        fixed = 0
        for st in states:
            base = self.exp(st.spec.id)
            if st.status == status_word.CREATING:
                gen = _text(await self.redis.hget(f"{base}:state", "claim")) or ""
                fixed += int(await self._open(st.spec.id, gen))
                continue
            held = _text(holders.get(st.spec.id))
            if held is None:
                continue
            word, _, gen = held.partition("|")
            want = holder_value(st.status, gen.partition("|")[0], st.seq, st.published)
            if held != want:
                log.warning(
                    "experiment %s: holders said %s, its state %s; repaired",
                    st.spec.id,
                    held.replace("|", " ", 1),
                    st.status,
                )
                await self.sync_holder(st.spec.id)
                fixed += 1
        return fixed

    async def _open(self, exp_id: str, gen: str) -> bool:
        """'creating' -> 'running' (create_open.lua), then the version moves, so that readers
        that cache the running experiments by version (trigger routes) see it."""
        opened = bool(
            await self._script("create_open")(keys=[f"{self.exp(exp_id)}:state"], args=[gen])
        )
        if opened:
            await self.redis.incr(self.cat("version"))
        return opened

    async def release_products(self, exp_id: str) -> int:
        """Delete the product keys of a stopped or ended experiment (they no longer count, so
        this is housekeeping, done after the kill switch has published); keys deleted."""
        spec = (await self.get_experiment(exp_id)).spec
        gen = _text(await self.redis.hget(f"{self.exp(exp_id)}:state", "claim"))
        claim = f"{exp_id}|{gen}" if gen else exp_id
        return await self._unclaim(claim, [keys.product(self.p, x) for x in spec.all_products()])

    async def version(self) -> int:
        return int(await self.redis.get(self.cat("version")) or 0)

    async def next_trail(self, n: int = 1) -> int:
        """Take ``n`` places in the audit trail; returns the last. One counter over every
        experiment, moved atomically: its records keep the order they were decided in, also
        when the clock stands still or several workers decide (streams/client/history.py)."""
        return int(await self.redis.incr(self.cat("trail"), n))

    async def experiment_of(self, product: str) -> str | None:
        """The running (or paused) experiment holding the product, if any."""
        claim = _text(await self.redis.get(keys.product(self.p, product)))
        if claim is None:
            return None
        exp_id, _, gen = claim.partition("|")
        held = _text(await self.redis.hget(self.cat("holders"), exp_id))
        status, _, held_gen = (held or "").partition("|")
        if held is None or status in status_word.FINAL or held_gen != gen:
            return None  # a creation in progress or abandoned, or a stale key
        return exp_id

    async def open_window(self, exp_id: str, window_id: str, start: datetime, reason: str) -> None:
        doc = json.dumps({"start_ms": to_ms(start), "end_ms": None, "reason": reason})
        await self.redis.hset(f"{self.exp(exp_id)}:windows", window_id, doc)
        await self.redis.incr(self.cat("version"))  # after: a cache that sees it reloads it

    async def close_windows(self, exp_id: str, end: datetime) -> None:
        key = f"{self.exp(exp_id)}:windows"
        windows = await self.redis.hgetall(key)
        pipe = self.redis.pipeline(transaction=True)
        for wid, raw in windows.items():
            doc = json.loads(raw)
            if doc["end_ms"] is None:
                doc["end_ms"] = to_ms(end)
                pipe.hset(key, wid, json.dumps(doc))
        if len(pipe):
            await pipe.execute()
        await self.redis.incr(self.cat("version"))

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        """The experiment's exclusion windows, each with its ``id`` (``{phase}-{hex}``: the
        phase that opened it, ``paused`` or ``stopped``)."""
        raw = await self.redis.hgetall(f"{self.exp(exp_id)}:windows")
        return [json.loads(v) | {"id": k} for k, v in raw.items()]

    async def add_freeze(self, freeze_id: str, doc: dict[str, Any]) -> bool:
        """Record a freeze; False (nothing written) when one with this id exists already."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.cat("freezes"), freeze_id, json.dumps(doc))
        pipe.incr(self.cat("version"))
        added, _ = await pipe.execute()
        return bool(added)

    async def cancel_freeze(self, freeze_id: str, cut: dict[str, Any] | None) -> None:
        """Cancel a freeze in one step: ``cut`` None removes one that has not begun; else
        ``cut`` (its window ended at the cancel) replaces it, its past kept as a blackout.
        Either way it is remembered as cancelled (:meth:`cancelled_freezes`), so a repeated
        cancel is known for one."""
        raw = await self.redis.hget(self.cat("freezes"), freeze_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.cat("freezes:cancelled"), freeze_id, raw if cut is None else json.dumps(cut))
        if cut is None:
            pipe.hdel(self.cat("freezes"), freeze_id)
        else:
            pipe.hset(self.cat("freezes"), freeze_id, json.dumps(cut))
        pipe.incr(self.cat("version"))
        await pipe.execute()

    def freeze_guard(
        self, freeze_id: str, cancelled: bool = False
    ) -> tuple[str, dict[str, str | None]]:
        """What a replica barrier reads to know a freeze (or its cancel) is recorded: its
        entry in the freezes (or the cancelled freezes) hash."""
        return self.cat("freezes:cancelled" if cancelled else "freezes"), {freeze_id: None}

    async def cancelled_freezes(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.cat("freezes:cancelled"))
        return [json.loads(v) | {"id": k} for k, v in raw.items()]

    async def freezes(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.cat("freezes"))
        return [json.loads(v) | {"id": k} for k, v in raw.items()]
