"""The per-process parts of one app, built once at start and shared by every request.

Nothing here is state that other workers would need to see: it is configuration, the connection
pool with its two session factories, and caches of what the database holds (the parsed key
ring). No protocol code is imported here; protocol and pages import this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from idp.audit import chain
from idp.authn.passwords import Passwords
from idp.db.engine import make_engine, make_sessionmaker, prepare_loop_writes, read_only
from idp.keys.kek import load_key_encryption_key
from idp.keys.ring import KeyRing
from idp.keys.rotation import maintain
from idp.outbound import OutboundPolicy
from idp.security.secrets import Sealer, derive_key
from idp.settings import Settings, SettingsError
from idp.store.clients import UsageMemo


class NotMigrated(SettingsError):
    pass


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    # Read-write units of work: on SQLite they hold the one write lock, so keep them short.
    sessions: sessionmaker[Session]
    # Units of work that only read: on SQLite they never take the write lock; on PostgreSQL the
    # transaction is READ ONLY, so a write that slips into a read path fails loudly.
    reads: sessionmaker[Session]
    # The same read-only pool without the ORM, for a single lookup on the hot path.
    read_engine: Engine
    keys: KeyRing
    passwords: Passwords
    sealer: Sealer
    # Derives each refresh token's successor (HKDF of the key-encryption key).
    refresh_key: bytes
    # Signs the HTML forms' CSRF tokens (HKDF of the key-encryption key).
    csrf_key: bytes
    # Signs the device cookies that exempt known browsers from strangers' throttling.
    device_key: bytes
    # Which addresses outbound requests may reach (jwks_uri, back-channel logout, logos).
    outbound: OutboundPolicy
    # Which clients this process has already marked as used today (clients.last_used_day).
    usage: UsageMemo = field(default_factory=UsageMemo)


def build_runtime(settings: Settings) -> Runtime:
    """Connect, check the schema, open the key ring (failing loudly on a wrong KEK)."""
    engine = make_engine(settings)
    if "signing_keys" not in inspect(engine).get_table_names():
        engine.dispose()
        raise NotMigrated("the database has no schema yet: run `idp migrate` first")
    read_engine = read_only(engine)
    writes, reads = make_sessionmaker(engine), make_sessionmaker(read_engine)
    prepare_loop_writes(engine)
    try:
        kek = load_key_encryption_key(settings)
        audit_key = chain.chain_key(kek)
        chain.install(writes, lambda: audit_key)
        sealer = Sealer(kek)
        keys = KeyRing(reads, writes, sealer, settings)
        keys.load()  # opens every stored key first: a wrong KEK fails here, before any change
        chain.seal_legacy(writes)  # rows from before the chain, before any new row joins it
        with writes.begin() as db:
            maintain(db, sealer, settings)  # a signing key for each enabled algorithm
        keys.load()
    except BaseException:
        engine.dispose()  # a server that cannot start holds no connections
        raise
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=writes,
        reads=reads,
        read_engine=read_engine,
        keys=keys,
        passwords=Passwords(settings),
        sealer=sealer,
        refresh_key=derive_key(kek, "idp refresh-token successor v1"),
        csrf_key=derive_key(kek, "idp csrf token v1"),
        device_key=derive_key(kek, "idp device cookie v1"),
        outbound=OutboundPolicy.from_settings(settings),
    )
