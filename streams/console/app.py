"""The console's ASGI application (Starlette): sign-in, the JSON API under ``/api/``, the
pages over it, and the live stream of an experiment's looks.

Every request but ``/health``, ``/ready``, the sign-in and the static files needs a session: an
API request without one is 401, a page redirects to the sign-in. Every state-changing request
carries the session's CSRF token (the ``X-CSRF-Token`` header, or a ``csrf`` form field); the
JSON sign-in, which has no session yet, takes only ``application/json``, which a cross-site
form cannot send. A role that may not do an action is refused with 403, whether or not the
page shows its button.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from controller.clock import WallClock
from controller.errors import CommandRefused, SpecError, UnknownDraft, UnknownExperiment
from controller.settings import Settings
from controller.store import Store, make_redis
from core.errors import PricelabError
from streams.client.commands import freeze_document, instant, send_command_async
from streams.client.history import TrailFollower
from streams.client.known import known
from streams.client.letter_follower import LetterFollower
from streams.client.stack_clock import stack_clock
from streams.console import auth, charts
from streams.console.decision import DecisionRefused, decision_command, decision_stops
from streams.console.feed import EstimatesFeed
from streams.console.health import FOLLOWED_LETTERS_TTL, HealthReads, health_view
from streams.console.metrics import ConsoleMetrics, MeasureRequests
from streams.console.shared import RenderedOnce, SharedReads
from streams.console.statuses import STATUS_KEY, StatusFeed
from streams.console.views import (
    TABS,
    experiment_view,
    experiments_view,
    finite,
    schedule_view,
)
from streams.errors import ServiceUnavailable
from streams.worker.schemas import REASON_CHARS, actor_refusal, is_ident

log = logging.getLogger(__name__)

#: the session's cookie (signed by SessionMiddleware)
SESSION_COOKIE = "pricelab_console"

#: the lifecycle commands the page shows as buttons; ACTIONS, every command it sends, each
#: with its route
LIFECYCLE = ("pause", "resume", "stop")
ACTIONS = (*LIFECYCLE, "freeze", "unfreeze", "decision", "comment")

Send = Callable[..., Awaitable[dict[str, Any]]]


@dataclass
class Console:
    """What the routes share: the settings, the users, the store, the estimates feed, and how
    a command is sent (the client's ``send_command_async``); the status changes' feed (None:
    no live statuses) and what the Health section keeps between fetches."""

    settings: Settings
    users: auth.Users
    store: Store
    feed: EstimatesFeed
    send: Send = send_command_async
    metrics: ConsoleMetrics = field(default_factory=ConsoleMetrics)
    statuses: StatusFeed | None = None
    health: HealthReads = field(default_factory=HealthReads)
    #: the one reader of the audit trail the pages share (None: each page reads the topic)
    trails: TrailFollower | None = None
    #: the one reader of the dead-letter topic the Health sections share (None: each count
    #: reads the topic from its start)
    letters: LetterFollower | None = None
    #: the experiments lists being read, shared by the identical requests each can serve
    #: (keyed on status and search; streams.console.shared)
    lists: SharedReads[tuple[str | None, str | None], dict[str, Any]] = field(init=False)
    #: the experiment pages being read, likewise (keyed on the id and the history's page):
    #: every open page of an experiment redraws its live parts on each of its looks
    pages: SharedReads[tuple[str, int], dict[str, Any]] = field(init=False)
    #: the heatmaps made (streams.console.charts), each also made when its experiment is
    #: created: on the ``created`` status, and on the console's own launch
    heatmaps: charts.Heatmaps = field(default_factory=charts.Heatmaps)

    def __post_init__(self) -> None:
        if self.statuses is not None:
            self.statuses.watch(self._heard)
        self.lists = SharedReads(
            lambda key: experiments_view(self.store, self.feed, *key, self.settings)
        )
        self.pages = SharedReads(
            lambda key: experiment_view(
                self.settings, self.store, self.feed, *key, trails=self.trails
            )
        )

    def _heard(self, change: dict[str, Any]) -> None:
        if change.get("kind") == "created":
            self.heatmaps.warm(self.store, str(change["experiment"]))


class Refused(Exception):
    """A request the console refuses: its status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(files("streams.console") / "templates")),
        autoescape=select_autoescape(["html", "j2"]),
    )

    def num(v: Any, fmt: str = "{:+.4g}") -> str:
        return "-" if v is None else fmt.format(v)

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100.0 * v:+.1f}%"

    env.filters["num"] = num
    env.filters["pct"] = pct
    # the list's table, once per list document (every open list page asks at once)
    env.filters["experiments_list"] = RenderedOnce(
        lambda doc: Markup(env.get_template("experiments_list.html").render(doc=doc))
    )
    return env


