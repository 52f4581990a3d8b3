"""One error type per wire code, and the one place that renders them.

Raise the type named after the code the client must see, where the problem is found:
- back-channel endpoints answer an RFC 6749 §5.2 JSON body (`oauth_json`), with a 401 and a
  `WWW-Authenticate` challenge for `invalid_client`;
- protected resources answer an RFC 6750 §3 Bearer challenge (`bearer_challenge`);
- a person at the OP sees an error page (`PageError`), never a redirect to an unvalidated URI;
- an authorization error for a validated redirect_uri goes back to it (`redirect_error`).
The description is safe to send; internal detail only reaches the log. An unexpected exception
becomes `server_error` without detail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError as AccessDenied,
    InvalidRequestError as InvalidRequest,
    OAuth2Error,
)
from authlib.oidc.core.errors import (
    ConsentRequiredError as ConsentRequired,
    LoginRequiredError as LoginRequired,
)
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

__all__ = [
    "NO_STORE",
    "N_",
    "AccessDenied",
    "ConsentRequired",
    "InsufficientScope",
    "InteractionRequired",
    "InvalidRequest",
    "InvalidToken",
    "LoginRequired",
    "OAuth2Error",
    "PageError",
    "RequestNotSupported",
    "RequestUriNotSupported",
    "ServerError",
    "TemporarilyUnavailable",
    "UnmetAuthenticationRequirements",
    "UnsupportedResponseType",
    "bearer_challenge",
    "install",
    "oauth_json",
    "redirect_error",
]

log = logging.getLogger("idp.errors")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# One description for every client authentication failure, so the answer does not tell an
# attacker which client ids exist.
CLIENT_AUTH_FAILED = "Client authentication failed."


class ServerError(OAuth2Error):  # type: ignore[misc]
    """RFC 6749 §4.1.2.1 and §5.2's closest: the server could not answer."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailable(OAuth2Error):  # type: ignore[misc]
    """RFC 6749 §4.1.2.1's code, with RFC 6585 §4's 429 and a Retry-After: too many failed
    attempts from this client and address."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed attempts; retry later.")
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        return oauth_json(self, headers={"Retry-After": str(self.retry_after)})


class InvalidTarget(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: a `resource` that is not an absolute URI, or not one this client may get
    tokens for."""

    error = "invalid_target"


class RequestNotSupported(OAuth2Error):  # type: ignore[misc]
    """OIDC Core §3.1.2.6."""

    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):  # type: ignore[misc]
    """OIDC Core §3.1.2.6."""

    error = "request_uri_not_supported"


class InteractionRequired(OAuth2Error):  # type: ignore[misc]
    """OIDC Core §3.1.2.6: prompt=none, and the sign-in needs the person (a second factor)."""

    error = "interaction_required"


