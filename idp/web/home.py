"""/ : who is signed in, for people who land on the IdP directly."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.security import cookies
from idp.store import sessions, users

router = APIRouter()


@router.get("/", include_in_schema=False)
def home(request: Request, runtime: deps.Rt, pages: deps.Pages, db: deps.ReadDb) -> Response:
    settings = runtime.settings
    session = sessions.current(
        db,
        cookies.read(request, settings, cookies.SESSION),
        settings.session_idle_timeout_seconds,
        touch=False,  # a read-only look: the page does not keep the session alive
    )
    user = users.get(db, session.user_id) if session else None
    return pages.render(request, "home/index.html", {"user": user})
