"""The experiments list's Freezes section: ``pricelab experiment freezes``, ``freeze --all`` and
``unfreeze`` in the browser.

- ``GET /api/freezes`` (any role): every operator freeze, ordered by start, each ahead, in
  force, over or cancelled by the controller's clock (``streams.client.commands.read_freezes``,
  the CLI's own view).
- ``POST /api/freezes`` (operator, admin; CSRF): a freeze of every experiment, the catalogue
  at once, from ``start`` (default now) to ``end`` with a reason: one freeze command whose
  experiments are ``all``, as ``pricelab experiment freeze --all`` sends it. It also covers
  the experiments created while it is in force.
- ``POST /api/freezes/{freeze_id}/unfreeze`` (operator, admin; CSRF): cancel that freeze,
  whatever it covers, with a reason (``pricelab experiment unfreeze``).
- ``GET /freezes``: the section's list, drawn from the API's document.

Both acts go through the commands topic as the signed-in user, refused as an experiment's
acts are (streams.console.app.act): 401 without a session, 403 without a CSRF token or the
permission, 422 without a reason, with a bad time or with a freeze id no freeze can have
(the command would be invalid).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.errors import PricelabError
from streams.client.commands import read_freezes
from streams.console import auth
from streams.console.app import (
    Refused,
    _body,
    _check_csrf,
    _console,
    _need,
    _no_user,
    _page,
    _refusal,
    _user,
    api,
    check_actor,
    freeze_command,
    freeze_id_of,
    reason_of,
)

#: a freeze the section lists (and may cancel): one that has not ended
ACTIVE = ("ahead", "in force")


async def freezes_doc(request: Request) -> dict[str, Any]:
    """Every freeze (the CLI's view; it opens its own client: off this event loop), and
    those ahead or in force as ``active``."""
    _need(request, "read")
    c = _console(request)
    freezes = await asyncio.to_thread(read_freezes, c.settings, None)
    return {"freezes": freezes, "active": [f for f in freezes if f["now"] in ACTIVE]}


async def _act(request: Request, kind: str) -> dict[str, Any]:
    """Send ``kind`` (a freeze of every experiment, or an unfreeze of the path's freeze) as
    the signed-in user; the controller's reply."""
    user = _user(request)
    if user is None:
        raise _no_user(request)
    fields = await _body(request)
    _check_csrf(request, fields)
    _need(request, auth.NEEDS[kind])
    reason = reason_of(kind, fields)
    c = _console(request)
    check_actor(c, user)
    if kind == "freeze":
        command = await freeze_command(c, reason, fields, None)
        target = "every experiment"
    else:
        target = freeze_id_of(request.path_params["freeze_id"])
        command = {"freeze_id": target, "reason": reason}
    reply = await c.send(
        c.settings, kind, timeout=c.settings.console.command_timeout, actor=user.name, **command
    )
    c.metrics.acts.labels(
        kind, "accepted" if reply.get("ok") else "refused by the controller"
    ).inc()
    return {"command": kind, "target": target, "actor": user.name, "reply": reply}


def _act_route(kind: str) -> Any:
    """A POST answered with JSON (200 accepted, 409 refused by the controller, a refusal's
    status), or, from the page (htmx), with the reply drawn; then the section and the list
    redraw."""

    async def route(request: Request) -> Response:
        try:
            out = await _act(request, kind)
        except (Refused, PricelabError, OSError) as exc:
            r = _refusal(exc)
            _console(request).metrics.acts.labels(kind, "refused").inc()
            if request.headers.get("hx-request"):
                return _page("freeze_reply.html", request, {"error": r.message}, r.status)
            return JSONResponse({"error": r.message}, status_code=r.status)
        status = 200 if out["reply"].get("ok") else 409
        if request.headers.get("hx-request"):
            shown = _page("freeze_reply.html", request, out, status)
            shown.headers["HX-Trigger"] = "freezes, look"
            return shown
        return JSONResponse(out, status_code=status)

    return route


async def _section(request: Request) -> Response:
    """The section's list (``GET /freezes``), or the sentence of why it could not be read."""
    if _user(request) is None:
        r = _no_user(request)
        return _page("freezes_list.html", request, {"error": r.message}, r.status)
    try:
        doc = await freezes_doc(request)
    except (Refused, PricelabError, OSError) as exc:
        r = _refusal(exc)
        return _page("freezes_list.html", request, {"error": r.message}, r.status)
    return _page("freezes_list.html", request, {"freezes": doc})


def routes() -> list[Route]:
    """The section's API routes and its list."""
    return [
        Route("/api/freezes", api(freezes_doc), methods=["GET"]),
        Route("/api/freezes", _act_route("freeze"), methods=["POST"]),
        Route("/api/freezes/{freeze_id}/unfreeze", _act_route("unfreeze"), methods=["POST"]),
        Route("/freezes", _section),
    ]
