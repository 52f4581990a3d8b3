"""Signing keys: the key-encryption key, key creation, and each process's parsed key ring.

Keys live in the database so every worker and node sees one set; each process parses them once
and re-reads the set only when its fingerprint changes, checked at most every
IDP_KEY_REFRESH_SECONDS. Signing never parses PEM or JSON on the hot path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from sqlalchemy.orm import Session, sessionmaker

from idp.key_rotation import maintain, next_due
from idp.security.secrets import DecryptionError, Sealer, b64url_decode, b64url_encode
from idp.settings import Settings, SettingsError
from idp.store import keys as key_store
from idp.store.base import now
from idp.store.keys import PUBLISHED_STATES, KeyState, SigningKey

DEFAULT_ALG = "RS256"
log = logging.getLogger("idp.keys")
AnyKey = RSAKey | ECKey | OKPKey


class KeyMaterialError(SettingsError):
    """The key-encryption key is missing or does not open the stored keys."""


def load_key_encryption_key(settings: Settings) -> bytes:
    """From IDP_KEY_ENCRYPTION_KEY, else its file; a localhost issuer may generate the file."""
    if settings.key_encryption_key is not None:
        return decode_kek(settings.key_encryption_key.get_secret_value(), "IDP_KEY_ENCRYPTION_KEY")
    path = settings.key_encryption_key_file
    if path.exists():
        return decode_kek(path.read_text().strip(), str(path))
    if not settings.is_development:
        raise KeyMaterialError(
            f"no key-encryption key: set IDP_KEY_ENCRYPTION_KEY or provide {path} "
            "(32 random bytes, base64url; `idp keys new-kek` prints one)"
        )
    return _create_kek_file(path)


def new_key_encryption_key() -> str:
    return b64url_encode(os.urandom(32))


def decode_kek(value: str, source: str) -> bytes:
    try:
        raw = b64url_decode(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyMaterialError(f"{source} must hold 32 bytes, base64url-encoded")
    return raw


def _create_kek_file(path: Path) -> bytes:
    """Write a new KEK with mode 0600, atomically: workers starting together agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_key_encryption_key()
    draft = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    try:
        os.link(draft, path)  # fails if another process linked its key first
    except FileExistsError:
        return decode_kek(path.read_text().strip(), str(path))
    finally:
        os.unlink(draft)
    return b64url_decode(value)


@dataclass(frozen=True)
class KeySnapshot:
    """One consistent view of the key set, swapped in whole when it changes."""

    fingerprint: tuple[tuple[str, str, int], ...]
    next_due: int  # when the rotation schedule next has work to do
    signing: dict[str, tuple[str, AnyKey]]  # alg -> (kid, private key)
    verifying: KeySet  # every published key
    jwks_json: bytes
    etag: str
    parsed: dict[str, AnyKey] = field(default_factory=dict)


class NoSigningKey(RuntimeError):
    pass


class KeyRing:
    """The keys of one process: parsed once, refreshed when the set in the database changes."""

    def __init__(self, factory: sessionmaker[Session], sealer: Sealer, settings: Settings):
        self._factory = factory
        self._sealer = sealer
        self._settings = settings
        self._refresh_seconds = settings.key_refresh_seconds
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._snapshot: KeySnapshot | None = None

    def load(self) -> KeySnapshot:
        """Read and decrypt every key now; raises KeyMaterialError when the KEK is wrong."""
        with self._lock:
            self._reload(force=True)
        assert self._snapshot is not None
        return self._snapshot

    def snapshot(self) -> KeySnapshot:
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            # One thread refreshes; the others keep using the current snapshot meanwhile.
            try:
                self._reload(force=False)
            finally:
                self._lock.release()
        if self._snapshot is None:
            return self.load()
        return self._snapshot

    def signing_key(self, alg: str = DEFAULT_ALG) -> tuple[str, AnyKey]:
        try:
            return self.snapshot().signing[alg]
        except KeyError:
            raise NoSigningKey(f"no active {alg} signing key") from None

    def tick(self) -> list[str]:
        """Run the rotation schedule if something is due, then pick up any change of the key set.

        Called by each worker's background ticker; whichever worker gets there first does the
        work (under a lock), the others find it done.
        """
        done: list[str] = []
        snapshot = self._snapshot
        if snapshot is None or now() >= snapshot.next_due:
            with self._factory.begin() as db:
                done = maintain(db, self._sealer, self._settings)
        with self._lock:
            self._reload(force=False)
        return done

    def _reload(self, force: bool) -> None:
        self._next_check = time.monotonic() + self._refresh_seconds
        with self._factory() as db:
            fingerprint = key_store.fingerprint(db)
            if not force and self._snapshot and self._snapshot.fingerprint == fingerprint:
                return
            every = key_store.all_keys(db)
        rows = [row for row in every if row.state in PUBLISHED_STATES]
        previous = self._snapshot.parsed if self._snapshot else {}
        parsed: dict[str, AnyKey] = {}
        signing: dict[str, tuple[str, AnyKey]] = {}
        for row in rows:
            key = previous.get(row.kid) or self._open(row)
            parsed[row.kid] = key
            if row.state == KeyState.ACTIVE:
                signing[row.alg] = (row.kid, key)
        public = [row.public_jwk for row in rows]
        jwks_json = json.dumps({"keys": public}, separators=(",", ":")).encode()
        self._snapshot = KeySnapshot(
            fingerprint=fingerprint,
            next_due=next_due(every, self._settings),
            signing=signing,
            verifying=KeySet([_public_key(row.public_jwk) for row in rows]),
            jwks_json=jwks_json,
            etag='"' + hashlib.sha256(jwks_json).hexdigest()[:32] + '"',
            parsed=parsed,
        )

    def _open(self, row: SigningKey) -> AnyKey:
        try:
            data = json.loads(self._sealer.open(row.private_jwk_sealed, row.kid.encode()))
        except DecryptionError as exc:
            raise KeyMaterialError(
                f"signing key {row.kid} cannot be decrypted: the key-encryption key is wrong"
            ) from exc
        return _import(data)


def _import(data: dict[str, object]) -> AnyKey:
    kty = data.get("kty")
    if kty == "RSA":
        return RSAKey.import_key(data)  # type: ignore[arg-type]
    if kty == "EC":
        return ECKey.import_key(data)  # type: ignore[arg-type]
    if kty == "OKP":
        return OKPKey.import_key(data)  # type: ignore[arg-type]
    raise ValueError(f"unsupported key type {kty}")


def _public_key(jwk: dict[str, object]) -> AnyKey:
    return _import(jwk)


@dataclass
class Chore:
    period: float
    run: Callable[[], object]
    due: float = 0.0


class Ticker:
    """A worker's background thread: every IDP_KEY_REFRESH_SECONDS it runs the key schedule and
    picks up key changes (so requests never wait for key maintenance), and runs any other
    periodic chore when its own period has passed."""

    def __init__(self, keys: KeyRing, interval: float, chores: list[Chore]) -> None:
        self._keys = keys
        self._interval = interval
        self._chores = chores
        for chore in chores:
            chore.due = time.monotonic() + chore.period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idp-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                for action in self._keys.tick():
                    log.info("signing keys: %s", action)
            except Exception:  # the next tick tries again; never let the thread die
                log.exception("signing key maintenance failed")
            for chore in self._chores:
                if time.monotonic() < chore.due:
                    continue
                chore.due = time.monotonic() + chore.period
                try:
                    log.info("housekeeping: %s", chore.run())
                except Exception:
                    log.exception("housekeeping failed")
