"""Revoke everything a user or a client holds, disable and enable them, rotate a client secret.

HTTP-free, for every administrative caller (the CLI today; the admin API and pages later). Each
function takes the caller's transaction and an `actor` for the audit trail, and never commits:
the change and its audit event commit together.

Access tokens are self-contained JWTs, so revoking them everywhere at once is an epoch on the
user's or client's row (`tokens_revoked_before`): userinfo and introspection refuse a token whose
`iat` is before it (idp.protocol.epochs), on every worker, as soon as this transaction commits.
Refresh-token families are revoked outright (with the access tokens linked to them), and a
user's sessions end with back-channel logout queued, as a sign-out does.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.admin import clients as client_admin
from idp.audit.events import AuditEvent, record
from idp.authn import sessions
from idp.security.secrets import new_secret, sha256_hex
from idp.store import clients, refresh_tokens, users
from idp.store.base import now
from idp.store.clients import Client
from idp.store.users import User

SECRET_METHODS = ("client_secret_basic", "client_secret_post")


class NoSuchUser(LookupError):
    """No user has this id."""


class NoSuchClient(LookupError):
    """No client has this id."""


class NotASecretClient(ValueError):
    """Only a client that authenticates with a secret has one to rotate."""


@dataclass(frozen=True)
class Revoked:
    """What a revocation ended, and the epoch set: tokens with iat < epoch are refused."""

    sessions: int
    families: int
    epoch: int


def epoch() -> int:
    """One second past now. Token times are whole seconds, so a token issued in this very
    second (before or after the revocation, which cannot be told apart) has iat < epoch and is
    refused; the cost is that a token issued later in the same second is refused too."""
    return now() + 1


def _user(db: Session, user_id: str) -> User:
    user = users.get(db, user_id)
    if user is None:
        raise NoSuchUser(user_id)
    return user


def _client(db: Session, client_id: str) -> Client:
    client = clients.get(db, client_id)
    if client is None:
        raise NoSuchClient(client_id)
    return client


# --- users ---------------------------------------------------------------------------------------


def revoke_user(db: Session, user_id: str, actor: str, reason: str) -> Revoked:
    """End every session of the user (logout tokens queued), revoke every refresh-token
    family (offline ones included) and every access token issued so far. Audited."""
    user = _user(db, user_id)
    ended, families = sessions.end_every(db, user.id, reason[:64])
    user.tokens_revoked_before = max(epoch(), user.tokens_revoked_before or 0)
    db.flush()
    record(
        db,
        AuditEvent.SESSIONS_REVOKED,
        user_id=user.id,
        sessions=ended,
        families=families,
        epoch=user.tokens_revoked_before,
        actor=actor,
        reason=reason,
    )
    return Revoked(ended, families, user.tokens_revoked_before)


def disable_user(db: Session, user_id: str, actor: str, reason: str) -> Revoked:
    """Refuse the user's sign-ins and tokens from now on, and revoke what they hold."""
    user = _user(db, user_id)
    before = user.disabled
    user.disabled = True
    user.updated_at = now()
    revoked = revoke_user(db, user_id, actor, reason)
    record(
        db,
        AuditEvent.USER_DISABLED,
        user_id=user.id,
        before=_state(before),
        after=_state(True),
        actor=actor,
        reason=reason,
    )
    return revoked


def enable_user(db: Session, user_id: str, actor: str) -> bool:
    """Let the user sign in again; what was revoked stays revoked. False if not disabled."""
    user = _user(db, user_id)
    before = user.disabled
    user.disabled = False
    user.updated_at = now()
    db.flush()
    record(
        db,
        AuditEvent.USER_ENABLED,
        user_id=user.id,
        before=_state(before),
        after=_state(False),
        actor=actor,
    )
    return before


def _state(disabled: bool) -> str:
    return "disabled" if disabled else "enabled"


# --- clients -------------------------------------------------------------------------------------


def revoke_client(db: Session, client_id: str, actor: str, reason: str) -> Revoked:
    """Revoke every refresh-token family of the client (of every user) and every access
    token issued to it so far. Audited."""
    client = _client(db, client_id)
    families = refresh_tokens.live_families_of_client(db, client.client_id)
    for family_id in families:
        refresh_tokens.revoke_family(db, family_id, reason[:64])
    client.tokens_revoked_before = max(epoch(), client.tokens_revoked_before or 0)
    db.flush()
    record(
        db,
        AuditEvent.CLIENT_TOKENS_REVOKED,
        client_id=client.client_id,
        families=len(families),
        epoch=client.tokens_revoked_before,
        actor=actor,
        reason=reason,
    )
    return Revoked(0, len(families), client.tokens_revoked_before)


def disable_client(db: Session, client_id: str, actor: str, reason: str) -> Revoked:
    """The client authenticates nowhere (invalid_client), starts no sign-in (an error page),
    and its tokens are revoked."""
    client = _client(db, client_id)
    before = client.disabled
    client.disabled = True
    revoked = revoke_client(db, client_id, actor, reason)
    record(
        db,
        AuditEvent.CLIENT_DISABLED,
        client_id=client.client_id,
        before=_state(before),
        after=_state(True),
        actor=actor,
        reason=reason,
    )
    return revoked


def enable_client(db: Session, client_id: str, actor: str) -> bool:
    """Let the client authenticate again; its old tokens stay dead. False if not disabled."""
    client = _client(db, client_id)
    before = client.disabled
    client.disabled = False
    db.flush()
    record(
        db,
        AuditEvent.CLIENT_ENABLED,
        client_id=client.client_id,
        before=_state(before),
        after=_state(False),
        actor=actor,
    )
    return before


def delete_client(db: Session, client_id: str, actor: str) -> Revoked:
    """Revoke the client's tokens, then delete it. Its epoch goes with its row, so the
    validators refuse any token whose client no longer exists (idp.protocol.epochs); the
    revocation first still writes the denylist entries of its linked access tokens."""
    revoked = revoke_client(db, client_id, actor, "client_deleted")
    client_admin.remove(db, client_id, actor)
    return revoked


def rotate_secret(db: Session, client_id: str, actor: str, overlap_seconds: int = 86400) -> str:
    """A new 256-bit secret for a client_secret_* client, returned once (only its hash is
    kept). The old one keeps working for overlap_seconds, so a deployment can switch over;
    0 ends it now. A secret rotated out earlier and still in its overlap ends now: there is
    one previous secret, never two."""
    if overlap_seconds < 0:
        raise ValueError("the overlap cannot be negative")
    client = _client(db, client_id)
    if client.auth_method not in SECRET_METHODS or client.secret_hash is None:
        raise NotASecretClient(
            f"client {client_id} authenticates with {client.auth_method}, not a secret"
        )
    secret = new_secret()
    ts = now()
    client.previous_secret_hash = client.secret_hash if overlap_seconds > 0 else None
    client.previous_secret_expires_at = ts + overlap_seconds if overlap_seconds > 0 else None
    client.secret_hash = sha256_hex(secret)
    client.secret_created_at = ts
    db.flush()
    record(
        db,
        AuditEvent.CLIENT_SECRET_ROTATED,
        client_id=client.client_id,
        overlap_seconds=overlap_seconds,
        previous_valid_until=client.previous_secret_expires_at,
        actor=actor,
    )
    return secret