class UnmetAuthenticationRequirements(OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Unmet Authentication Requirements 1.0 §2: the acr asked for cannot be
    reached for this user (no such factor). Never a silent downgrade."""

    error = "unmet_authentication_requirements"


class UnsupportedResponseType(OAuth2Error):  # type: ignore[misc]
    """RFC 6749 §4.1.2.1. Ours, not authlib's: authlib's puts the request's response_type,
    unchecked, in its description."""

    error = "unsupported_response_type"


class InvalidToken(OAuth2Error):  # type: ignore[misc]
    """RFC 6750 §3.1: the access token is expired, revoked, malformed or not ours."""

    error = "invalid_token"
    status_code = 401


class InsufficientScope(OAuth2Error):  # type: ignore[misc]
    """RFC 6750 §3.1: the token lacks a scope the resource needs."""

    error = "insufficient_scope"
    status_code = 403


def N_(message: str) -> str:
    """Mark a message id for extraction (`make translations`); a page translates it when it
    renders, so code below the pages stays free of languages."""
    return message


class PageError(Exception):
    """An answer for a person at the OP: an error page, never a redirect.

    `title` and `message` are message ids, translated when the page renders; `message` may hold
    `%(name)s` placeholders filled from `values`. `detail` is technical text for the
    application's developer, shown as is. `client_uri` is the application's home page, when
    the request named a known application: the page links back to it."""

    def __init__(
        self,
        title: str,
        message: str,
        status: int = 400,
        *,
        values: dict[str, str] | None = None,
        detail: str | None = None,
        client_uri: str | None = None,
    ) -> None:
        text = message % values if values else message
        super().__init__(f"{title}: {text}" + (f" ({detail})" if detail else ""))
        self.title, self.message, self.status = title, message, status
        self.values, self.detail, self.client_uri = values or {}, detail, client_uri


def oauth_json(error: OAuth2Error, headers: dict[str, str] | None = None) -> JSONResponse:
    """RFC 6749 §5.2: {"error", "error_description"}; invalid_client is a 401 with a challenge."""
    body = {"error": error.error}
    description = error.description
    status = error.status_code or 400
    extra = dict(NO_STORE)
    if error.error == "invalid_client":
        description, status = CLIENT_AUTH_FAILED, 401
        extra["WWW-Authenticate"] = 'Basic realm="idp", error="invalid_client"'
    if description:
        body["error_description"] = description
    return JSONResponse(body, status_code=status, headers={**extra, **(headers or {})})


def bearer_challenge(error: OAuth2Error) -> JSONResponse:
    """RFC 6750 §3: the error in a WWW-Authenticate Bearer challenge, and in the body."""
    status = error.status_code or 400
    if error.error == "invalid_request" and status == 401:
        challenge = 'Bearer realm="idp"'  # §3.1: no error code when no token was sent
    else:
        challenge = (
            f'Bearer realm="idp", error="{error.error}", error_description="{error.description}"'
        )
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=status,
        headers={"WWW-Authenticate": challenge, **NO_STORE},
    )


def redirect_error(
    redirect_uri: str, error: OAuth2Error, state: str | None, issuer: str, status: int
) -> RedirectResponse:
    """RFC 6749 §4.1.2.1 with RFC 9207 §2's `iss`, to a redirect_uri already validated."""
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if state is not None:
        params.append(("state", state))
    params.append(("iss", issuer))
    return RedirectResponse(add_params_to_uri(redirect_uri, params), status_code=status)


PageRenderer = Callable[[Request, PageError], Response]


def install(
    app: FastAPI,
    render_page: PageRenderer,
    json_paths: Iterable[str],
    baseline_headers: dict[str, str],
) -> None:
    """The handlers: PageError as a page; an OAuth2Error that escaped an endpoint as JSON; any
    other exception as server_error (JSON on back-channel paths, a page for browsers).

    Starlette answers an unexpected exception outside the middleware stack, so that answer gets
    the security headers here."""
    back_channel = frozenset(json_paths)

    def path_of(request: Request) -> str:
        # The scope's path, not request.url.path: building request.url decodes the raw query
        # string as strict UTF-8, so a request whose query is not UTF-8 would crash its own
        # error handler.
        return str(request.scope.get("path", ""))

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return render_page(request, exc)

    async def on_oauth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuth2Error)
        path = path_of(request)
        if path == "/userinfo":
            return bearer_challenge(exc)
        if path in back_channel:
            return oauth_json(exc)
        return render_page(
            request,
            PageError(
                N_("Invalid request"),
                N_("The application sent a request that this server cannot accept."),
                detail=exc.description or exc.error,
            ),
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        path = path_of(request)
        log.error("unexpected error on %s", path, exc_info=exc)
        if path in back_channel or path == "/userinfo":
            response: Response = oauth_json(ServerError("The server could not answer."))
        else:
            page = PageError(
                N_("Something went wrong"), N_("The server could not answer. Try again later."), 500
            )
            try:
                response = render_page(request, page)
            except Exception:  # the page itself failed: plain text, still no detail
                response = Response("server error", status_code=500, media_type="text/plain")
        for name, value in baseline_headers.items():
            response.headers.setdefault(name, value)
        return response

    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(OAuth2Error, on_oauth_error)
    app.add_exception_handler(Exception, on_unexpected)
