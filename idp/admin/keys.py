"""Signing keys for administrators: list, rotate (stage, or sign at once in an emergency) and
revoke. The lifecycle itself is idp.keys.rotation's; this adds who did it to the trail."""

from __future__ import annotations

from sqlalchemy.orm import Session

from idp.keys import rotation
from idp.security.secrets import Sealer
from idp.settings import Settings
from idp.store import keys
from idp.store.keys import KeyState, SigningKey


class AlgorithmNotEnabled(ValueError):
    """Keys are made only for the algorithms this server signs with (IDP_SIGNING_ALGS)."""


def list_keys(db: Session) -> list[SigningKey]:
    return keys.all_keys(db)


def rotate_key(
    db: Session, sealer: Sealer, settings: Settings, alg: str, *, now: bool, actor: str
) -> SigningKey:
    """Stage a new key of `alg` (it signs after the pre-publication window), or with `now` make
    one sign at once. A rotation already staged is returned, not doubled."""
    if alg not in settings.enabled_algs:
        raise AlgorithmNotEnabled(f"{alg} is not enabled (IDP_SIGNING_ALGS)")
    return rotation.rotate(db, sealer, settings, alg, now, actor=actor)


def revoke_key(
    db: Session, sealer: Sealer, settings: Settings, kid: str, *, actor: str
) -> SigningKey | None:
    """Withdraw a key at once; returns the key that took over signing, if it was signing.
    Raises LookupError for a kid that is unknown or already revoked."""
    return rotation.revoke(db, sealer, settings, kid, actor=actor)


def describe_key(key: SigningKey) -> dict[str, object]:
    """A key's public facts: never its private part, sealed or not."""
    return {
        "kid": key.kid,
        "alg": key.alg,
        "state": str(key.state),
        "published": key.state != KeyState.REVOKED,
        "created_at": key.created_at,
        "activates_at": key.activates_at,
        "activated_at": key.activated_at,
        "retired_at": key.retired_at,
        "remove_after": key.remove_after,
        "revoked_at": key.revoked_at,
        "public_jwk": key.public_jwk,
    }
