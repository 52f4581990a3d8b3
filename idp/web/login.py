"""/login: email and password, then back to the authorization request that sent the user here."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import sessions as authn_sessions
from idp.protocol.authorization import origin_of
from idp.protocol.requests import BadParameters, client_ip, read_form
from idp.runtime import Runtime
from idp.security import cookies, csrf
from idp.store import clients, users
from idp.web.templating import Templates

router = APIRouter()

BAD_CREDENTIALS = "Incorrect email or password."
AMR_PASSWORD = ["pwd"]
ACR_SINGLE_FACTOR = "aal1"


def safe_return_to(value: str | None) -> str:
    """Only this server's authorization endpoint or home page: never an open redirect."""
    if value and value.startswith("/authorize?") and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and parts.path == "/authorize":
            return value
    return "/"


def _relying_party(runtime: Runtime, return_to: str) -> tuple[str | None, list[str]]:
    """The client's name and its redirect origin, when return_to names a valid pair."""
    if return_to == "/":
        return None, []
    params = dict(parse_qsl(urlsplit(return_to).query))
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    if not client_id or not redirect_uri or len(client_id) > 64:
        return None, []
    with runtime.sessions() as db:
        client = clients.get(db, client_id)
        if client is None or redirect_uri not in client.redirect_uris:
            return None, []
        return client.name, [origin_of(redirect_uri)]


def _page(
    request: Request,
    runtime: Runtime,
    templates: Templates,
    return_to: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    client_name, origins = _relying_party(runtime, return_to)
    return templates.render(
        request,
        "login/password.html",
        {"return_to": return_to, "email": email, "error": error, "client_name": client_name},
        status=status,
        form_action_origins=origins,
    )


@router.get("/login", include_in_schema=False)
async def login_form(request: Request) -> Response:
    runtime, templates = deps.get_runtime(request), deps.get_templates(request)
    return_to = safe_return_to(request.query_params.get("return_to"))
    hint = (request.query_params.get("login_hint") or "")[:320]
    return await run_in_threadpool(_page, request, runtime, templates, return_to, hint)


@router.post("/login", include_in_schema=False)
async def login_submit(request: Request) -> Response:
    runtime, templates = deps.get_runtime(request), deps.get_templates(request)
    settings = runtime.settings
    try:
        # return_to carries a whole authorization request, whose parameters were each checked.
        form = await read_form(request, settings.max_body_bytes, settings.max_param_bytes * 8)
    except BadParameters as exc:
        return templates.error(request, "Invalid request", str(exc))
    return_to = safe_return_to(form.get("return_to"))
    email = (form.get("email") or "").strip()[:320]
    if not csrf.verify(request, settings, form.get("csrf_token")):
        with runtime.sessions.begin() as db:
            record(db, AuditEvent.CSRF_REJECTED, ip=client_ip(request), path="/login")
        return _page(
            request,
            runtime,
            templates,
            return_to,
            email,
            "This form expired. Please try again.",
            status=403,
        )
    return await run_in_threadpool(
        _authenticate, request, runtime, templates, return_to, email, form.get("password") or ""
    )


def _authenticate(
    request: Request,
    runtime: Runtime,
    templates: Templates,
    return_to: str,
    email: str,
    password: str,
) -> Response:
    settings = runtime.settings
    ip = client_ip(request)
    # The password check runs outside any transaction: argon2 takes ~100 ms, and a SQLite
    # write lock held that long would stall every other writer.
    with runtime.sessions() as db:
        user = users.by_email(db, email) if email else None
        password_hash = user.password_hash if user else None
    ok = runtime.passwords.verify(password_hash, password) and user is not None
    if not ok or user is None or user.disabled:
        with runtime.sessions.begin() as db:
            record(
                db,
                AuditEvent.LOGIN_FAILED,
                ip=ip,
                user_id=user.id if user else None,
                reason="disabled" if ok else "bad_credentials",
            )
        return _page(request, runtime, templates, return_to, email, BAD_CREDENTIALS, status=400)

    new_hash = (
        runtime.passwords.hash(password)
        if runtime.passwords.needs_rehash(user.password_hash)
        else None
    )
    with runtime.sessions.begin() as db:
        if new_hash:
            fresh = users.get(db, user.id)
            if fresh is not None:
                users.set_password_hash(db, fresh, new_hash)
        # A new id at every login (no session fixation); a session this one replaces ends, and
        # its relying parties are told (Back-Channel Logout §2.5).
        cookie, _ = authn_sessions.start(
            db,
            user.id,
            AMR_PASSWORD,
            ACR_SINGLE_FACTOR,
            settings,
            replacing=cookies.read(request, settings, cookies.SESSION),
            ip=ip,
        )
        record(db, AuditEvent.LOGIN_SUCCEEDED, ip=ip, user_id=user.id)
    response = RedirectResponse(return_to, status_code=303)
    cookies.set_cookie(response, settings, cookies.SESSION, cookie)
    return response
