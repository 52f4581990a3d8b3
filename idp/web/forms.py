"""The check every form POST of a page makes before it acts."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from idp.audit.events import AuditEvent, record
from idp.errors import N_
from idp.protocol.authorization import Browser
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.security import csrf
from idp.web.templating import Templates

FORM_EXPIRED = N_("This form expired")


def refused(
    request: Request,
    form: Params,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    db: Session,
    next_step: str,
) -> Response | None:
    """None when the form carries this browser's CSRF token; otherwise the 403 page saying
    what to do (`next_step`, a message id). Answered, not raised: the audit event commits with
    the request's transaction."""
    if csrf.verify(request, runtime.settings, runtime.csrf_key, form.get("csrf_token")):
        return None
    record(db, AuditEvent.CSRF_REJECTED, ip=browser.ip, path=request.scope["path"])
    return pages.error(request, FORM_EXPIRED, next_step, 403)
