"""The signing-key lifecycle: stage → activate → retire → remove, and an emergency revoke.

Publishing comes first, signing second and removal last: a key is in /jwks.json for at least the
pre-publication window before it signs (relying parties that cached the JWKS have refreshed by
then), and a retired key stays published until every token it signed has expired.

Every change happens in one transaction under a lock (PostgreSQL advisory lock; SQLite's
BEGIN IMMEDIATE write lock), and re-reads the state after taking it: when several workers notice
that a rotation is due, the first does it and the others find nothing left to do.
"""

from __future__ import annotations

import json

from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey
from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.security.secrets import DecryptionError, Sealer
from idp.settings import Settings
from idp.store import clients, keys as key_store
from idp.store.base import now
from idp.store.keys import KeyState, SigningKey

LOCK_ID = 0x6964706B6579  # "idpkey"
SIGNING_STATES = (KeyState.STAGED, KeyState.ACTIVE)
# Allowance for relying parties whose clocks run behind when they check `exp`.
CLOCK_SKEW = 300

AnyKey = RSAKey | ECKey | OKPKey


def generate(alg: str) -> AnyKey:
    params: KeyParameters = {"alg": alg, "use": "sig"}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, parameters=params, auto_kid=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params, auto_kid=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


def lock(db: Session) -> None:
    """Serialise key changes across workers and nodes for the rest of this transaction."""
    if db.get_bind().dialect.name == "postgresql":
        key_store.advisory_lock(db, LOCK_ID)


class WrongKeyEncryptionKey(RuntimeError):
    """This process's KEK does not open the stored keys (another KEK is in use, after a rewrap)."""


def _check_sealer(db: Session, sealer: Sealer) -> None:
    """Refuse to seal a new key under a KEK that cannot open the newest stored one: a worker left
    on the old KEK after `idp keys rewrap` would lock every restarted server out."""
    newest = key_store.newest(db)
    if newest is None:
        return
    try:
        sealer.open(newest.private_jwk_sealed, newest.kid.encode())
    except DecryptionError:
        raise WrongKeyEncryptionKey(
            "this process's key-encryption key does not open the stored keys; restart it with "
            "the current one"
        ) from None


def create(
    db: Session,
    sealer: Sealer,
    alg: str,
    state: KeyState,
    activates_at: int | None = None,
    actor: str | None = None,
) -> SigningKey:
    _check_sealer(db, sealer)
    key = generate(alg)
    kid = str(key.kid)
    ts = now()
    row = SigningKey(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk=key.as_dict(private=False),
        # The kid is the associated data: a sealed key cannot be moved onto another row.
        private_jwk_sealed=sealer.seal(
            json.dumps(key.as_dict(private=True)).encode(), kid.encode()
        ),
        created_at=ts,
        activates_at=activates_at if state == KeyState.STAGED else ts,
        activated_at=ts if state == KeyState.ACTIVE else None,
        updated_at=ts,
    )
    db.add(row)
    db.flush()
    record(db, AuditEvent.KEY_CREATED, actor=actor, kid=kid, alg=alg, state=str(state))
    return row


def longest_token_lifetime(db: Session, settings: Settings) -> int:
    """How long a token signed now may stay valid: the retirement period of a key."""
    per_client = clients.longest_access_token_ttl(db)
    longest = max(settings.access_token_ttl_seconds, settings.id_token_ttl_seconds, per_client)
    # A worker that has not reloaded yet still signs with the retiring key for up to one
    # refresh interval; its last tokens must verify too.
    return longest + settings.key_refresh_seconds + CLOCK_SKEW


def activate(db: Session, key: SigningKey, lifetime: int, actor: str | None = None) -> None:
    """Make `key` the signing key of its algorithm; the previous one retires."""
    ts = now()
    for previous in key_store.in_state(db, key.alg, KeyState.ACTIVE):
        if previous.kid != key.kid:
            previous.state = KeyState.RETIRED
            previous.retired_at = ts
            previous.remove_after = ts + lifetime
            previous.updated_at = ts
            record(db, AuditEvent.KEY_RETIRED, actor=actor, kid=previous.kid, alg=previous.alg)
    key.state = KeyState.ACTIVE
    key.activated_at = ts
    key.updated_at = ts
    db.flush()
    record(db, AuditEvent.KEY_ACTIVATED, actor=actor, kid=key.kid, alg=key.alg)


def rotate(
    db: Session,
    sealer: Sealer,
    settings: Settings,
    alg: str,
    immediately: bool = False,
    actor: str | None = None,
) -> SigningKey:
    """Stage a new key that activates after the pre-publication window, or (`immediately`, for an
    emergency) make one sign at once: the staged key if there is one, else a new key. A rotation
    already staged is returned, not doubled."""
    lock(db)
    staged = key_store.in_state(db, alg, KeyState.STAGED)
    if immediately:
        # A key already staged has been published for a while: relying parties may know it.
        key = staged[0] if staged else create(db, sealer, alg, KeyState.STAGED, now(), actor)
        activate(db, key, longest_token_lifetime(db, settings), actor)
        return key
    if staged:
        return staged[0]
    key = create(db, sealer, alg, KeyState.STAGED, actor=actor)
    key.activates_at = key.created_at + settings.key_prepublication_seconds  # one clock reading
    db.flush()
    return key


