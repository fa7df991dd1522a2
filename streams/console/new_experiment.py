"""The console's "New experiment" page: a spec pasted or uploaded, checked as
``pricelab experiment create`` checks it, shown as the plan summary and schedule preview that
``pricelab experiment create --dry-run`` prints, and launched through the commands topic.

- ``POST /api/specs/check`` (any signed-in role; it changes nothing): the spec's plan and
  schedule, or 422 with the CLI's sentence (``streams.client.launch.launchable``, the path
  the CLI's create takes).
- ``POST /api/experiments`` (operator, admin; CSRF): the same check, then the create command
  as the signed-in user, and the controller's reply: 201 when it created it, 409 with its
  sentence when it refused (an id that exists with another spec, a start before now).

``/experiments/new?draft=ID`` opens a draft (controller.drafts) with its spec in the text box,
and says whether the user may discard it; saving and discarding are
:mod:`streams.console.drafts`'s.

A spec comes as JSON ``{"spec": TEXT, "name": "my-spec.yaml", "backfill": false}``, or as a
form: the ``file`` uploaded, else the ``spec`` field pasted. ``name`` (the uploaded file's
own) names the spec in the sentences, and a name ending in ``.json`` reads it as JSON, as
the CLI reads a file; a pasted spec is :data:`PASTED`, read as YAML (which reads JSON too).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.errors import SpecError
from controller.spec import ExperimentSpec
from core.errors import PricelabError
from streams.client.drafts import read_draft
from streams.client.launch import launchable, plan_summary, schedule_preview
from streams.console import auth
from streams.console.app import (
    Refused,
    _check_csrf,
    _console,
    _need,
    _no_user,
    _page,
    _refusal,
    _user,
    check_actor,
    page,
)

#: what a pasted spec is called in the sentences
PASTED = "the pasted spec"

#: the most bytes a spec may have (a million products' ids fit)
MAX_SPEC_BYTES = 64 * 1024 * 1024


async def _spec_input(request: Request) -> tuple[str | bytes, str, dict[str, Any]]:
    """The spec's text, its name, and the request's other fields."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = await request.json()
        except ValueError:
            raise Refused(400, "the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise Refused(400, "the request body is not a JSON object")
        text, name = doc.get("spec"), doc.get("name") or PASTED
        if not isinstance(text, str) or not isinstance(name, str):
            raise Refused(422, "give the spec's text as spec (and its file name as name)")
        fields = doc
    else:
        form = await request.form(max_part_size=MAX_SPEC_BYTES)
        fields = dict(form)
        upload = form.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            text, name = await upload.read(), upload.filename
        else:
            pasted = form.get("spec")
            text, name = (pasted if isinstance(pasted, str) else ""), PASTED
    if not (text.strip() if isinstance(text, str) else text):
        raise Refused(422, "paste a spec or choose its file: there is nothing to check")
    return text, name, fields


async def _checked(request: Request) -> tuple[ExperimentSpec, dict[str, Any]]:
    text, name, fields = await _spec_input(request)
    try:
        return launchable(text, name), fields
    except SpecError as exc:
        raise Refused(422, str(exc).strip().splitlines()[0]) from None


async def preview(spec: ExperimentSpec) -> dict[str, Any]:
    """The plan summary and schedule preview of ``spec`` (off the event loop: a big spec's
    draws take a while), and the warning the CLI prints beside them for an adaptive floor
    that leaves an arm few held draws (``ExperimentSpec.held_warning``; None: no warning)."""
    plan, schedule, warning = await asyncio.to_thread(
        lambda: (plan_summary(spec), schedule_preview(spec), spec.held_warning())
    )
    return {"experiment": spec.id, "plan": plan, "schedule": schedule, "warning": warning}


async def _check(request: Request) -> tuple[dict[str, Any], int]:
    _need(request, "read")
    spec, _ = await _checked(request)
    return await preview(spec), 200


async def signed_spec(
    request: Request, act: str
) -> tuple[auth.User, ExperimentSpec, dict[str, Any]]:
    """The signed-in user, the request's spec checked as the CLI checks a launch, and the
    form's fields, for a command of kind ``act`` (create, draft). Refusals in order: no
    session (401), no CSRF token or a role that may not ``act`` (403), a spec the CLI refuses
    (422, its sentence), an actor PRICELAB_ACTORS does not name (403)."""
    user = _user(request)
    if user is None:
        raise _no_user(request)
    text, name, fields = await _spec_input(request)
    _check_csrf(request, fields)
    _need(request, auth.NEEDS[act])
    try:
        spec = launchable(text, name)
    except SpecError as exc:
        raise Refused(422, str(exc).strip().splitlines()[0]) from None
    check_actor(_console(request), user)
    return user, spec, fields


async def _launch(request: Request) -> tuple[dict[str, Any], int]:
    """The create command of the checked spec, sent as the signed-in user (refusals:
    :func:`signed_spec`)."""
    user, spec, fields = await signed_spec(request, "create")
    c = _console(request)
    backfill = str(fields.get("backfill", "")).lower() in ("true", "on", "1")
    reply = await c.send(
        c.settings,
        "create",
        timeout=c.settings.console.command_timeout,
        actor=user.name,
        spec=spec.model_dump(mode="json"),
        backfill=backfill,
    )
    ok = bool(reply.get("ok"))
    c.metrics.acts.labels("create", "accepted" if ok else "refused by the controller").inc()
    if ok:  # its heatmap made now, not when its page is first opened
        c.heatmaps.warm(c.store, spec.id)
    out = {"command": "create", "experiment": spec.id, "actor": user.name, "reply": reply}
    return out, 201 if ok else 409


def _route(template: str, fn: Any, kind: str | None = None) -> Any:
    """A POST answered with JSON, or, from the page (htmx), with ``template`` drawn."""

    async def route(request: Request) -> Response:
        try:
            doc, status = await fn(request)
        except (Refused, PricelabError, OSError) as exc:
            r = _refusal(exc)
            if kind is not None:
                _console(request).metrics.acts.labels(kind, "refused").inc()
            if request.headers.get("hx-request"):
                return _page(template, request, {"error": r.message}, r.status)
            return JSONResponse({"error": r.message}, status_code=r.status)
        if request.headers.get("hx-request"):
            return _page(template, request, doc, status)
        return JSONResponse(doc, status_code=status)

    return route


async def _new_page(request: Request) -> dict[str, Any]:
    """The page; ``?draft=ID`` opens a draft's spec in it (streams.console.drafts)."""
    _need(request, "read")
    return {"pasted": PASTED} | await opened(request)


async def opened(request: Request) -> dict[str, Any]:
    """What the "New experiment" page adds for ``?draft=ID``: the draft, its spec as the
    text to edit, and whether the user may discard it; and whether they may save drafts."""
    user = _user(request)
    out: dict[str, Any] = {"may_draft": user is not None and auth.may(user.role, "draft")}
    draft_id = request.query_params.get("draft")
    if not draft_id or user is None:
        return out
    held = await read_draft(_console(request).store, draft_id)
    may_discard = auth.may(user.role, "draft") and (
        held["author"] == user.name or auth.may(user.role, "operate")
    )
    spec = held.pop("spec")
    return out | {
        "draft": held,
        "spec_text": json.dumps(spec, indent=2),
        "may_discard": may_discard,
    }


def routes() -> list[Route]:
    """The page and its two API routes; ``/experiments/new`` comes before
    ``/experiments/{exp_id}`` in the route table."""
    return [
        Route("/api/specs/check", _route("preview.html", _check), methods=["POST"]),
        Route("/api/experiments", _route("launched.html", _launch, "create"), methods=["POST"]),
        Route("/experiments/new", page("new.html", _new_page)),
    ]
