"""The refresh_token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

Every use rotates: the presented token is marked used and a successor issued, in the request's
one transaction. Presenting a used token again revokes its whole family (the thief and the owner
cannot both keep going), except a retry by the same client within a few seconds, which gets the
very same successor: a lost response is not theft. The successor is an HMAC of the presented
token, so it can be recomputed for the retry while only hashes are stored, and there are never
two different valid successors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)

from idp.audit.events import AuditEvent, record
from idp.protocol.epochs import client_refuses, user_refuses
from idp.security.secrets import new_id, new_secret, sha256_hex, successor_secret
from idp.store import refresh_tokens, users
from idp.store.base import now
from idp.store.codes import AuthorizationCode
from idp.store.refresh_tokens import RefreshToken, TokenFamily
from idp.store.users import User

if TYPE_CHECKING:
    from idp.protocol.server import IdpServer

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


@dataclass
class Presented:
    """A refresh token that passed: its family, and the successor to hand out."""

    row: RefreshToken
    family: TokenFamily
    successor: str
    scope: str
    is_retry: bool

    def get_scope(self) -> str:
        return self.scope


def lifetimes(server: IdpServer, client: Any) -> tuple[int, int]:
    settings = server.settings
    idle = client.row.refresh_token_idle_ttl or settings.refresh_token_idle_ttl_seconds
    absolute = client.row.refresh_token_absolute_ttl or settings.refresh_token_absolute_ttl_seconds
    return idle, absolute


def start_family(
    server: IdpServer, client: Any, code: AuthorizationCode
) -> tuple[TokenFamily, str]:
    """A new family for an authorization code exchange, and its first refresh token."""
    idle, absolute = lifetimes(server, client)
    ts = now()
    family = refresh_tokens.add_family(
        server.db,
        id=new_id(),
        client_id=client.client_id,
        user_id=code.user_id,
        sid=code.sid,
        scope=code.scope,
        auth_time=code.auth_time,
        amr=code.amr,
        acr=code.acr,
        offline="offline_access" in code.scope.split(),
        resources=code.resources,
        created_at=ts,
        expires_at=ts + absolute,
    )
    value = new_secret()
    refresh_tokens.add_token(server.db, sha256_hex(value), family, code.scope, idle)
    return family, value


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: IdpServer

    def validate_token_request(self) -> None:
        client = self._validate_request_client()
        self.request.client = client
        value = self.request.form.get("refresh_token")
        if not value:
            raise InvalidRequestError("refresh_token is required")
        self.request.refresh_token = self._present(value, client, self.request.payload.scope)

    def _present(self, value: str, client: Any, requested: str | None) -> Presented:
        db, token_hash = self.server.db, sha256_hex(value)
        current = refresh_tokens.peek(db, token_hash)
        if current is None or current.client_id != client.client_id:
            raise InvalidGrantError("the refresh token is not valid")
        # RFC 6749 §6: the scope may only narrow. Checked before anything is written, so a bad
        # request does not cost the client its token.
        if requested and not set(requested.split()) <= set(current.scope.split()):
            raise InvalidScopeError("the scope may only narrow")
        scope = " ".join(dict.fromkeys(requested.split())) if requested else current.scope
        successor = successor_secret(self.server.runtime.refresh_key, value)
        # Everything from here to the answer is undone if the request ends in an error, so the
        # client keeps a token it can use (only a detected reuse outlives a failed request).
        refresh_tokens.begin_rotation(db)
        rotated = refresh_tokens.rotate(db, token_hash, client.client_id, sha256_hex(successor))
        if rotated is not None:
            family = refresh_tokens.live_family(db, rotated.family_id)
            if family is None:
                raise InvalidGrantError("the refresh token is not valid")
            idle, _ = lifetimes(self.server, client)
            refresh_tokens.add_token(db, sha256_hex(successor), family, scope, idle)
            return Presented(rotated, family, successor, scope, is_retry=False)
        return self._already_used(current, value, successor)

    def _already_used(self, row: RefreshToken, value: str, successor: str) -> Presented:
        db = self.server.db
        fresh = refresh_tokens.get(db, row.token_hash)  # as a concurrent rotation left it
        family = refresh_tokens.family(db, row.family_id)
        if fresh is None or fresh.used_at is None or family is None:
            raise InvalidGrantError("the refresh token expired")  # unused, yet not rotated
        grace = self.server.settings.refresh_token_reuse_grace_seconds
        successor_row = refresh_tokens.get(db, sha256_hex(successor))
        if (
            grace > 0
            and now() - fresh.used_at <= grace
            and fresh.successor_hash == sha256_hex(successor)
            and successor_row is not None
            and successor_row.used_at is None
            and refresh_tokens.live_family(db, family.id) is not None
        ):
            return Presented(fresh, family, successor, successor_row.scope, is_retry=True)
        # RFC 9700 §4.14.2: a rotated token came back. Either the client or an attacker holds a
        # copy; the server cannot tell which, so the whole family dies.
        if refresh_tokens.revoke_family(db, family.id, "refresh_token_reused"):
            record(
                db,
                AuditEvent.REFRESH_REUSED,
                ip=self.request.ip,
                user_id=family.user_id,
                client_id=family.client_id,
            )
        raise InvalidGrantError("the refresh token was already used")

    def authenticate_user(self, presented: Presented) -> User:
        family = presented.family
        user = users.read(self.server.db, family.user_id)
        if user is None or user_refuses(user, family.created_at):
            raise InvalidGrantError("the user of this grant can no longer sign in")
        # A family begun before its user's or client's revocation epoch is void even if the
        # revocation did not see it: another worker may have been committing it meanwhile.
        if client_refuses(self.request.client.row, family.created_at):
            raise InvalidGrantError("the refresh token is not valid")
        return user

    def issue_token(self, user: User, presented: Presented) -> dict[str, Any]:
        token: dict[str, Any] = self.generate_token(
            user=user, scope=presented.scope, include_refresh_token=False
        )
        token["refresh_token"] = presented.successor
        return token

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        try:
            return self._create_token_response()
        except OAuth2Error:
            refresh_tokens.undo_rotation(self.server.db)
            raise

    def _create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        status, token, headers = super().create_token_response()
        presented: Presented = self.request.refresh_token
        if "openid" in presented.scope.split():
            # OIDC Core §12.2: the refreshed ID token keeps sub, aud, auth_time (and sid).
            token["id_token"] = self.server.id_token_for(
                self.request.client, presented.family, token["access_token"]
            )
        return status, token, headers

    def revoke_old_credential(self, presented: Presented) -> None:
        """Nothing to do: the presented token was marked used when it was rotated."""
