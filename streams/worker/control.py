"""Control-plane handlers: competitor prices (triggers) and operator commands.

Like the sales handler, they never raise on bad input: it goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from controller.clock import Clock
from controller.drafts import Barrier, DraftBook
from controller.errors import (
    CommandRefused,
    ConflictError,
    SpecError,
    StoreError,
    UnknownExperiment,
)
from controller.flipper import Flipper
from controller.lifecycle import Kind, reason_missing
from controller.spec import load_spec
from core.errors import kept
from streams.worker.handlers import Event
from streams.worker.kafka import JsonPublisher
from streams.worker.metrics import Metrics
from streams.worker.schemas import (
    Command,
    CommandKind,
    CommandReply,
    CompetitorPrice,
    DecodeError,
    ExperimentEvent,
    actor_refusal,
    decode,
    is_ident,
)
from streams.worker.sinks import DeadLetterSink

log = logging.getLogger("pricelab.streams")


async def dead_letter(
    dlq: DeadLetterSink, clock: Clock, topic: str, ev: Event, exc: DecodeError
) -> None:
    """Send an undecodable event to the dead-letter topic with its reason and position."""
    await clock.sync()
    await dlq.send(topic, ev.value, exc.reason, str(exc), clock.now(), ev.partition, ev.offset)


class CompetitorHandler:
    """Validates competitor-price events; triggered designs act on them (controller.triggers)."""

    def __init__(
        self, dlq: DeadLetterSink, metrics: Metrics, clock: Clock, topic: str, on_price=None
    ) -> None:  # type: ignore[no-untyped-def]
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.topic = topic
        self.on_price = on_price

    async def handle(self, batch: Sequence[Event]) -> int:
        self.metrics.events_consumed.labels(self.topic).inc(len(batch))
        self.metrics.competitor_batch_size.observe(len(batch))
        good: list[CompetitorPrice] = []
        bad: list[tuple[Event, DecodeError]] = []
        for ev in batch:
            try:
                good.append(decode(CompetitorPrice, ev.value))  # type: ignore[arg-type]
            except DecodeError as exc:
                bad.append((ev, kept(exc)))  # its traceback would hold this frame, and the batch
        # on_price before any other await: batches handled concurrently apply in call order
        if good and self.on_price is not None:
            await self.on_price(good)
        for ev, err in bad:
            await dead_letter(self.dlq, self.clock, self.topic, ev, err)
        await self.dlq.publisher.flush()
        return len(good)


class CommandHandler:
    """Operator commands: create/stop/pause/resume/freeze/unfreeze/decision/comment, and a
    draft's save and discard (controller.drafts), each answered on the replies topic."""

    def __init__(
        self,
        flipper: Flipper,
        publisher: JsonPublisher,
        dlq: DeadLetterSink,
        metrics: Metrics,
        clock: Clock,
        topic: str,
        reply_topic: str,
        max_bytes: int,
        events_topic: str | None = None,
        actors: str = "",
    ) -> None:
        self.flipper = flipper
        self.publisher = publisher
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.topic = topic
        self.reply_topic = reply_topic
        self.max_bytes = max_bytes
        self.events_topic = events_topic  # the audit trail (None: not written)
        self.actors = actors

    async def handle(self, ev: Event) -> CommandReply | None:
        self.metrics.events_consumed.labels(self.topic).inc()
        try:
            cmd = decode(Command, ev.value, max_bytes=self.max_bytes)  # type: ignore[arg-type]
        except DecodeError as exc:
            await dead_letter(self.dlq, self.clock, self.topic, ev, exc)
            await self.dlq.publisher.flush()
            self.metrics.commands.labels("unknown", "rejected").inc()
            return None
        # its place in the audit trail, taken on receipt: before everything it causes
        order = await self.flipper.trail_order() if self.events_topic is not None else None
        refusal = command_refusal(cmd, self.actors)
        named = experiment_named(cmd)
        unknown: tuple[str, ...] = ()  # ids the store does not know: no trail is kept under them
        if refusal is not None:
            reply = CommandReply(
                command_id=cmd.command_id, ok=False, experiment=named, error=refusal
            )
        else:
            try:
                detail = await self._apply(cmd)
                # with PRICELAB_REDIS__WAIT_REPLICAS, no reply before the replicas have what
                # the command changed (waited for in place: Flipper.replicated_at_last)
                await self.flipper.replicated_at_last(f"command {cmd.command_id}")
                reply = CommandReply(
                    command_id=cmd.command_id,
                    ok=True,
                    experiment=experiment_named(cmd, detail),
                    detail=detail,
                )
            except (SpecError, ConflictError, StoreError, CommandRefused, ValueError) as exc:
                if isinstance(exc, UnknownExperiment):
                    unknown = exc.experiments
                reply = CommandReply(
                    command_id=cmd.command_id, ok=False, experiment=named, error=str(exc)
                )
            except KafkaError as exc:
                # the broker refused a message of the command's own decision before it was
                # kept (one kept is carried out, and its reply says its messages wait): the
                # operator still gets one reply, and the agent goes on
                log.error("command %s: the broker refused its messages: %r", cmd.command_id, exc)
                reply = CommandReply(
                    command_id=cmd.command_id,
                    ok=False,
                    experiment=named,
                    error=broker_refused(cmd, exc),
                )
        self.metrics.commands.labels(cmd.kind.value, "ok" if reply.ok else "refused").inc()
        await self._trail(cmd, reply, order, unknown)
        await self.publisher.send(self.reply_topic, reply, cmd.command_id)
        await self.publisher.flush()
        return reply

    async def _trail(
        self, cmd: Command, reply: CommandReply, order: int | None, unknown: tuple[str, ...] = ()
    ) -> None:
        """One ``command`` record per experiment the command names, accepted or refused, before
        the reply: an operator who has the reply can find it in the trail. ``order``: its
        place in the trail, taken when the command was received. ``unknown``: ids the
        command was refused for because no experiment has them; nothing is kept under those (a
        typo's commands would otherwise make a trail of an experiment that does not exist)."""
        if self.events_topic is None:
            return
        await self.clock.sync()
        now = self.clock.now()
        for experiment, detail in trail_records(cmd, reply, unknown):
            if order is not None:
                detail = detail | {"order": order}
            event = ExperimentEvent(experiment=experiment, kind="command", at=now, detail=detail)
            await self.publisher.send(self.events_topic, event, experiment)

    def _barrier(self, cmd: Command) -> Barrier:
        """The replica barrier of what ``cmd`` wrote, with its guard (a draft's entry)."""

        async def barrier(guard: tuple[str, dict[str, str | None]]) -> None:
            await self.flipper.replicated_at_last(f"command {cmd.command_id}", guard)

        return barrier

    async def _apply(self, cmd: Command) -> dict[str, object] | None:
        f = self.flipper
        if cmd.kind == CommandKind.CREATE:
            spec = load_spec(cmd.spec or {})
            reply = await f.create(spec, backfill=cmd.backfill, actor=cmd.actor)
            return reply.detail() | {"products": len(spec.all_products())}
        if cmd.kind == CommandKind.FREEZE:
            return {"freeze": await f.freeze(cmd.command_id, cmd.freeze or {})}
        if cmd.kind == CommandKind.UNFREEZE:
            assert cmd.freeze_id is not None  # the schema requires it
            return {"freeze": await f.unfreeze(cmd.freeze_id)}
        if cmd.kind == CommandKind.DRAFT:
            assert cmd.actor is not None  # the refusal: no command is carried out without one
            return await DraftBook(f.store, f.clock, self._barrier(cmd)).save(
                cmd.spec or {}, cmd.actor
            )
        assert cmd.experiment is not None  # the schema requires it
        if cmd.kind == CommandKind.DISCARD:
            assert cmd.actor is not None and cmd.reason is not None  # the refusal
            return await DraftBook(f.store, f.clock, self._barrier(cmd)).discard(
                cmd.experiment, cmd.actor, cmd.reason.strip()
            )
        if cmd.kind == CommandKind.COMMENT:
            return await f.comment(cmd.experiment)
        if cmd.kind == CommandKind.DECISION:
            assert cmd.arm is not None and cmd.reason is not None  # the schema, the refusal
            return await f.decide(
                cmd.experiment, cmd.arm, cmd.reason.strip(), stop=cmd.stop, ship=cmd.ship
            )
        kind = {
            CommandKind.STOP: Kind.STOP,
            CommandKind.PAUSE: Kind.PAUSE,
            CommandKind.RESUME: Kind.RESUME,
        }[cmd.kind]
        default = {Kind.STOP: "stopped by operator", Kind.PAUSE: "paused by operator"}
        reply = await f.command(cmd.experiment, kind, cmd.reason or default.get(kind))
        return reply.detail()


