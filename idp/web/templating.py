"""Jinja2 rendering: every page gets the branding, its language, a CSRF token and no-store
caching.

One environment per language, each with its catalogue installed (Jinja2's i18n extension,
new-style gettext: `_()` escapes and formats with keyword arguments), built at start: nothing
per request but the choice of environment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from babel.dates import format_date, format_datetime, format_timedelta
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from idp.resources import templates_dir
from idp.security import csrf
from idp.security.headers import page_csp
from idp.settings import UI_LOCALES, Settings
from idp.web import i18n
from idp.web.branding import Branding


def _environment(locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.catalogue(locale), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = locale

    def date(timestamp: int) -> str:
        return format_date(datetime.fromtimestamp(timestamp, UTC), "medium", locale=locale)

    def moment(timestamp: int) -> str:
        # Date and time in the reader's locale; in UTC, as the server knows no one's time zone
        # (said on the page, so nobody reads an hour off).
        at = datetime.fromtimestamp(timestamp, UTC)
        return format_datetime(at, "medium", tzinfo=UTC, locale=locale) + " UTC"

    def duration(seconds: int) -> str:
        # Whole minutes past the first, rounded up, so nobody comes back a moment too early:
        # "30 seconds", "3 minutes", "2 Stunden".
        if seconds > 60:
            seconds = -(-seconds // 60) * 60
        return format_timedelta(
            timedelta(seconds=seconds), threshold=1.5, add_direction=False, locale=locale
        )

    env.filters["date"] = date
    env.filters["duration"] = duration
    env.filters["moment"] = moment
    return env


class Templates:
    def __init__(self, settings: Settings, csrf_key: bytes, branding: Branding) -> None:
        self.settings = settings
        self.csrf_key = csrf_key
        self.branding = branding
        self.envs = {locale: _environment(locale) for locale in UI_LOCALES}

    def locale(self, request: Request, ui_locales: str | None = None) -> str:
        """ui_locales of the authorization request (or of this request), then Accept-Language."""
        asked = ui_locales if ui_locales is not None else request.query_params.get("ui_locales")
        return i18n.negotiate(
            asked, request.headers.get("accept-language"), self.settings.default_locale
        )

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        form_action_origins: list[str] | None = None,
        ui_locales: str | None = None,
        scripts: bool = False,
    ) -> HTMLResponse:
        token, anchor = csrf.token_for(request, self.settings, self.csrf_key)
        env = self.envs[self.locale(request, ui_locales)]
        body = env.get_template(name).render(
            issuer=self.settings.issuer,
            csrf_token=token,
            brand=self.branding,
            **(context or {}),
        )
        response = HTMLResponse(
            body,
            status_code=status,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": page_csp(form_action_origins, scripts),
                # The page's words depend on these request headers (RFC 9110 §12.5.5).
                "Vary": "Accept-Language, Cookie",
            },
        )
        csrf.attach(response, self.settings, anchor)
        return response

    def error(
        self,
        request: Request,
        title: str,
        message: str,
        status: int = 400,
        *,
        values: dict[str, str] | None = None,
        detail: str | None = None,
        client_uri: str | None = None,
    ) -> HTMLResponse:
        """The error page: what went wrong in the reader's language, and the ways back (this
        server's home page, and the application's own when it is known)."""
        return self.render(
            request,
            "error.html",
            {
                "title": title,
                "message": message,
                "values": values or {},
                "detail": detail,
                "client_uri": client_uri,
            },
            status=status,
        )
