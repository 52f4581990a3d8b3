"""Fixtures: a fresh database (SQLite always, PostgreSQL when IDP_TEST_DATABASE_URL is set), an
app built on it, and an HTTP client speaking to the app as https://testserver.

Speed: a SQLite database is migrated once per test process, with its first signing key, and
copied per test; parsed signing keys are shared by every app of the process; pytest-xdist runs
the suite on every core, each worker on a PostgreSQL database of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from idp.app import create_app
from idp.db.engine import make_engine, normalize_url
from idp.db.migrate import upgrade
from idp.keys import ring as keystore_module
from idp.runtime import build_runtime
from idp.settings import Settings
from tests.helpers import Harness

ISSUER = "https://testserver"
TEST_KEK = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE"  # 32 bytes, tests only
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

# Set once per test process by the `_templates` fixture.
_TEMPLATES: dict[str, Path] = {}


def _worker_database_url(url: str) -> str:
    """This xdist worker's own database on the server IDP_TEST_DATABASE_URL names, created on
    first use: two workers sharing one schema would drop each other's tables."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    parsed = make_url(normalize_url(url))
    name = f"{parsed.database}_{worker}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists.first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def reset_postgres(url: str) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    assert PG_URL
    return _worker_database_url(PG_URL)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: nothing migrated yet."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        reset_postgres(url)
        return url
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
        "outbound_allowed_networks": "127.0.0.0/8,::1/128",  # the loopback test hosts
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def ticking_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings whose background worker runs its maintenance every second (the shortest key
    refresh the settings allow, with the key windows it requires)."""
    values: dict[str, object] = {
        "key_refresh_seconds": 1,
        "jwks_max_age_seconds": 0,
        "key_prepublication_seconds": 1,
    }
    return make_settings(database_url, tmp_path, **{**values, **overrides})


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Two SQLite files made once per process: the migrated schema, and the schema with the
    signing key a first start creates (sealed with TEST_KEK)."""
    folder = tmp_path_factory.mktemp("templates")
    schema, keyed = folder / "schema.db", folder / "keyed.db"
    settings = make_settings(f"sqlite:///{schema}", folder)
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    shutil.copyfile(schema, keyed)
    build_runtime(make_settings(f"sqlite:///{keyed}", folder)).engine.dispose()
    _TEMPLATES.update(schema=schema, keyed=keyed)
    yield
    _TEMPLATES.clear()


def migrate(settings: Settings) -> None:
    """Bring the settings' database to the latest schema: a copy of the template when it is a
    new SQLite file (with the first signing key, when the settings' KEK can open it)."""
    url = make_url(normalize_url(settings.database_url))
    target = Path(url.database or "")
    if url.get_backend_name() == "sqlite" and not target.exists() and _TEMPLATES:
        kek = settings.key_encryption_key
        keyed = kek is not None and kek.get_secret_value() == TEST_KEK
        shutil.copyfile(_TEMPLATES["keyed" if keyed else "schema"], target)
        return
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()


def migrated_app(settings: Settings) -> FastAPI:
    migrate(settings)
    return create_app(settings)


@pytest.fixture(scope="session", autouse=True)
def _shared_parsed_keys() -> Iterator[None]:
    """Parse each signing key once per process, not once per app: an RSA private key costs
    about 40 ms to load, and every test builds an app. Keys are immutable once parsed."""
    original = keystore_module._import
    parsed: dict[str, Any] = {}

    def shared(data: dict[str, object]) -> Any:
        fingerprint = json.dumps(data, sort_keys=True)
        if fingerprint not in parsed:
            parsed[fingerprint] = original(data)
        return parsed[fingerprint]

    keystore_module._import = shared  # type: ignore[assignment]
    yield
    keystore_module._import = original  # type: ignore[assignment]


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = migrated_app(settings)
    yield application
    application.state.runtime.engine.dispose()


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.fixture
def idp(app: FastAPI, http: TestClient) -> Harness:
    return Harness(app, http)
