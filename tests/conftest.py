"""Fixtures: a fresh database (SQLite always, PostgreSQL when IDP_TEST_DATABASE_URL is set), an
app built on it, and an HTTP client speaking to the app as https://testserver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from idp.app import create_app
from idp.db import make_engine, normalize_url
from idp.migrate import upgrade
from idp.settings import Settings
from tests.helpers import Harness

ISSUER = "https://testserver"
TEST_KEK = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE"  # 32 bytes, tests only
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def reset_postgres(url: str) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        assert PG_URL
        reset_postgres(PG_URL)
        return PG_URL
    return f"sqlite:///{tmp_path}/idp.db"


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "database_url": database_url,
        "key_encryption_key": TEST_KEK,
        "key_encryption_key_file": tmp_path / "kek",
        # The cheapest argon2id profile: tests check behaviour, not cost.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8,
        "password_hash_parallelism": 1,
        "database_pool_size": 5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def migrated_app(settings: Settings) -> FastAPI:
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    return create_app(settings)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = migrated_app(settings)
    yield application
    application.state.services.engine.dispose()


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.fixture
def idp(app: FastAPI, http: TestClient) -> Harness:
    return Harness(app, http)
