"""Each process's parsed key ring: the published keys and the signing key of each algorithm.

Keys live in the database so every worker and node sees one set; each process parses them once.
Requests only read the ring's current snapshot and never touch the database for it: the
background worker (idp.worker) runs the rotation schedule and re-reads the set when its
fingerprint changes, every IDP_KEY_REFRESH_SECONDS. Signing never parses PEM or JSON on the hot
path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field

from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from sqlalchemy.orm import Session, sessionmaker

from idp.keys.kek import KeyMaterialError
from idp.keys.rotation import maintain, next_due
from idp.security.secrets import DecryptionError, Sealer
from idp.settings import Settings
from idp.store import keys as key_store
from idp.store.base import now
from idp.store.keys import PUBLISHED_STATES, KeyState, SigningKey

DEFAULT_ALG = "RS256"
log = logging.getLogger("idp.keys")
AnyKey = RSAKey | ECKey | OKPKey


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

    def __init__(
        self,
        read: sessionmaker[Session],
        write: sessionmaker[Session],
        sealer: Sealer,
        settings: Settings,
    ):
        self._read = read
        self._write = write
        self._sealer = sealer
        self._settings = settings
        self._lock = threading.Lock()
        self._snapshot: KeySnapshot | None = None

    def load(self) -> KeySnapshot:
        """Read and decrypt every key now; raises KeyMaterialError when the KEK is wrong."""
        with self._lock:
            self._reload(force=True)
        assert self._snapshot is not None
        return self._snapshot

    def snapshot(self) -> KeySnapshot:
        """The current key set, from memory: a request never waits on the database for it."""
        if self._snapshot is None:
            return self.load()
        return self._snapshot

    def loaded(self) -> bool:
        """Whether this process holds a signing key for every enabled algorithm (from memory:
        a health check must not wait on the database for it)."""
        snapshot = self._snapshot
        return snapshot is not None and all(
            alg in snapshot.signing for alg in self._settings.enabled_algs
        )

    def signing_key(self, alg: str = DEFAULT_ALG) -> tuple[str, AnyKey]:
        try:
            return self.snapshot().signing[alg]
        except KeyError:
            raise NoSigningKey(f"no active {alg} signing key") from None

    def tick(self) -> list[str]:
        """Run the rotation schedule if something is due, then pick up any change of the key set.

        Called by each worker's background loop; whichever worker gets there first does the
        work (under a lock), the others find it done.
        """
        done: list[str] = []
        snapshot = self._snapshot
        if snapshot is None or now() >= snapshot.next_due:
            with self._write.begin() as db:
                done = maintain(db, self._sealer, self._settings)
        with self._lock:
            self._reload(force=False)
        return done

    def _reload(self, force: bool) -> None:
        with self._read() as db:
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