_ENV = _templates()


# ------------------------------------------------------------------ sessions and rules
def _user(request: Request) -> auth.User | None:
    """The signed-in user: the one the trusted upstream's header names, when the console is
    configured to take it (``console.trusted_user_header``: then only it), else the one the
    session names; either, only if the users file lists them."""
    c: Console = request.app.state.console
    header = c.settings.console.trusted_user_header
    name = request.headers.get(header) if header else request.session.get("user")
    return c.users.users.get(name) if isinstance(name, str) else None


def _no_user(request: Request) -> Refused:
    """Why there is no user: no session (401), or an upstream identity the users file does not
    list (403)."""
    header = _console(request).settings.console.trusted_user_header
    name = request.headers.get(header) if header else None
    if name:
        return Refused(403, f"{name!r} is not a console user: the users file does not list them")
    return Refused(401, "sign in first")


def _csrf(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def _check_csrf(request: Request, form: dict[str, Any] | None = None) -> None:
    given = request.headers.get("x-csrf-token") or (form or {}).get("csrf") or ""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not secrets.compare_digest(str(given), token):
        log.warning("refused %s %s without a valid CSRF token: %s", request.method,
                    request.url.path, _csrf_refusal(request, bool(given), token))  # fmt: skip
        raise Refused(403, "the request carries no valid CSRF token: reload the page and retry")


def _csrf_refusal(request: Request, given: bool, token: object) -> str:
    """Why a request's CSRF token was refused, for the operator's log (never a token's value
    or a cookie's): a forged request, a browser that dropped or doubled the cookie, a cookie
    the console could not read (its age tells a clock that stepped back from an expired
    one), a form sent again after its session signed in."""
    cookies = request.headers.get("cookie", "").count(f"{SESSION_COOKIE}=")
    if not given:
        return f"it carries no token ({cookies} session cookie(s))"
    if cookies == 0:
        return "it carries no session cookie"
    if not isinstance(token, str):
        said = _cookie_refusal(request, request.cookies.get(SESSION_COOKIE, ""))
        return f"its session cookie was not accepted: {said} ({cookies} session cookie(s))"
    signed_in = "signed in" if request.session.get("user") else "not signed in"
    return f"its token is not its session's ({signed_in}; {cookies} session cookie(s))"


def _cookie_refusal(request: Request, value: str) -> str:
    """Why the session middleware did not accept a session cookie: its signature (checked with
    the console's key, without an age), else its age, read from its timestamp (no secret): a
    cookie signed in the future is what a wall clock that stepped back gives."""
    from itsdangerous import BadSignature, TimestampSigner

    try:
        _, signed = TimestampSigner(request.app.state.session_secret).unsign(
            value, return_timestamp=True
        )
    except BadSignature:
        return "its signature does not verify (signed by another key, or altered)"
    # the wall's time, as the middleware's check reads it (itsdangerous: the system's)
    age = (WallClock().now() - signed).total_seconds()
    max_age = _console(request).settings.console.session_max_age.total_seconds()
    if age < 0:
        return f"it was signed {-age:.0f} s in the future (the clock stepped back?)"
    if age > max_age:
        return f"it is {age:.0f} s old, older than session_max_age"
    return f"it is {age:.0f} s old and signed by this console (its content unreadable?)"


def _need(request: Request, action: str) -> auth.User:
    user = _user(request)
    if user is None:
        raise _no_user(request)
    if not auth.may(user.role, action):
        who = {
            "decide": "an analyst or an admin",
            "comment": "an analyst, an operator or an admin",
            "draft": "an analyst, an operator or an admin",
        }.get(action, "an operator or an admin")
        article = "an" if user.role[0] in "aeiou" else "a"
        raise Refused(403, f"{article} {user.role} may not {action}: ask {who}")
    return user


def _console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


async def _body(request: Request) -> dict[str, Any]:
    """A POST's fields: a JSON object, or a form."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = await request.json()
        except ValueError:
            raise Refused(400, "the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise Refused(400, "the request body is not a JSON object")
        return doc
    return dict(await request.form())


def _refusal(exc: BaseException) -> Refused:
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, UnknownExperiment):
        return Refused(404, unknown_sentence(exc))
    sentence = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ServiceUnavailable | OSError):
        return Refused(503, sentence)
    return Refused(400, sentence)


def unknown_sentence(exc: UnknownExperiment) -> str:
    """An unknown experiment's (or draft's) sentence for a console user, who has no terminal:
    what is missing and where the console shows those there are, with the typo's nearest id.
    The CLI's own sentence (the error's message) names its commands, and stays as it is."""
    names = ", ".join(map(repr, exc.experiments))
    near = f" (did you mean {exc.near!r}?)" if exc.near else ""
    if isinstance(exc, UnknownDraft):
        what = "draft" if len(exc.experiments) == 1 else "drafts"
        return f"No {what} {names}{near}: the Experiments list's drafts tab shows those there are."
    what = "experiment" if len(exc.experiments) == 1 else "experiments"
    return f"No {what} {names}{near}: the Experiments list shows those there are."


def api(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """A JSON route: its document, or ``{"error": sentence}`` with the refusal's status."""

    async def route(request: Request) -> Response:
        try:
            return JSONResponse(finite(await fn(request)))
        except (Refused, PricelabError, OSError) as exc:
            r = _refusal(exc)
            return JSONResponse({"error": r.message}, status_code=r.status)

    return route


