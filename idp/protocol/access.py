"""The applications a person has let into their account, and taking that back.

An application has access while it holds a consent or a live refresh-token family (a trusted,
first-party application holds no consent). Withdrawing ends both: the consent is forgotten, so
the next authorization request asks again, and every refresh-token family of that client for
this person is revoked with the access tokens it produced, and so is every access token issued
from a code exchange (with or without offline_access) that has not expired yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.store import clients, codes, consents, refresh_tokens, revocations
from idp.store.base import now
from idp.store.clients import Client


@dataclass(frozen=True)
class GrantedApp:
    client: Client
    scopes: list[str]  # what the person consented to; empty for a trusted application
    since: int  # when access was granted (or, without a consent, the newest grant began)


def granted_apps(db: Session, user_id: str) -> list[GrantedApp]:
    """Newest first."""
    holding = refresh_tokens.clients_holding_tokens(db, user_id)
    apps: dict[str, GrantedApp] = {}
    for consent in consents.of_user(db, user_id):
        client = clients.get(db, consent.client_id)
        if client is not None:
            apps[client.client_id] = GrantedApp(client, list(consent.scopes), consent.granted_at)
    for client_id, since in holding.items():
        if client_id not in apps and (client := clients.get(db, client_id)) is not None:
            apps[client_id] = GrantedApp(client, [], since)
    return sorted(apps.values(), key=lambda app: app.since, reverse=True)


def withdraw(db: Session, user_id: str, client_id: str, ip: str | None) -> bool:
    """End the application's access to this person's account; False if it had none."""
    withdrawn = consents.withdraw(db, user_id, client_id)
    families = refresh_tokens.live_families_of_user(db, user_id, client_id)
    for family_id in families:
        refresh_tokens.revoke_family(db, family_id, "consent_withdrawn")
    issued = codes.live_tokens_of(db, user_id, client_id, now())
    for jti, expires_at in issued:
        revocations.revoke(db, jti, expires_at, "consent_withdrawn")
    if not withdrawn and not families and not issued:
        return False
    record(
        db,
        AuditEvent.CONSENT_WITHDRAWN,
        ip=ip,
        user_id=user_id,
        client_id=client_id,
        families=len(families),
        jwts=len(issued),  # access tokens ("token" keys are screened out as secrets)
    )
    return True
