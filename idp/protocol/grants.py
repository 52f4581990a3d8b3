"""authlib grant subclasses: storage hooks and the narrowing of authlib's defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge

from idp.audit.events import AuditEvent, record
from idp.protocol import audiences
from idp.protocol.claims import USER_SCOPES
from idp.store import codes, refresh_tokens, revocations, sessions, users
from idp.store.base import now
from idp.store.codes import AuthorizationCode
from idp.store.users import User

if TYPE_CHECKING:
    from idp.protocol.server import IdpServer

SECRET_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """RFC 7636 narrowed: S256 only, and a challenge from every client that has not opted out."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge and grant.request.client.row.require_pkce:
            raise InvalidRequestError("code_challenge is required (PKCE, RFC 7636)")
        if challenge and method != "S256":
            # §4.2 allows "plain"; RFC 9700 §2.1.1 says use S256, and this server accepts only it.
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "none"]
    server: IdpServer

    def save_authorization_code(self, code: str, request: Any) -> None:
        data, session = request.payload.data, request.session
        ts = now()
        codes.save(
            self.server.db,
            code,
            client_id=request.client.client_id,
            user_id=request.user.id,
            sid=session.sid,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=session.auth_time,
            amr=session.amr,
            acr=session.acr,
            resources=audiences.requested(request.params),
            created_at=ts,
            expires_at=ts + self.server.settings.authorization_code_ttl_seconds,
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        # RFC 6749 §4.1.2: single use. Consuming here, in one conditional UPDATE, closes the gap
        # between "read" and "delete" that a second worker could slip through.
        db = self.server.db
        if "resource" in self.request.params.data:
            self._check_resources(code, client)
        row = codes.consume(db, code, client.client_id)
        if row is None:
            replayed = codes.used_before(db, code, client.client_id)
            if replayed is not None:
                self._revoke_tokens_of(replayed)
            return None
        if not sessions.is_live(db, row.sid, self.server.settings.session_idle_timeout_seconds):
            return None  # the user signed out (or timed out) before the code was redeemed
        return row

    def _check_resources(self, code: str, client: Any) -> None:
        """RFC 8707 §2.2: a `resource` outside what the grant was asked for is invalid_target,
        and refused before the code is consumed, so a mistaken request does not cost the
        client its code."""
        held, granted = codes.resources_of(self.server.db, code, client.client_id)
        if held:
            audiences.for_token(
                self.request.params, granted, client.row, self.server.settings.audience
            )

    def _revoke_tokens_of(self, replayed: AuthorizationCode) -> None:
        """RFC 6749 §4.1.2: a reused code SHOULD revoke every token issued from it."""
        db = self.server.db
        if replayed.token_jti and replayed.token_expires_at:
            revocations.revoke(db, replayed.token_jti, replayed.token_expires_at, "code_reused")
        if replayed.family_id:
            refresh_tokens.revoke_family(db, replayed.family_id, "code_reused")
        record(
            db,
            AuditEvent.CODE_REUSED,
            ip=self.request.ip,
            user_id=replayed.user_id,
            client_id=replayed.client_id,
        )

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: query_authorization_code consumed it."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = users.read(self.server.db, authorization_code.user_id)
        return user if user is not None and not user.disabled else None


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4, for confidential clients only, with the client's own scopes at most."""

    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client = self.request.client
        requested = self.request.payload.scope
        if not requested:
            # RFC 6749 §3.3: a missing scope means the pre-registered default: all of the client's
            # service scopes, which registration already keeps narrow.
            requested = " ".join(s for s in client.row.scopes if s not in USER_SCOPES)
        if USER_SCOPES & set(requested.split()):
            raise InvalidScopeError("client_credentials cannot grant user scopes")
        allowed = client.get_allowed_scope(requested) if requested else ""
        if allowed is None:
            raise InvalidScopeError("the client may not request this scope")
        self.request.scope = allowed

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        return 200, token, self.TOKEN_RESPONSE_HEADER