# ------------------------------------------------------------------ acting
async def act(request: Request, kind: str, exp_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Send ``kind`` for ``exp_id`` through the commands topic as the signed-in user, with
    their reason; the controller's reply. Refusals in order: no session (401), no CSRF token
    or a role that may not (403; a decision that stops the experiment needs both to decide
    and to operate), no reason (a comment: no text) or one over REASON_CHARS (422), an
    unknown experiment (404), a freeze's times, an unfreeze's freeze or a decision's arm that
    are missing or malformed (422, the CLI's sentences)."""
    user = _user(request)
    if user is None:
        raise _no_user(request)
    _check_csrf(request, fields)
    _need(request, auth.NEEDS[kind])
    if (
        kind == "decision"
        and _decided(decision_stops, fields)
        and not auth.may(user.role, "operate")
    ):
        raise Refused(
            403,
            f"{'an' if user.role[0] in 'aeiou' else 'a'} {user.role} may not stop an "
            "experiment: record the decision without stop, and ask an operator to stop it",
        )
    reason = reason_of(kind, fields)
    c = _console(request)
    check_actor(c, user)
    await known(c.store, exp_id)
    command = await _command(c, kind, exp_id, reason, fields)
    reply = await c.send(
        c.settings, kind, timeout=c.settings.console.command_timeout, actor=user.name, **command
    )
    c.metrics.acts.labels(
        kind, "accepted" if reply.get("ok") else "refused by the controller"
    ).inc()
    return {"command": kind, "experiment": exp_id, "actor": user.name, "reply": reply}


async def _command(
    c: Console, kind: str, exp_id: str, reason: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The command's fields, as ``pricelab experiment <kind>`` sends them."""
    if kind == "unfreeze":
        return {"freeze_id": freeze_id_of(str(fields.get("freeze_id") or "")), "reason": reason}
    if kind == "decision":
        return _decided(lambda f: decision_command(exp_id, reason, f), fields)
    if kind != "freeze":
        return {"experiment": exp_id, "reason": reason}
    return await freeze_command(c, reason, fields, [exp_id])


def freeze_id_of(text: str) -> str:
    """An unfreeze's freeze id, stripped; none, or one no freeze can have (the command's
    ``Ident``: the controller would never see it, the command itself is invalid), is 422."""
    freeze_id = text.strip()
    if not freeze_id:
        raise Refused(422, "an unfreeze names its freeze: freeze_id")
    if not is_ident(freeze_id):
        raise Refused(
            422,
            f"{freeze_id[:40]!r} is no freeze's id: an id is 1-128 letters, digits, "
            "'_', '.', ':' or '-' (the Freezes section of the Experiments list shows them)",
        )
    return freeze_id


def reason_of(kind: str, fields: dict[str, Any]) -> str:
    """An act's reason (a comment's text), stripped; none, or one over REASON_CHARS, is 422."""
    reason = str(fields.get("text" if kind == "comment" else "reason") or "").strip()
    if not reason:
        if kind == "comment":
            raise Refused(422, "a comment needs its text")
        article = "an" if kind[0] in "aeiou" else "a"
        raise Refused(
            422, f"{article} {kind} needs a reason: why, for the experiment's audit trail"
        )
    if len(reason) > REASON_CHARS:
        what = "a comment" if kind == "comment" else "a reason"
        raise Refused(422, f"{what} is at most {REASON_CHARS} characters, not {len(reason)}")
    return reason


def check_actor(c: Console, user: auth.User) -> None:
    """Refuse (403) a user that ``PRICELAB_ACTORS`` does not let act, as the controller would."""
    refusal = actor_refusal(user.name, c.settings.actors)
    if refusal is not None:
        raise Refused(403, refusal)


async def freeze_command(
    c: Console, reason: str, fields: dict[str, Any], experiments: list[str] | None
) -> dict[str, Any]:
    """A freeze command's fields, as ``pricelab experiment freeze`` makes them, from the
    request's ``start`` (default now) and ``end``: of ``experiments``, or of every experiment
    (None: ``--all``). Times missing or malformed are 422 with the CLI's sentences."""
    start = str(fields.get("start") or "now").strip()
    end = str(fields.get("end") or "").strip()
    if not end:
        raise Refused(422, "a freeze needs an end: an ISO 8601 date-time, or +DURATION (+2h)")
    relative = any(t == "now" or t[:1] in "+-" for t in (start, end))
    # the controller's clock, read once, and only if a relative time needs it (as the CLI's:
    # ``now`` and ``+2h`` are from the same instant)
    clock = await stack_clock(c.settings, c.store) if relative else None

    @functools.cache
    def now() -> datetime:
        assert clock is not None
        return clock.now()

    try:
        t0, t1 = instant(start, "start", now), instant(end, "end", now)
        return {"freeze": freeze_document(t0, t1, experiments, reason)}
    except (CommandRefused, SpecError) as exc:
        raise Refused(422, str(exc).strip().splitlines()[0]) from None


def _decided(read: Callable[[dict[str, Any]], Any], fields: dict[str, Any]) -> Any:
    """``read(fields)`` (streams.console.decision), a field it refuses as 422."""
    try:
        return read(fields)
    except DecisionRefused as exc:
        raise Refused(422, str(exc)) from None


def _action_route(kind: str) -> Route:
    async def route(request: Request) -> Response:
        try:
            out = await act(request, kind, request.path_params["exp_id"], await _body(request))
        except (Refused, PricelabError, OSError) as exc:
            r = _refusal(exc)
            _console(request).metrics.acts.labels(kind, "refused").inc()
            if request.headers.get("hx-request"):
                return _page("reply.html", request, {"error": r.message}, r.status)
            return JSONResponse({"error": r.message}, status_code=r.status)
        if request.headers.get("hx-request"):  # the page's button: the reply, drawn, and
            # the page's live parts redrawn (its status and history)
            shown = _page("reply.html", request, out, 200 if out["reply"].get("ok") else 409)
            shown.headers["HX-Trigger"] = "look"
            return shown
        return JSONResponse(out, status_code=200 if out["reply"].get("ok") else 409)

    return Route(f"/api/experiments/{{exp_id}}/{kind}", route, methods=["POST"])


# ------------------------------------------------------------------ API
async def _experiments(request: Request) -> Any:
    _need(request, "read")
    c = _console(request)
    q = request.query_params
    # every open list page redraws on each look, all at once: one read serves them
    return await c.lists.get((q.get("status"), q.get("q")))


def _page_no(request: Request) -> int:
    try:
        return int(request.query_params.get("page", "1"))
    except ValueError:
        raise Refused(400, "page is a whole number") from None


async def _experiment(request: Request) -> Any:
    _need(request, "read")
    c = _console(request)
    return await c.pages.get((request.path_params["exp_id"], _page_no(request)))


async def _health_doc(request: Request) -> Any:
    _need(request, "read")
    c = _console(request)
    return await health_view(
        c.settings, c.store, c.feed, c.health, request.path_params["exp_id"], c.trails, c.letters
    )


async def _health_section(request: Request) -> Response:
    """The Health section, drawn (the experiment page fetches it after it loads); a check
    that cannot be read is the section's one sentence, never a broken page."""
    if _user(request) is None:
        r = _no_user(request)
        return _page("error.html", request, {"error": r.message}, r.status)
    exp_id = request.path_params["exp_id"]
    try:
        doc = await _health_doc(request)
    except (Refused, PricelabError, OSError) as exc:
        r = _refusal(exc)
        return _page("health.html", request, {"exp_id": exp_id, "error": r.message}, r.status)
    return _page("health.html", request, {"exp_id": exp_id, "health": doc})


async def _schedule_doc(request: Request) -> Any:
    _need(request, "read")
    return await schedule_view(_console(request).store, request.path_params["exp_id"])


async def _schedule_section(request: Request) -> Response:
    """The Design section's schedule, drawn (the experiment page fetches it after it
    loads, as it does the Health section); one that cannot be made is one sentence."""
    if _user(request) is None:
        r = _no_user(request)
        return _page("error.html", request, {"error": r.message}, r.status)
    try:
        doc = await _schedule_doc(request)
    except (Refused, PricelabError, OSError) as exc:
        r = _refusal(exc)
        return _page("error.html", request, {"error": r.message}, r.status)
    return _page("schedule.html", request, {"schedule": doc})


async def _session(request: Request) -> Any:
    user = _need(request, "read")
    return {"user": user.name, "role": user.role, "csrf": _csrf(request)}


def _upstream_signs_in(request: Request) -> Refused | None:
    header = _console(request).settings.console.trusted_user_header
    if header:
        return Refused(403, f"sign in through the upstream: it names the user in {header}")
    return None


async def _api_login(request: Request) -> Response:
    if (up := _upstream_signs_in(request)) is not None:
        return JSONResponse({"error": up.message}, status_code=up.status)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"error": "sign in with a JSON body"}, status_code=415)
    try:
        doc = await _body(request)
    except Refused as r:
        return JSONResponse({"error": r.message}, status_code=r.status)
    user = _console(request).users.check(str(doc.get("user", "")), str(doc.get("password", "")))
    if user is None:
        return JSONResponse({"error": "unknown user or wrong password"}, status_code=401)
    _sign_in(request, user)
    return JSONResponse({"user": user.name, "role": user.role, "csrf": _csrf(request)})


def _sign_in(request: Request, user: auth.User) -> None:
    request.session.clear()
    request.session["user"] = user.name
    request.session["csrf"] = secrets.token_urlsafe(24)


async def _events(request: Request) -> Response:
    """Server-sent events: ``look`` each time new estimates of the experiment arrive (the
    messages of one look come close together: they are sent as one event), and ``status``
    each time its controller announces a new state (paused, resumed, stopped, frozen ...);
    without an experiment (``/api/events``, the list page), of any experiment."""
    try:
        _need(request, "read")
        c = _console(request)
        exp_id = request.path_params.get("exp_id")
        if exp_id is not None:
            await known(c.store, exp_id)
    except (Refused, PricelabError) as exc:
        r = _refusal(exc)
        return JSONResponse({"error": r.message}, status_code=r.status)

    async def stream() -> AsyncIterator[str]:
        c.metrics.live_streams.inc()
        try:
            async for event in _looks(c.feed, exp_id, c.statuses):
                yield event
        finally:
            c.metrics.live_streams.dec()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _looks(
    feed: EstimatesFeed, exp_id: str | None, statuses: StatusFeed | None = None
) -> AsyncGenerator[str, None]:
    """The event stream of one experiment's looks and status changes, or of every
    experiment's (None); a comment every 15 s keeps it open."""
    async with contextlib.AsyncExitStack() as stack:
        q = await stack.enter_async_context(
            feed.listen(exp_id) if exp_id is not None else feed.listen_any()
        )
        if statuses is not None:
            await stack.enter_async_context(statuses.listen(q, exp_id))
            # the reader stands at the topic's end: no change after this is missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(statuses.ready.wait(), 10)
        yield ": live\n\n"
        while True:
            try:
                doc = await asyncio.wait_for(q.get(), 15)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if STATUS_KEY in doc:
                yield f"event: status\ndata: {json.dumps(doc[STATUS_KEY])}\n\n"
                continue
            await asyncio.sleep(0.2)  # the rest of the look's messages
            n, changes = 1, []
            while not q.empty():
                more = q.get_nowait()
                if STATUS_KEY in more:
                    changes.append(more[STATUS_KEY])
                    continue
                doc = more
                n += 1
            data = json.dumps(
                {"experiment": doc.get("experiment"), "as_of": doc.get("as_of"), "messages": n}
            )
            yield f"event: look\ndata: {data}\n\n"
            for change in changes:
                yield f"event: status\ndata: {json.dumps(change)}\n\n"


async def _metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(
        generate_latest(_console(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    """Ready when Redis answers (the state every page reads)."""
    try:
        await asyncio.wait_for(_console(request).store.redis.ping(), 2)
    except (TimeoutError, OSError, PricelabError, Exception) as exc:  # noqa: BLE001 - any failure: not ready
        return JSONResponse({"ready": False, "error": str(exc) or type(exc).__name__}, 503)
    return JSONResponse({"ready": True})


# ------------------------------------------------------------------ pages
def _page(name: str, request: Request, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    user = _user(request)
    base = {
        "user": user,
        "csrf": _csrf(request),
        "may_operate": user is not None and auth.may(user.role, "operate"),
        "may_decide": user is not None and auth.may(user.role, "decide"),
        "may_comment": user is not None and auth.may(user.role, "comment"),
        "tabs": TABS,
        "actions": LIFECYCLE,
    }
    return HTMLResponse(_ENV.get_template(name).render(base | ctx), status_code=status)


def page(
    name: str, fn: Callable[[Request], Awaitable[Any]]
) -> Callable[[Request], Awaitable[Response]]:
    """An HTML route over a JSON route's document; no session: to the sign-in."""

    async def route(request: Request) -> Response:
        if _user(request) is None:
            if _console(request).settings.console.trusted_user_header:
                r = _no_user(request)  # the upstream signs in, not the console
                return _page("error.html", request, {"error": r.message}, r.status)
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        try:
            doc = await fn(request)
        except (Refused, PricelabError, OSError) as exc:
            r = _refusal(exc)
            return _page("error.html", request, {"error": r.message}, r.status)
        return _page(name, request, {"doc": doc})

    return route


async def _login_page(request: Request) -> Response:
    return _page("login.html", request, {"next": request.query_params.get("next", "/")})


async def _login_form(request: Request) -> Response:
    if (up := _upstream_signs_in(request)) is not None:
        return _page("error.html", request, {"error": up.message}, up.status)
    form = dict(await request.form())
    try:
        _check_csrf(request, form)
    except Refused as r:
        return _page("login.html", request, {"error": r.message, "next": "/"}, r.status)
    # argon2's verify takes tens of milliseconds of CPU by design (more on a busy machine):
    # off the event loop, so that the open live pages and other requests do not wait on it
    user = await asyncio.to_thread(
        _console(request).users.check, str(form.get("user", "")), str(form.get("password", ""))
    )
    nxt = str(form.get("next") or "/")
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"  # never off the console
    if user is None:
        return _page(
            "login.html", request, {"error": "unknown user or wrong password", "next": nxt}, 401
        )
    _sign_in(request, user)
    return RedirectResponse(nxt, status_code=303)


async def _logout(request: Request) -> Response:
    try:
        _check_csrf(request, dict(await request.form()))
    except Refused as r:
        return JSONResponse({"error": r.message}, status_code=r.status)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def _home(request: Request) -> Response:
    return RedirectResponse("/experiments", status_code=303)


def build_app(
    console: Console, lifespan_close: bool = True, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The console's application over ``console``'s store, feed and users; ``extra_routes``
    (pages in modules of their own, over this module's rules: streams.console.server) come
    first, so that ``/experiments/new`` is not taken for an experiment's id."""
    cs = console.settings.console
    secret = (
        cs.session_secret.get_secret_value()
        if cs.session_secret is not None
        else secrets.token_urlsafe(32)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # a heatmap being made is the console's own: stopped whatever else is closed
            await console.heatmaps.close()
            if lifespan_close:
                await console.feed.close()
                if console.statuses is not None:
                    await console.statuses.close()
                if console.trails is not None:
                    await console.trails.close()
                if console.letters is not None:
                    await console.letters.close()
                await console.store.redis.aclose()

    routes = [
        *extra_routes,
        Route("/health", _health),
        Route("/ready", _ready),
        Route("/metrics", _metrics),
        Route("/login", _login_page, methods=["GET"]),
        Route("/login", _login_form, methods=["POST"]),
        Route("/logout", _logout, methods=["POST"]),
        Route("/api/login", _api_login, methods=["POST"]),
        Route("/api/session", api(_session)),
        Route("/api/experiments", api(_experiments)),
        Route("/api/experiments/{exp_id}", api(_experiment)),
        Route("/api/experiments/{exp_id}/events", _events),
        Route("/api/experiments/{exp_id}/health", api(_health_doc)),
        Route("/api/experiments/{exp_id}/schedule", api(_schedule_doc)),
        Route("/api/events", _events),
        *(_action_route(k) for k in ACTIONS),
        *charts.routes(api, _need, _console, lambda sentence: Refused(404, sentence)),
        Route("/", _home),
        Route("/experiments", page("experiments.html", _experiments)),
        Route("/experiments/{exp_id}", page("experiment.html", _experiment)),
        Route("/experiments/{exp_id}/results", page("live.html", _experiment)),
        Route("/experiments/{exp_id}/health", _health_section),
        Route("/experiments/{exp_id}/schedule", _schedule_section),
        Mount("/static", StaticFiles(directory=str(files("streams.console") / "static"))),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MeasureRequests, metrics=console.metrics),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=int(cs.session_max_age.total_seconds()),
                same_site="strict",
                https_only=cs.secure_cookies,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.console = console
    #: the session cookies' key, for a refusal's log line (_cookie_refusal): never logged
    app.state.session_secret = secret
    return app


def make_console(settings: Settings, users: auth.Users) -> Console:
    """A console over a fresh Redis client and estimates feed (inside the event loop)."""
    return Console(
        settings,
        users,
        Store(make_redis(settings), settings.key_prefix),
        EstimatesFeed(settings),
        statuses=StatusFeed(settings),
        trails=TrailFollower(settings, timeout=settings.console.command_timeout),
        health=HealthReads(ttl=FOLLOWED_LETTERS_TTL),
        letters=LetterFollower(settings, timeout=settings.console.command_timeout),
    )
