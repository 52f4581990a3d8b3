"""Jinja2 rendering: every page gets the issuer, a CSRF token and no-store caching."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from idp.resources import templates_dir
from idp.security import csrf
from idp.security.headers import page_csp
from idp.settings import Settings


class Templates:
    def __init__(self, settings: Settings, csrf_key: bytes) -> None:
        self.settings = settings
        self.csrf_key = csrf_key
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir())),
            autoescape=select_autoescape(default=True, default_for_string=True),
            auto_reload=False,
        )

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        form_action_origins: list[str] | None = None,
    ) -> HTMLResponse:
        token, anchor = csrf.token_for(request, self.settings, self.csrf_key)
        body = self.env.get_template(name).render(
            issuer=self.settings.issuer, csrf_token=token, **(context or {})
        )
        response = HTMLResponse(
            body,
            status_code=status,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": page_csp(form_action_origins),
            },
        )
        csrf.attach(response, self.settings, anchor)
        return response

    def error(self, request: Request, title: str, message: str, status: int = 400) -> HTMLResponse:
        return self.render(
            request, "error.html", {"title": title, "message": message}, status=status
        )
