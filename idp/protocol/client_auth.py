"""private_key_jwt client authentication (RFC 7523 §2.2, OIDC Core §9), on authlib's assertion
checker: we supply the keys, the audiences and the replay store."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from idp.audit import AuditEvent, record
from idp.protocol.jose import registry
from idp.store import assertions
from idp.store.base import now
from idp.store.clients import ClientProtocol

ASSERTION_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
# An assertion is meant to be used at once, and its jti is remembered until it expires, so a
# cap bounds the replay table. One hour, because authlib (a widely used client) signs its
# assertions for exactly that long; a replay is refused however long the assertion lives.
MAX_ASSERTION_LIFETIME = 3600
JWKS_CACHE_SECONDS = 300
JWKS_MIN_REFETCH_SECONDS = 10
JWKS_MAX_BYTES = 64 * 1024


class _RemoteJwksCache:
    """Clients' jwks_uri documents, cached per process (a cache of remote data, not our state).

    An assertion whose kid the cached document lacks triggers one early refetch, so a client
    that rotates its key is accepted at once rather than after JWKS_CACHE_SECONDS; refetches
    are at most one per JWKS_MIN_REFETCH_SECONDS per URI, so unknown kids cannot make this
    server hammer the client's host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # uri -> (fetched at, document), times from time.monotonic()
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, uri: str, kid: str | None = None) -> dict[str, Any]:
        with self._lock:
            hit = self._entries.get(uri)
        if hit is not None:
            age = time.monotonic() - hit[0]
            fresh = age < JWKS_CACHE_SECONDS
            if fresh and (kid is None or _has_kid(hit[1], kid) or age < JWKS_MIN_REFETCH_SECONDS):
                return hit[1]
        try:
            with httpx.Client(timeout=5.0, follow_redirects=False) as http:
                response = http.get(uri, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > JWKS_MAX_BYTES:
                raise ValueError(f"jwks_uri answered {response.status_code}")
            document: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidClientError(
                description="The client's jwks_uri could not be read."
            ) from exc
        with self._lock:
            self._entries[uri] = (time.monotonic(), document)
        return document


def _has_kid(document: dict[str, Any], kid: str) -> bool:
    keys = document.get("keys")
    return isinstance(keys, list) and any(isinstance(k, dict) and k.get("kid") == kid for k in keys)


REMOTE_JWKS = _RemoteJwksCache()


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, db: Session, issuer: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.db = db
        self.issuer = issuer
        self._ip: str | None = None
        self._kid: str | None = None

    def get_audiences(self) -> list[str]:
        # OIDC Core §9: the audience SHOULD be the token endpoint URL; the issuer is also accepted
        # (RFC 7523 §3, and what many client libraries send).
        return [self.issuer + "/token", self.issuer]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        kid = headers.get("kid") if isinstance(headers, dict) else None
        self._kid = kid if isinstance(kid, str) else None  # for a jwks_uri refetch on a new key
        return headers, claims

    def resolve_client_public_key(self, client: ClientProtocol) -> KeySet:
        row = client.row
        document = (
            row.jwks
            if row.jwks
            else REMOTE_JWKS.get(row.jwks_uri, self._kid)
            if row.jwks_uri
            else None
        )
        if not document:
            raise InvalidClientError(description="The client has no registered keys.")
        try:
            return KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise InvalidClientError(description="The client's keys are not valid.") from exc

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            # Asymmetric algorithms only: an HMAC or "none" assertion is never accepted.
            token = jwt.decode(assertion, resolve_key, registry=registry(*ASSERTION_ALGS))
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="The client assertion is not valid.") from exc
        self.verify_claims(token.claims)
        return token.claims

    def __call__(self, query_client: Any, request: Any) -> Any:
        self._ip = getattr(request, "ip", None)
        return super().__call__(query_client, request)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp - now() > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The client assertion lives too long.")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise InvalidClientError(description="The client assertion has no usable jti.")
        client_id = str(claims["sub"])
        if assertions.first_use(self.db, client_id, jti, int(exp) + 1):
            return True
        record(self.db, AuditEvent.CLIENT_ASSERTION_REPLAYED, ip=self._ip, client_id=client_id)
        return False