#: where a command that names no single experiment is recorded (a freeze of every experiment,
#: an unfreeze): ``pricelab experiment history`` shows these with every experiment's own
FLEET = "_all"


def experiment_named(cmd: Command, detail: dict[str, object] | None = None) -> str | None:
    """The experiment a command's reply names: the one it names (a create: its spec's id; a
    freeze or an unfreeze: the one experiment the freeze covers); several, comma-separated;
    a freeze of every experiment: FLEET. None when it names none (an unfreeze of a freeze
    that does not exist)."""
    if cmd.experiment:
        return cmd.experiment
    if cmd.kind in (CommandKind.CREATE, CommandKind.DRAFT):
        spec_id = (cmd.spec or {}).get("id")
        return spec_id if isinstance(spec_id, str) else None
    freeze = cmd.freeze or {}
    if cmd.kind is CommandKind.UNFREEZE:
        view = (detail or {}).get("freeze")
        freeze = view if isinstance(view, dict) else {}
    scope = freeze.get("experiments")
    if scope == "all":
        return FLEET
    if isinstance(scope, list) and scope:
        return ",".join(str(x) for x in scope)
    return None


def broker_refused(cmd: Command, exc: BaseException) -> str:
    """The one sentence of a command the broker's refusal stopped before its decision was
    kept. Sending it again is safe: a command sent twice is carried out once."""
    what = f"experiment {cmd.experiment!r}'s" if cmd.experiment else "its"
    why = str(exc).strip() or type(exc).__name__
    return (
        f"the broker refused {what} messages ({why}); send the {cmd.kind.value} again once "
        "it takes them (a command sent twice is carried out once)"
    )


