"""/ : who is signed in, for people who land on the IdP directly."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp import deps
from idp.protocol.authorization import session_of
from idp.services import Services
from idp.store import users
from idp.web.templating import Templates

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    return await run_in_threadpool(_home, request, deps.services(request), deps.templates(request))


def _home(request: Request, services: Services, templates: Templates) -> Response:
    with services.sessions.begin() as db:
        session = session_of(db, request, services)
        user = users.get(db, session.user_id) if session else None
        return templates.render(request, "home/index.html", {"user": user})
