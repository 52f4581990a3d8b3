"""Signing keys at rest (the issue's "Keys"; RFC 7517 §9.2 / RFC 7518 §6.3.2: private members
are secret): sealed with a key-encryption key, checked at start, created once across workers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

import idp.runtime
from idp.app import build_runtime, create_app
from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from idp.keys.kek import (
    DEVELOPMENT_MARKER,
    KeyMaterialError,
    is_development_kek,
    load_key_encryption_key,
    new_key_encryption_key,
    read_kek_file,
)
from idp.runtime import Runtime
from idp.security.secrets import b64url_decode
from idp.settings import Settings, SettingsError
from tests.conftest import make_settings
from tests.helpers import Harness

# Every private member of an RSA, EC or OKP JWK (RFC 7518 §6.3.2, §6.2.2; RFC 8037 §2).
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
DEV_ISSUER = "http://localhost:8000"


@pytest.fixture(autouse=True)
def app_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Engine]]:
    """Every engine create_app builds, disposed after the test even if the start failed (so a
    leak shows up in test_failed_start_releases_its_connections, not in an unrelated test)."""
    engines: list[Engine] = []
    real = idp.runtime.make_engine

    def recording(settings: Settings) -> Engine:
        engine = real(settings)
        engines.append(engine)
        return engine

    monkeypatch.setattr(idp.runtime, "make_engine", recording)
    yield engines
    for engine in engines:
        engine.dispose()


def migrate(settings: Settings) -> None:
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()


def key_rows(settings: Settings) -> list[dict[str, Any]]:
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT kid, public_jwk, private_jwk_sealed FROM signing_keys")
            ).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def services_for(settings: Settings) -> Runtime:
    services = build_runtime(settings)
    services.engine.dispose()
    return services


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(str(value))  # type: ignore[return-value]


def test_private_keys_are_stored_encrypted(idp: Harness, settings: Settings) -> None:
    """Issue, Keys / ARCHITECTURE habit 7: the private JWK is sealed with AES-GCM under the
    key-encryption key; the table holds no private member in the clear, and the public JWK none."""
    _, private = idp.runtime.keys.signing_key()
    secret_values = {
        name: str(value)
        for name, value in private.as_dict(private=True).items()
        if name in PRIVATE_MEMBERS
    }
    assert secret_values  # the key does have private members to hide
    rows = key_rows(settings)
    assert len(rows) == 1
    sealed = bytes(rows[0]["private_jwk_sealed"])
    for name, value in secret_values.items():
        assert f'"{name}"'.encode() not in sealed
        assert value.encode() not in sealed
    assert b'"kty"' not in sealed
    public = as_dict(rows[0]["public_jwk"])
    assert public["kty"] == "RSA"
    assert not set(public) & set(PRIVATE_MEMBERS)
    assert not set(idp.http.get("/jwks.json").json()["keys"][0]) & set(PRIVATE_MEMBERS)


def test_wrong_key_encryption_key_refuses_to_start(
    database_url: str, tmp_path: Path, settings: Settings
) -> None:
    """Issue, Keys: an app whose key-encryption key does not open the stored keys fails at start,
    with a SettingsError that says the KEK is wrong; it never serves (and never makes new keys)."""
    migrate(settings)
    services_for(settings)  # the first start creates the signing key
    other = make_settings(database_url, tmp_path, key_encryption_key=new_key_encryption_key())
    with pytest.raises(KeyMaterialError, match="key-encryption key is wrong") as caught:
        create_app(other)
    assert isinstance(caught.value, SettingsError)
    assert "\n" not in str(caught.value)
    assert len(key_rows(settings)) == 1


def test_serve_with_a_wrong_key_encryption_key_exits(database_url: str, tmp_path: Path) -> None:
    """Issue, Keys: `idp serve` with the wrong KEK exits non-zero with a one-line error, before
    listening (its migration step may report progress first)."""
    settings = make_settings(database_url, tmp_path)
    migrate(settings)
    services_for(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_DATABASE_URL=database_url,
        IDP_KEY_ENCRYPTION_KEY=new_key_encryption_key(),
    )
    result = subprocess.run(
        [sys.executable, "-m", "idp", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,  # a server that starts anyway fails the test here
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("idp: error:")]
    assert len(errors) == 1, result.stderr
    assert "key-encryption key is wrong" in errors[0]
    assert result.stderr.splitlines()[-1] == errors[0]


def test_failed_start_releases_its_connections(
    database_url: str, tmp_path: Path, settings: Settings, app_engines: list[Engine]
) -> None:
    """A start refused for a wrong key-encryption key leaves no database connection open."""
    migrate(settings)
    services_for(settings)
    app_engines.clear()
    other = make_settings(database_url, tmp_path, key_encryption_key=new_key_encryption_key())
    with pytest.raises(KeyMaterialError):
        create_app(other)
    assert len(app_engines) == 1
    assert app_engines[0].pool.checkedin() + app_engines[0].pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["short", "!" * 43, "Zm9v"])
def test_malformed_key_encryption_key_is_refused(
    database_url: str, tmp_path: Path, value: str
) -> None:
    """Issue, Keys: the KEK is 32 random bytes, base64url; anything else refuses to start."""
    settings = make_settings(database_url, tmp_path, key_encryption_key=value)
    migrate(settings)
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        create_app(settings)


def test_development_issuer_generates_a_private_kek_file(database_url: str, tmp_path: Path) -> None:
    """Issue, Keys: on a localhost http issuer with no KEK, the server writes a fresh one to
    IDP_KEY_ENCRYPTION_KEY_FILE, readable by its owner only (mode 0600), whose first line says it
    is a development key."""
    kek_file = tmp_path / "keys" / "kek"
    settings = make_settings(
        database_url,
        tmp_path,
        issuer=DEV_ISSUER,
        key_encryption_key=None,
        key_encryption_key_file=kek_file,
    )
    migrate(settings)
    services_for(settings)
    assert kek_file.exists()
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    assert len(read_kek_file(kek_file)) == 32
    assert kek_file.read_text().splitlines()[0] == DEVELOPMENT_MARKER


def load_kek_together(settings: Settings, workers: int) -> tuple[list[bytes], list[BaseException]]:
    """Call load_key_encryption_key from `workers` threads released at the same moment."""
    barrier = threading.Barrier(workers)
    keks: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait(timeout=30)
        try:
            keks.append(load_key_encryption_key(settings))
        except BaseException as exc:  # reported by the caller, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return keks, errors


def test_development_kek_file_is_generated_once_when_workers_start_together(
    tmp_path: Path,
) -> None:
    """Issue, Keys: `uvicorn --factory idp.app:create_app --workers N` on a fresh development
    checkout starts N workers at once; they all end up with the one KEK written to the file (none
    fails reading a file another worker has created but not yet filled)."""
    for round_ in range(20):
        kek_file = tmp_path / f"round-{round_}" / "kek"
        settings = make_settings(
            f"sqlite:///{tmp_path}/unused.db",
            tmp_path,
            issuer=DEV_ISSUER,
            key_encryption_key=None,
            key_encryption_key_file=kek_file,
        )
        keks, errors = load_kek_together(settings, 8)
        assert not errors, f"round {round_}: {errors[0]!r}"
        assert len(keks) == 8
        assert set(keks) == {read_kek_file(kek_file)}


def test_https_issuer_without_a_kek_refuses_to_start(database_url: str, tmp_path: Path) -> None:
    """Issue, Keys: outside development the KEK is never invented: with neither
    IDP_KEY_ENCRYPTION_KEY nor its file, start fails with
    KeyMaterialError and writes no file or key."""
    kek_file = tmp_path / "kek"
    settings = make_settings(
        database_url, tmp_path, key_encryption_key=None, key_encryption_key_file=kek_file
    )
    migrate(settings)
    with pytest.raises(KeyMaterialError, match="key-encryption key"):
        create_app(settings)
    assert not kek_file.exists()
    assert key_rows(settings) == []


def test_kek_file_is_used_when_present(database_url: str, tmp_path: Path) -> None:
    """Issue, Keys: an https issuer reads its KEK from IDP_KEY_ENCRYPTION_KEY_FILE."""
    kek_file = tmp_path / "kek"
    kek_file.write_text(new_key_encryption_key() + "\n")
    settings = make_settings(
        database_url, tmp_path, key_encryption_key=None, key_encryption_key_file=kek_file
    )
    migrate(settings)
    kid, _ = services_for(settings).keys.signing_key()
    assert [row["kid"] for row in key_rows(settings)] == [kid]


def test_a_generated_kek_is_told_from_the_operators(tmp_path: Path) -> None:
    """Issue 11, secure defaults: a KEK file the server generated is a development key (so
    `idp serve` refuses it on a network address); a KEK from IDP_KEY_ENCRYPTION_KEY or a file the
    operator wrote (`idp keys new-kek`) is not, and comment lines in a KEK file are skipped."""
    kek_file = tmp_path / "keys" / "kek"
    dev = make_settings(
        "sqlite://",
        tmp_path,
        issuer=DEV_ISSUER,
        key_encryption_key=None,
        key_encryption_key_file=kek_file,
    )
    assert is_development_kek(dev)  # not there yet: the first start would generate it
    generated = load_key_encryption_key(dev)
    https = make_settings(
        "sqlite://", tmp_path, key_encryption_key=None, key_encryption_key_file=kek_file
    )
    assert is_development_kek(dev) and is_development_kek(https)
    assert load_key_encryption_key(https) == generated
    value = new_key_encryption_key()
    kek_file.write_text(f"# from the vault\n\n{value}\n")
    assert not is_development_kek(https)
    assert read_kek_file(kek_file) == b64url_decode(value)
    assert not is_development_kek(make_settings("sqlite://", tmp_path, issuer=DEV_ISSUER))
    kek_file.write_text(f"{value}\n{value}\n")
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        read_kek_file(kek_file)


def test_same_kek_file_loads_the_same_keys(database_url: str, tmp_path: Path) -> None:
    """Issue, Keys: restarting with the same KEK file opens the stored keys; nothing new is made."""
    settings = make_settings(
        database_url,
        tmp_path,
        issuer=DEV_ISSUER,
        key_encryption_key=None,
        key_encryption_key_file=tmp_path / "kek",
    )
    migrate(settings)
    first_kid, first = services_for(settings).keys.signing_key()
    kek = (tmp_path / "kek").read_text()
    second_kid, second = services_for(settings).keys.signing_key()
    assert (tmp_path / "kek").read_text() == kek
    assert second_kid == first_kid
    assert second.as_dict(private=True) == first.as_dict(private=True)
    assert len(key_rows(settings)) == 1


@pytest.mark.parametrize("starters", [2, 4])
def test_signing_key_is_created_once_when_workers_start_together(
    database_url: str, tmp_path: Path, starters: int
) -> None:
    """ARCHITECTURE habit 4 (nothing lives in only one process): workers starting at the same
    moment on one fresh database create exactly one active signing key, and all sign with it."""
    settings = make_settings(database_url, tmp_path)
    migrate(settings)
    barrier = threading.Barrier(starters)
    kids: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(timeout=30)
            kids.append(services_for(settings).keys.signing_key()[0])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(kids) == starters
    rows = key_rows(settings)
    assert len(rows) == 1
    assert set(kids) == {rows[0]["kid"]}
