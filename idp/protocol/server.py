"""authlib's AuthorizationServer for this IdP, built per request around that request's DB session.

Building it costs a few microseconds; in exchange no server object outlives a request and none
holds a session that another thread could touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError, OAuth2Error
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response

from idp.audit.events import AuditEvent, record, record_all
from idp.authn import mfa, throttle
from idp.errors import NO_STORE, ServerError, TemporarilyUnavailable, oauth_json
from idp.keys.ring import DEFAULT_ALG
from idp.ops import logs, metrics
from idp.protocol import audiences
from idp.protocol.claims import ROLES_SCOPE
from idp.protocol.client_auth import (
    PrivateKeyJwt,
    RemoteKeys,
    asserted_client,
    authenticate_client_secret_basic,
    basic_client_id,
)
from idp.protocol.grants import AuthorizationCodeGrant, ClientCredentialsGrant, S256CodeChallenge
from idp.protocol.oidc import OpenIDCode
from idp.protocol.refresh import Presented, RefreshTokenGrant, start_family
from idp.protocol.requests import IdpRequest
from idp.protocol.tokens import ADMIN_SCOPES, IssuedAccessToken, token_service
from idp.runtime import Runtime
from idp.store import clients, codes, refresh_tokens, roles
from idp.store.clients import Client, ClientProtocol
from idp.store.driver import Target
from idp.store.refresh_tokens import TokenFamily
from idp.store.roles import ADMIN


def is_client_id(client_id: object) -> bool:
    """RFC 6749 Appendix A.1: a client id is printable ASCII (VSCHAR), here of 64 characters at
    most; anything else names no client, and is never sent to the database (PostgreSQL refuses
    a NUL in text)."""
    return (
        isinstance(client_id, str)
        and 0 < len(client_id) <= 64
        and client_id.isascii()
        and client_id.isprintable()  # %x20-7E
    )


@dataclass(frozen=True)
class KnownClient:
    """A client's row as read before the grant began (None: no such client)."""

    client_id: str
    record: Client | None


class NotRead(Exception):
    """The grant asked for a client other than the one read before it began: nothing was done,
    and the grant must be made again where it can read (in a thread)."""


class IdpServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        runtime: Runtime,
        db: Session,
        remote_keys: RemoteKeys | None = None,
        read_only: bool = False,
        reader: Target | None = None,
        known_client: KnownClient | None = None,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.settings = runtime.settings
        self.tokens = token_service(runtime)
        self.db = db
        # Client lookups go to a bare connection when the caller has one (the hot path).
        self.reader: Target = reader if reader is not None else db
        # The client's row, read before (awaited on the loop): this server reads no other.
        self.known_client = known_client
        # A read-only unit of work keeps its audit events for the caller to write afterwards.
        self.read_only = read_only
        self.deferred_events: list[dict[str, Any]] = []
        # The client id and address of a failed authentication the throttle must still count.
        self.deferred_failure: tuple[str | None, str | None] | None = None
        self.issued: IssuedAccessToken | None = None
        # The client the access token went to: its last_used_day is written after the response.
        self.issued_to: str | None = None
        self.register_grant(
            AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDCode()]
        )
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(RefreshTokenGrant)
        self.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
        self.register_client_auth_method(
            "private_key_jwt", PrivateKeyJwt(db, self.settings.issuer, remote_keys)
        )
        self.register_token_generator("default", self._generate_token)

    # --- the questions authlib asks -------------------------------------------------------------

    def query_client(self, client_id: str) -> ClientProtocol | None:
        if not is_client_id(client_id):
            return None
        known = self.known_client
        if known is None:
            row = clients.get_record(self.reader, client_id)
        elif client_id == known.client_id:
            row = known.record
        else:
            raise NotRead(client_id)
        return ClientProtocol(row) if row is not None else None

    def save_token(self, token: dict[str, Any], request: IdpRequest) -> None:
        # Access tokens are self-contained JWTs: nothing is written for them, except links that
        # let a code replay or a revoked refresh-token family revoke them (by jti).
        issued = self.issued
        assert issued is not None
        code, client = request.authorization_code, request.client
        if code is not None:
            family_id = None
            if client.check_grant_type("refresh_token") and "offline_access" in code.scope.split():
                family, token["refresh_token"] = start_family(self, client, code)
                family_id = family.id
                refresh_tokens.link_access_token(self.db, family.id, issued.jti, issued.expires_at)
            codes.record_issued_token(self.db, code, issued.jti, issued.expires_at, family_id)
        elif isinstance(request.refresh_token, Presented):
            family_id = request.refresh_token.family.id
            refresh_tokens.link_access_token(self.db, family_id, issued.jti, issued.expires_at)

    def id_token(self, client: ClientProtocol, claims: dict[str, Any], access_token: str) -> str:
        """An ID token in the client's registered algorithm (OIDC Registration §2)."""
        alg = client.row.id_token_signed_response_alg or DEFAULT_ALG
        if alg not in self.settings.enabled_algs:
            # The operator turned the algorithm off after registering the client.
            raise ServerError(f"ID token algorithm {alg} is not enabled on this server")
        return self.tokens.id_token(claims, access_token, alg)

    def id_token_for(self, client: ClientProtocol, family: TokenFamily, access_token: str) -> str:
        """OIDC Core §12.2: a refreshed ID token keeps sub, aud, auth_time, sid, amr and acr."""
        claims = {
            "sub": family.user_id,
            "aud": client.client_id,
            "azp": client.client_id,
            "auth_time": family.auth_time,
            "sid": family.sid,
            "amr": family.amr,
            "acr": family.acr,
        }
        return self.id_token(client, claims, access_token)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal bus; audit events are written where the decision is made."""

    def create_oauth2_request(self, request: IdpRequest) -> IdpRequest:
        self.request = request  # the one request this server serves: _generate_token reads it
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        merged = {**dict(headers), **NO_STORE}
        if isinstance(body, dict):
            merged.pop("Content-Type", None)
            return JSONResponse(body, status_code=status, headers=merged)
        return Response(body or b"", status_code=status, headers=merged)

    def handle_error_response(self, request: IdpRequest, error: OAuth2Error) -> Response:
        if isinstance(error, InvalidClientError):
            return self.client_auth_failed(request, error)
        return super().handle_error_response(request, error)  # type: ignore[no-any-return]

    def client_auth_failed(self, request: IdpRequest, error: InvalidClientError) -> Response:
        # RFC 6749 §5.2: 401 with WWW-Authenticate. One description for every cause, so the
        # answer does not tell an attacker which client ids exist.
        client_id = basic_client_id(request.headers) or request.payload.data.get("client_id")
        if not client_id and (assertion := request.payload.data.get("client_assertion")):
            client_id = asserted_client(assertion)  # unverified: only to name it in the trail
        client_id = (client_id or "")[:64] or None
        event: dict[str, Any] = {
            "event": AuditEvent.CLIENT_AUTH_FAILED,
            "ip": request.ip,
            "client_id": client_id,
            "reason": error.description or "",
        }
        if self.read_only:
            # Counted by write_deferred(), which may still turn this answer into a 429.
            self.deferred_events.append(event)
            self.deferred_failure = (client_id, request.ip)
            return oauth_json(error)
        record(self.db, **event)
        retry_after = throttle.client_failed(self.db, self.settings, client_id, request.ip)
        if retry_after is not None:
            return TemporarilyUnavailable(retry_after).response()
        return oauth_json(error)

    def write_deferred(self, db: Session) -> Response | None:
        """Write what a read-only unit of work kept for later, in the caller's write
        transaction: its audit events, and a failed authentication for the throttle. Returns
        the 429 that replaces the 401 when the client's budget at that address is used up."""
        record_all(db, self.deferred_events)
        if self.deferred_failure is None:
            return None
        client_id, ip = self.deferred_failure
        retry_after = throttle.client_failed(db, self.settings, client_id, ip)
        return TemporarilyUnavailable(retry_after).response() if retry_after is not None else None

    # --- tokens -----------------------------------------------------------------------------------

    def _sign_in_acr(self) -> str | None:
        """The acr of the sign-in behind a user's token: its code's, or its refresh family's."""
        request = getattr(self, "request", None)
        if request is None:
            return None
        if request.authorization_code is not None:
            return str(request.authorization_code.acr)
        if isinstance(request.refresh_token, Presented):
            return str(request.refresh_token.family.acr)
        return None

    def _granted_resources(self) -> list[str] | None:
        """RFC 8707: the resources the grant behind this token was asked for (None: none, or a
        client_credentials grant, which has nothing but the client's registration)."""
        request = self.request
        if request.authorization_code is not None:
            return request.authorization_code.resources  # type: ignore[no-any-return]
        if isinstance(request.refresh_token, Presented):
            return request.refresh_token.family.resources
        return None

    def _generate_token(
        self,
        grant_type: str,
        client: ClientProtocol,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        ttl = client.row.access_token_ttl or self.settings.access_token_ttl_seconds
        # Read at every issue, so a role change reaches the next refresh; client_credentials
        # tokens (no user) skip the query and stay one read.
        held = roles.of(self.db, user.id) if user is not None else None
        acr = self._sign_in_acr() if user is not None else None
        if held is not None and scope:
            scope = admin_scopes_allowed(scope, held, acr)
        if scope and ADMIN_SCOPES.intersection(scope.split()):
            # Power over the IdP is short-lived: a taken-away right outlives it by minutes.
            ttl = min(ttl, ADMIN_TOKEN_TTL)
        issued = self.tokens.access_token(
            subject=user.id if user is not None else client.client_id,
            client_id=client.client_id,
            scope=scope or "",
            ttl=ttl,
            audiences=audiences.for_token(
                self.request.params, self._granted_resources(), client.row, self.settings.audience
            ),
            roles=released_roles(held, scope or "", client.row.roles_visible),
            acr=acr,
        )
        self.issued = issued
        self.issued_to = client.client_id
        logs.note(client_id=client.client_id, user_id=user.id if user is not None else None)
        metrics.token_issued(grant_type, client.row.is_public)
        token: dict[str, Any] = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": ttl,
        }
        if scope:
            token["scope"] = scope
        return token


def released_roles(
    held: list[str] | None, scope: str, visible: list[str] | None
) -> list[str] | None:
    """The roles an access token lists: only under the `roles` scope, which the person
    consented to, and only those the client may see (None: every role)."""
    if not held or ROLES_SCOPE not in scope.split():
        return None
    return [r for r in held if visible is None or r in visible] or None


# The longest an access token with an admin scope lives, whatever the client's TTL.
ADMIN_TOKEN_TTL = 300


def admin_scopes_allowed(scope: str, held_roles: list[str], acr: str | None) -> str:
    """The scope without the admin API's scopes unless the user holds the admin role now and
    signed in with two factors (RFC 6749 §3.3: the server may issue less than asked, and says
    so in the token response's `scope`). A role taken away also narrows the next refresh."""
    scopes = scope.split()
    if not ADMIN_SCOPES.intersection(scopes):
        return scope
    if ADMIN in held_roles and mfa.rank(acr) >= mfa.rank(mfa.AAL2):
        return scope
    return " ".join(s for s in scopes if s not in ADMIN_SCOPES)
