"""Typed access to the app's long-lived parts from a request."""

from __future__ import annotations

from starlette.requests import Request

from idp.services import Services
from idp.web.templating import Templates


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def templates(request: Request) -> Templates:
    return request.app.state.templates  # type: ignore[no-any-return]
