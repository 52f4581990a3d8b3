"""create_app(settings) -> FastAPI: the only place where the parts are wired together.

Nothing is built at import time, so tests build as many apps as they like and
`uvicorn --factory idp.app:create_app --workers 4` builds one per worker.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import inspect
from starlette.staticfiles import StaticFiles

from idp.authn.passwords import Passwords
from idp.db import make_engine, make_sessionmaker, read_only_engine
from idp.housekeeping import prune
from idp.key_rotation import maintain
from idp.keystore import Chore, KeyRing, Ticker, load_key_encryption_key
from idp.protocol.backchannel import deliver_due
from idp.protocol.endpoints import (
    authorize,
    discovery,
    end_session,
    jwks,
    revocation,
    token,
    userinfo,
)
from idp.protocol.tokens import TokenService
from idp.resources import static_dir
from idp.security.headers import SecurityHeaders
from idp.security.secrets import Sealer, derive_key
from idp.services import Services
from idp.settings import Settings, SettingsError
from idp.web import consent, home, login
from idp.web.templating import Templates

BACKCHANNEL_RETRY_SECONDS = 2


class NotMigrated(SettingsError):
    pass


def build_services(settings: Settings) -> Services:
    """Connect, check the schema, open the key ring (failing loudly on a wrong KEK)."""
    engine = make_engine(settings)
    if "signing_keys" not in inspect(engine).get_table_names():
        engine.dispose()
        raise NotMigrated("the database has no schema yet: run `idp migrate` first")
    factory = make_sessionmaker(engine)
    try:
        kek = load_key_encryption_key(settings)
        sealer = Sealer(kek)
        keys = KeyRing(factory, sealer, settings)
        keys.load()  # opens every stored key first: a wrong KEK fails here, before any change
        with factory.begin() as db:
            maintain(db, sealer, settings)  # a signing key for each enabled algorithm
        keys.load()
    except BaseException:
        engine.dispose()  # a server that cannot start holds no connections
        raise
    return Services(
        settings=settings,
        engine=engine,
        sessions=factory,
        read_engine=read_only_engine(engine),
        keys=keys,
        tokens=TokenService(settings, keys),
        passwords=Passwords(settings),
        refresh_key=derive_key(kek, "idp refresh-token successor v1"),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = build_services(settings)
    # authlib logs issued tokens at DEBUG; never let them reach a log.
    logging.getLogger("authlib").setLevel(logging.INFO)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # garbage collector's generations, so collections during requests stay short.
        gc.freeze()
        # Back-channel logout retries: each attempt is claimed, so workers never double-send.
        chores = [Chore(BACKCHANNEL_RETRY_SECONDS, lambda: deliver_due(services))]
        if settings.prune_interval_seconds:
            chores.append(Chore(settings.prune_interval_seconds, lambda: prune(services.sessions)))
        ticker = Ticker(services.keys, settings.key_refresh_seconds, chores)
        ticker.start()
        yield
        ticker.stop()
        services.engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    app.state.templates = Templates(settings)
    app.state.discovery_json = discovery.encoded(settings)
    # The token endpoint first: routes are matched in order, and it is the hot path.
    routers = (token, discovery, jwks, authorize, userinfo, revocation, end_session, login, consent)
    for module in (*routers, home):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.add_middleware(SecurityHeaders, https=not settings.is_development)
    return app