def command_refusal(cmd: Command, actors: str = "") -> str | None:
    """Why the controller refuses ``cmd`` before looking at the experiment, or None: no or an
    unknown actor, or no reason for a command that needs one."""
    refusal = actor_refusal(cmd.actor, actors)
    if refusal is not None:
        return refusal
    kind = cmd.kind.value
    if reason_missing(kind, cmd.reason or (cmd.freeze or {}).get("reason")):
        if cmd.kind is CommandKind.COMMENT:
            return "a comment command needs its text (its reason: kept in the audit trail)"
        return f"a {kind} command needs a reason (kept in the experiment's audit trail)"
    return None


def trail_records(
    cmd: Command, reply: CommandReply, unknown: tuple[str, ...] = ()
) -> list[tuple[str, dict[str, object]]]:
    """(experiment, detail) of the audit records of one command: under the experiment it
    names (a create or a draft: its spec's id; a freeze: each experiment it lists), else
    under FLEET; none under ``unknown``, ids the command was refused for because no
    experiment (or draft) has them (and none at all when it names no other)."""
    detail: dict[str, object] = {
        "command_id": cmd.command_id,
        "command": cmd.kind.value,
        "actor": cmd.actor,
        "principal": cmd.principal,
        "reason": cmd.reason or (cmd.freeze or {}).get("reason") or None,
        "accepted": reply.ok,
    }
    if not reply.ok:
        detail["refusal"] = reply.error
    elif reply.detail and reply.detail.get("already"):
        detail["already"] = reply.detail["already"]
    if cmd.kind is CommandKind.DECISION:
        # what was decided (accepted: the arm as the experiment names it), else what was asked
        decided = (reply.detail or {}).get("decision") if reply.ok else None
        detail["decision"] = decided or {"arm": cmd.arm, "stop": cmd.stop}
    if cmd.freeze_id or cmd.freeze:
        detail["freeze"] = cmd.freeze_id or (cmd.freeze or {}).get("id") or cmd.command_id
    targets: list[str] = []
    if cmd.experiment:
        targets = [cmd.experiment]
    elif cmd.kind in (CommandKind.CREATE, CommandKind.DRAFT) and isinstance(
        (cmd.spec or {}).get("id"), str
    ):
        targets = [str((cmd.spec or {})["id"])]
    elif cmd.kind is CommandKind.FREEZE and isinstance((cmd.freeze or {}).get("experiments"), list):
        targets = [str(x) for x in (cmd.freeze or {})["experiments"]]
    elif cmd.kind is CommandKind.UNFREEZE:
        # the experiments of the freeze it cancelled, as its reply names them (a freeze of
        # every experiment, or one the reply does not name: under the fleet)
        view = (reply.detail or {}).get("freeze")
        scope = view.get("experiments") if isinstance(view, dict) else None
        if isinstance(scope, list):
            targets = [str(x) for x in scope]
    named = [t for t in targets if is_ident(t)]
    if set(unknown) & set(targets):
        return [(t, detail) for t in named if t not in unknown]
    return [(t, detail) for t in named] or [(FLEET, detail | {"named": targets[:10]})]
