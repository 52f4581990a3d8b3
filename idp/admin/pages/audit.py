"""/admin/audit: search the trail by actor, subject (a user or client id), event type and
time range (UTC dates), newest first, a page at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import audit
from idp.admin.listing import InvalidCursor
from idp.admin.pages import access

router = APIRouter()
FILTERS = ("actor", "subject", "event", "since", "until")


def _day(text: str, *, end: bool = False) -> int | None:
    """A YYYY-MM-DD date as Unix time (its start; with `end`, the start of the next day)."""
    if not text:
        return None
    day = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@router.get("/admin/audit", include_in_schema=False)
def audit_search(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    asked = {name: request.query_params.get(name, "").strip()[:200] for name in FILTERS}
    try:
        since, until = _day(asked["since"]), _day(asked["until"], end=True)
        with deps.read_transaction(runtime) as db:
            found = audit.search_events(
                db,
                actor=asked["actor"] or None,
                subject=asked["subject"] or None,
                event=asked["event"] or None,
                since=since,
                until=until,
                cursor=request.query_params.get("cursor"),
            )
    except (ValueError, InvalidCursor) as exc:  # UnknownEvent and a bad date are ValueErrors
        return pages.error(request, "Invalid search", str(exc), 400)
    context = {
        "asked": asked,
        "events": found.items,
        "next_cursor": found.next_cursor,
        "event_names": sorted(audit.EVENT_NAMES),
    }
    return access.render(request, runtime, pages, browser, "admin/audit.html", context)