def revoke(
    db: Session, sealer: Sealer, settings: Settings, kid: str, actor: str | None = None
) -> SigningKey | None:
    """Withdraw a key at once. If it was signing, a staged key (or a new one) takes over now.

    Returns the replacement, if one was needed. Raises LookupError for an unknown kid.
    """
    lock(db)
    key = key_store.get(db, kid)
    if key is None or key.state == KeyState.REVOKED:
        raise LookupError(f"no published key {kid}")
    was_active = key.state == KeyState.ACTIVE
    ts = now()
    key.state, key.revoked_at, key.updated_at = KeyState.REVOKED, ts, ts
    db.flush()
    record(db, AuditEvent.KEY_REVOKED, actor=actor, kid=kid, alg=key.alg)
    if not was_active:
        return None
    staged = key_store.in_state(db, key.alg, KeyState.STAGED)
    replacement = (
        staged[0] if staged else create(db, sealer, key.alg, KeyState.STAGED, ts, actor)
    )
    activate(db, replacement, longest_token_lifetime(db, settings), actor)
    return replacement


def maintain(db: Session, sealer: Sealer, settings: Settings) -> list[str]:
    """Do whatever the schedule says is due, once; returns what was done (for logs and tests)."""
    lock(db)
    ts = now()
    done: list[str] = []
    lifetime = longest_token_lifetime(db, settings)
    window, rotation = settings.key_prepublication_seconds, settings.rotation_seconds
    for alg in settings.enabled_algs:
        current = key_store.active(db, alg)
        staged = key_store.in_state(db, alg, KeyState.STAGED)
        ready = [k for k in staged if (k.activates_at or 0) <= ts]
        if current is None:
            # Nothing signs with this algorithm (first start, or it was just enabled): a key
            # nobody can have cached yet, so there is nothing to wait for.
            key = staged[0] if staged else create(db, sealer, alg, KeyState.STAGED, ts)
            activate(db, key, lifetime)
            done.append(f"activated {key.kid} ({alg})")
        elif ready:
            activate(db, ready[-1], lifetime)
            done.append(f"activated {ready[-1].kid} ({alg}), retired {current.kid}")
            for passed_over in ready[:-1]:  # never signed anything: nothing to keep it for
                key_store.remove(db, passed_over.kid)
                record(db, AuditEvent.KEY_REMOVED, kid=passed_over.kid, alg=alg)
        elif not staged and ts >= (current.activated_at or ts) + rotation - window:
            activates_at = max(ts + window, (current.activated_at or ts) + rotation)
            key = create(db, sealer, alg, KeyState.STAGED, activates_at)
            done.append(f"staged {key.kid} ({alg}) to activate at {activates_at}")
    for key in key_store.all_keys(db):
        if key.alg not in settings.enabled_algs and key.state == KeyState.ACTIVE:
            # The algorithm was switched off: its key verifies what it signed, and nothing new.
            key.state, key.retired_at, key.updated_at = KeyState.RETIRED, ts, ts
            key.remove_after = ts + lifetime
            record(db, AuditEvent.KEY_RETIRED, kid=key.kid, alg=key.alg)
            done.append(f"retired {key.kid} ({key.alg} is no longer enabled)")
        elif key.alg not in settings.enabled_algs and key.state == KeyState.STAGED:
            key_store.remove(db, key.kid)
            record(db, AuditEvent.KEY_REMOVED, kid=key.kid, alg=key.alg)
            done.append(f"removed staged {key.kid} ({key.alg} is no longer enabled)")
        elif key.state == KeyState.RETIRED and (key.remove_after or 0) <= ts:
            key_store.remove(db, key.kid)
            record(db, AuditEvent.KEY_REMOVED, kid=key.kid, alg=key.alg)
            done.append(f"removed {key.kid} ({key.alg})")
    return done


def next_due(keys: list[SigningKey], settings: Settings) -> int:
    """The earliest time `maintain` has something to do, from an already loaded key set."""
    due: list[int] = []
    if any(k.alg not in settings.enabled_algs and k.state in SIGNING_STATES for k in keys):
        return 0
    for alg in settings.enabled_algs:
        mine = [k for k in keys if k.alg == alg]
        current = [k for k in mine if k.state == KeyState.ACTIVE]
        staged = [k for k in mine if k.state == KeyState.STAGED]
        if not current:
            return 0
        if staged:
            due.append(min(k.activates_at or 0 for k in staged))
        else:
            activated = current[0].activated_at or 0
            due.append(activated + settings.rotation_seconds - settings.key_prepublication_seconds)
    due += [k.remove_after or 0 for k in keys if k.state == KeyState.RETIRED]
    return min(due) if due else 2**62


def rewrap(db: Session, old: Sealer, new: Sealer) -> int:
    """Re-encrypt every private key under a new key-encryption key, in one transaction."""
    lock(db)
    rows = key_store.all_keys(db)
    for row in rows:
        aad = row.kid.encode()
        row.private_jwk_sealed = new.seal(old.open(row.private_jwk_sealed, aad), aad)
    db.flush()
    return len(rows)
