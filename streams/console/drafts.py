"""The console's drafts: specs saved but not launched (controller.drafts), read from the client's
view (streams.client.drafts) and saved or discarded through the commands topic, as
``pricelab experiment draft`` and ``discard`` do.

- ``GET /api/drafts`` and ``GET /api/drafts/{id}`` (any signed-in role): the live drafts, and
  one with its spec (404 with one sentence for none).
- ``POST /api/drafts`` (analyst, operator, admin; CSRF): the spec, checked as a launch checks
  it (422, the CLI's sentence), sent as the draft command of the signed-in user; the
  controller's reply, 200, or 409 with its sentence (an experiment's id).
- ``POST /api/drafts/{id}/discard`` (the draft's author, an operator or an admin; CSRF; a
  ``reason``): the discard command; 200, or 409 with the controller's sentence.

The list's ``drafts`` tab links each draft to the "New experiment" page with its spec
(``/experiments/new?draft=ID``), where it is checked, saved again, launched (the create
command, which deletes the draft) or discarded.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from streams.client.drafts import read_draft, read_drafts
from streams.console import auth
from streams.console.app import (
    Refused,
    _body,
    _check_csrf,
    _console,
    _need,
    _no_user,
    _user,
    api,
    check_actor,
    reason_of,
)
from streams.console.new_experiment import _route, signed_spec


async def _list(request: Request) -> Any:
    _need(request, "read")
    return {"drafts": await read_drafts(_console(request).store)}


async def _one(request: Request) -> Any:
    _need(request, "read")
    return await read_draft(_console(request).store, request.path_params["draft_id"])


async def _save(request: Request) -> tuple[dict[str, Any], int]:
    """The draft command of the checked spec, as the signed-in user (refusals:
    :func:`streams.console.new_experiment.signed_spec`; a viewer may not save one)."""
    user, spec, _ = await signed_spec(request, "draft")
    c = _console(request)
    reply = await c.send(
        c.settings,
        "draft",
        timeout=c.settings.console.command_timeout,
        actor=user.name,
        spec=spec.model_dump(mode="json"),
    )
    ok = bool(reply.get("ok"))
    c.metrics.acts.labels("draft", "accepted" if ok else "refused by the controller").inc()
    return {"command": "draft", "draft": spec.id, "actor": user.name, "reply": reply}, (
        200 if ok else 409
    )


async def _discard(request: Request) -> tuple[dict[str, Any], int]:
    """The discard command of a draft, as the signed-in user. Refusals in order: no session
    (401), no CSRF token or a viewer (403), no such draft (404), someone else's draft and no
    permission to operate (403), no reason or one too long (422)."""
    user = _user(request)
    if user is None:
        raise _no_user(request)
    fields = await _body(request)
    _check_csrf(request, fields)
    _need(request, auth.NEEDS["draft"])
    c = _console(request)
    draft_id = request.path_params["draft_id"]
    held = await read_draft(c.store, draft_id)
    if held["author"] != user.name and not auth.may(user.role, "operate"):
        article = "an" if user.role[0] in "aeiou" else "a"
        raise Refused(
            403,
            f"{article} {user.role} may discard only their own drafts: ask its author "
            f"({held['author']}), an operator or an admin",
        )
    reason = reason_of("discard", fields)
    check_actor(c, user)
    reply = await c.send(
        c.settings,
        "discard",
        timeout=c.settings.console.command_timeout,
        actor=user.name,
        experiment=draft_id,
        reason=reason,
    )
    ok = bool(reply.get("ok"))
    c.metrics.acts.labels("discard", "accepted" if ok else "refused by the controller").inc()
    return {"command": "discard", "draft": draft_id, "actor": user.name, "reply": reply}, (
        200 if ok else 409
    )


def routes() -> list[Route]:
    return [
        Route("/api/drafts", api(_list), methods=["GET"]),
        Route("/api/drafts", _route("drafted.html", _save, "draft"), methods=["POST"]),
        Route("/api/drafts/{draft_id}", api(_one), methods=["GET"]),
        Route(
            "/api/drafts/{draft_id}/discard",
            _route("drafted.html", _discard, "discard"),
            methods=["POST"],
        ),
    ]
