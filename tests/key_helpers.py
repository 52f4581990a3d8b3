"""Helpers for the signing-key lifecycle tests (issue 4): a movable clock, an app per settings,
direct calls to the rotation schedule, and a look at the signing_keys table."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi import FastAPI
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select
from starlette.testclient import TestClient

import idp.keys.ring
import idp.keys.rotation
from idp.keys import rotation as key_rotation
from idp.keys.kek import load_key_encryption_key
from idp.runtime import Runtime
from idp.security.secrets import Sealer
from idp.settings import Settings
from idp.store.audit import AuditRecord
from idp.store.keys import PUBLISHED_STATES, KeyState, SigningKey
from tests.conftest import ISSUER, migrated_app
from tests.helpers import Harness

SERVICE_SCOPES = ["api.read"]


class Clock:
    """The key lifecycle's clock (idp.keys.rotation.now and idp.keys.ring.now), moved by hand.

    Tokens keep the real clock: a token signed "before" a rotation is simply one signed before
    the clock was moved, and stays unexpired."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = int(time.time())
        monkeypatch.setattr(idp.keys.rotation, "now", self)
        monkeypatch.setattr(idp.keys.ring, "now", self)

    def __call__(self) -> int:
        return self.t

    def set(self, t: int) -> None:
        self.t = t

    def advance(self, seconds: int) -> None:
        self.t += seconds


def sealer_for(settings: Settings) -> Sealer:
    return Sealer(load_key_encryption_key(settings))


def all_rows(services: Runtime) -> list[SigningKey]:
    with services.sessions() as db:
        return list(db.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)))


def row(services: Runtime, kid: str) -> SigningKey:
    found = [r for r in all_rows(services) if r.kid == kid]
    assert found, f"no row for {kid}"
    return found[0]


def in_state(services: Runtime, state: KeyState, alg: str = "RS256") -> list[SigningKey]:
    return [r for r in all_rows(services) if r.state == state and r.alg == alg]


def the_active(services: Runtime, alg: str = "RS256") -> SigningKey:
    active = in_state(services, KeyState.ACTIVE, alg)
    assert len(active) == 1, [(r.kid, r.state) for r in all_rows(services)]
    return active[0]


def published_kids(services: Runtime) -> set[str]:
    return {r.kid for r in all_rows(services) if r.state in PUBLISHED_STATES}


def maintain(services: Runtime) -> list[str]:
    with services.sessions.begin() as db:
        return key_rotation.maintain(db, sealer_for(services.settings), services.settings)


def rotate(services: Runtime, alg: str = "RS256", immediately: bool = False) -> str:
    with services.sessions.begin() as db:
        key = key_rotation.rotate(
            db, sealer_for(services.settings), services.settings, alg, immediately=immediately
        )
        return key.kid


def revoke(services: Runtime, kid: str) -> str | None:
    with services.sessions.begin() as db:
        replacement = key_rotation.revoke(db, sealer_for(services.settings), services.settings, kid)
        return replacement.kid if replacement else None


def audit(services: Runtime, event: str) -> list[dict[str, object]]:
    with services.sessions() as db:
        return [
            dict(r.detail or {})
            for r in db.scalars(select(AuditRecord).where(AuditRecord.event == event))
        ]


def header(token: str) -> dict[str, Any]:
    return dict(jws.extract_compact(token.encode()).protected)


def jwks_kids(http: TestClient) -> set[str]:
    response = http.get("/jwks.json")
    assert response.status_code == 200
    return {key["kid"] for key in response.json()["keys"]}


def fetch_jwks(http: TestClient) -> KeySet:
    """What a relying party keeps in its cache."""
    return KeySet.import_key_set(http.get("/jwks.json").json())


def service_token(idp: Harness, rp: Any) -> str:
    response = idp.client_credentials(rp)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


class Apps:
    """Builds apps (with their HTTP clients running the lifespan) and closes them at the end."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def harness(self, settings: Settings, migrate: bool = True) -> Harness:
        app = migrated_app(settings) if migrate else _create(settings)
        self._stack.callback(app.state.runtime.engine.dispose)
        client = TestClient(app, base_url=ISSUER, follow_redirects=False)
        self._stack.enter_context(client)
        return Harness(app, client)

    def close(self) -> None:
        self._stack.close()


def _create(settings: Settings) -> FastAPI:
    from idp.app import create_app

    return create_app(settings)
