"""create_app(settings) -> FastAPI: the only place where the parts are wired together.

Nothing is built at import time, so tests build as many apps as they like and
`uvicorn --factory idp.app:create_app --workers 4` builds one per worker.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from idp import errors
from idp.admin import api as admin_api, pages as admin_pages
from idp.db.engine import pool_capacity
from idp.db.loop_reads import close_loop_reads, open_loop_reads
from idp.ops import health, metrics, scrape
from idp.ops.requests import RequestContext
from idp.protocol.endpoints import (
    authorize,
    direct,
    discovery,
    documents,
    jwks,
    revocation,
    token,
    userinfo,
)
from idp.resources import static_dir
from idp.runtime import build_runtime
from idp.security.headers import SecurityHeaders, baseline_headers
from idp.settings import Settings
from idp.web import (
    account,
    account_password,
    branding,
    client_logo,
    consent,
    home,
    login,
    logout,
    mfa_account,
    passkeys,
    second_factor,
)
from idp.web.templating import Templates
from idp.worker import Worker

# Where errors answer in RFC 6749 §5.2 JSON rather than as a page for a person.
BACK_CHANNEL_PATHS = ("/token", "/revoke", "/introspect")


class IdpApp(FastAPI):
    """FastAPI with the IdP's own middleware in front of FastAPI's stack rather than inside it.

    FastAPI wraps every user middleware in its ServerErrorMiddleware, exception telemetry and
    body limit; `front` runs before those, so that the published documents and the token
    endpoint (`direct`) are answered without them, and every response, a 500 included, carries
    the request id and the security headers."""

    front: list[Middleware]

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(getattr(self, "front", [])):
            app = cls(app, *args, **kwargs)
        return app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    brand = branding.load(settings)  # a bad logo is a SettingsError: the server does not start
    runtime = build_runtime(settings)
    worker = Worker(runtime)
    templates = Templates(settings, runtime.csrf_key, brand)
    # authlib logs issued tokens at DEBUG; never let them reach a log.
    logging.getLogger("authlib").setLevel(logging.INFO)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # garbage collector's generations, so collections during requests stay short.
        gc.freeze()
        # Sync endpoints (the pages) run in anyio's threads, 40 by default. Each needs one of
        # the pool's connections, so a thread beyond those only waits, holding a stack and,
        # under glibc, an arena of its own that it never gives back.
        to_thread.current_default_thread_limiter().total_tokens = pool_capacity(runtime.engine)
        await open_loop_reads(runtime.engine, settings.database_loop_read_connections)
        worker.start()
        yield
        worker.stop()
        metrics.flush()  # the requests counted since the last write (several workers)
        await close_loop_reads(runtime.engine)
        runtime.engine.dispose()

    # FastAPI's own OpenTelemetry is off: metrics are Prometheus's (idp.ops.metrics), and asking
    # whether a tracer, meter or logger provider is configured cost ~15 µs on every request.
    telemetry: Any = {"tracing": False, "metrics": False, "logs": False}
    app = IdpApp(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, telemetry=telemetry
    )
    app.state.runtime = runtime
    app.state.worker = worker
    app.state.templates = templates
    app.state.branding = brand
    published = documents.Published(
        runtime.keys, discovery.encoded(settings), settings.jwks_max_age_seconds
    )
    app.state.published = published

    def render_page(request: Request, error: errors.PageError) -> Response:
        return templates.error(
            request,
            error.title,
            error.message,
            error.status,
            values=error.values,
            detail=error.detail,
            client_uri=error.client_uri,
        )

    https = not settings.is_development
    errors.install(app, render_page, BACK_CHANNEL_PATHS, baseline_headers(https))
    # The token endpoint first: routes are matched in order, and it is the hot path.
    routers = (
        token,
        discovery,
        jwks,
        authorize,
        userinfo,
        revocation,
        logout,
        login,
        second_factor,
        passkeys,
        consent,
    )
    # branding serves /static/brand/*: before the /static mount, which would answer 404.
    pages = (client_logo, home, account, account_password, mfa_account, branding)
    for module in (*routers, *pages, health, scrape):
        app.include_router(module.router)
    # /admin/api first: a JSON application of its own; then /admin, the pages.
    app.mount(admin_api.PREFIX, admin_api.build(runtime))
    app.include_router(admin_pages.router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    # Outermost first. The proxy's headers before anything else: every part sees the client's
    # address and scheme, and every throttle budget belongs to the client, not to the proxy in
    # front of all of them. The published documents and POST /token skip routing, inside the
    # request id, metrics and headers.
    proxy = [Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)]
    app.front = [
        *(proxy if settings.forwarded_allow_ips else []),
        Middleware(RequestContext, access_log=settings.access_log),
        Middleware(SecurityHeaders, https=https),
        Middleware(documents.Documents, published=published),
        Middleware(direct.DirectRoutes, routes={("POST", "/token"): token.token_endpoint}),
    ]
    return app
