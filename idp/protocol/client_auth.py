"""Client authentication at the back-channel endpoints.

- `client_secret_basic` (RFC 6749 §2.3.1) with our own strict reading of the header: authlib's
  answers 500 for credentials that are not UTF-8.
- `one_method()`: RFC 6749 §2.3, one authentication method per request, and one client.
- private_key_jwt (RFC 7523 §2.2, OIDC Core §9), on authlib's assertion checker: we supply the
  keys, the audiences and the replay store."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from idp import outbound
from idp.audit.events import AuditEvent, record
from idp.protocol.client_jwks import usable
from idp.protocol.jose import registry
from idp.protocol.requests import Params
from idp.store import assertions, clients
from idp.store.base import now
from idp.store.clients import ClientProtocol

log = logging.getLogger("idp.client_auth")

ASSERTION_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
# An assertion is meant to be used at once, and its jti is remembered until it expires, so a
# cap bounds the replay table. One hour, because authlib (a widely used client) signs its
# assertions for exactly that long; a replay is refused however long the assertion lives.
MAX_ASSERTION_LIFETIME = 3600
JWKS_CACHE_SECONDS = 300
# The whole fetch of a jwks_uri, read at each call (tests lower it).
JWKS_FETCH_DEADLINE = outbound.JWKS_DEADLINE
# How long a request waits for another request's fetch of the same jwks_uri before it gives
# up: a healthy host answers well within it, and a crowd of requests naming a client whose host
# drips cannot hold the shared threadpool for a whole deadline each.
JWKS_WAIT_SECONDS = 0.25
# Also how long a failed fetch is remembered: a client whose host is down or dripping fails fast
# instead of holding a thread for the whole deadline on every request.
JWKS_MIN_REFETCH_SECONDS = 10


_Key = tuple[str, outbound.OutboundPolicy]


class _RemoteJwksCache:
    """Clients' jwks_uri documents, cached per process (a cache of remote data, not our state).

    An assertion whose kid the cached document lacks triggers one early refetch, so a client
    that rotates its key is accepted at once rather than after JWKS_CACHE_SECONDS; refetches
    are at most one per JWKS_MIN_REFETCH_SECONDS per URI, so unknown kids cannot make this
    server hammer the client's host. One fetch per URI at a time. Entries are per address
    policy too: apps with different IDP_OUTBOUND_ALLOWED_NETWORKS in one process (tests) never
    see a document another's policy let through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (uri, policy) -> (fetched at, document or the error), times from time.monotonic()
        self._entries: dict[_Key, tuple[float, dict[str, Any] | str]] = {}
        self._fetching: dict[_Key, threading.Lock] = {}

    def get(
        self, uri: str, policy: outbound.OutboundPolicy, kid: str | None = None
    ) -> dict[str, Any]:
        """The document, or InvalidClientError; fetched through idp.outbound when due."""
        key = (uri, policy)
        if (hit := self._fresh(key, kid)) is not None:
            return self._answer(hit)
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        if not fetching.acquire(timeout=JWKS_WAIT_SECONDS):
            raise InvalidClientError(description="The client's jwks_uri could not be read.")
        try:
            if (hit := self._fresh(key, kid, just_fetched=True)) is not None:
                return self._answer(hit)
            try:
                entry: dict[str, Any] | str = outbound.fetch_json(
                    uri, policy, deadline=JWKS_FETCH_DEADLINE
                )
            except outbound.OutboundError as exc:
                log.warning("jwks_uri %s: %s", uri, exc)
                entry = str(exc)
            with self._lock:
                self._entries[key] = (time.monotonic(), entry)
        finally:
            fetching.release()
        return self._answer(entry)

    def _fresh(
        self, key: _Key, kid: str | None, just_fetched: bool = False
    ) -> dict[str, Any] | str | None:
        with self._lock:
            hit = self._entries.get(key)
        if hit is None:
            return None
        age, entry = time.monotonic() - hit[0], hit[1]
        if age < JWKS_MIN_REFETCH_SECONDS:
            return entry  # fetched a moment ago (perhaps by the thread we waited for)
        if just_fetched or age >= JWKS_CACHE_SECONDS or isinstance(entry, str):
            return None
        return entry if kid is None or _has_kid(entry, kid) else None

    @staticmethod
    def _answer(entry: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(entry, str):
            raise InvalidClientError(description="The client's jwks_uri could not be read.")
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _has_kid(document: dict[str, Any], kid: str) -> bool:
    keys = document.get("keys")
    return isinstance(keys, list) and any(isinstance(k, dict) and k.get("kid") == kid for k in keys)


REMOTE_JWKS = _RemoteJwksCache()


# --- client_secret_basic and the one-method rule ------------------------------------------------


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: the client id and secret of an `Authorization: Basic` header, each
    form-urlencoded (Appendix B) inside the base64; None when there is no Basic header.

    Strict where authlib is lax: base64 that is not canonical, credentials that are not UTF-8
    (raw or percent-encoded), no colon, or an empty id or secret raise InvalidClientError: the
    request carried credentials and they cannot authenticate anyone."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        raw_id, colon, raw_secret = decoded.partition(":")
        client_id = unquote(raw_id, errors="strict")  # as authlib: "+" stays "+"
        secret = unquote(raw_secret, errors="strict")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InvalidClientError(description="The Basic credentials are malformed.") from None
    if not colon or not client_id or not secret:
        raise InvalidClientError(description="The Basic credentials are malformed.")
    return client_id, secret


def basic_client_id(headers: Mapping[str, str]) -> str | None:
    """The client id of a well-formed Basic header, for the audit trail; never raises."""
    try:
        credentials = basic_credentials(headers)
    except InvalidClientError:
        return None
    return credentials[0] if credentials else None


def authenticate_client_secret_basic(query_client: Any, request: Any) -> Any:
    """authlib's `client_secret_basic`, on `basic_credentials()`."""
    credentials = basic_credentials(request.headers)
    if credentials is None:
        return None
    client = query_client(credentials[0])
    if client is None:
        raise InvalidClientError(status_code=401, description="The client does not exist.")
    return client if client.check_client_secret(credentials[1]) else None


def methods_used(headers: Mapping[str, str], params: Params) -> list[str]:
    """The client authentication methods a request attempts: any Authorization header counts
    (a Bearer token is not a client credential here either)."""
    used = []
    if headers.get("authorization"):
        used.append("header")
    if "client_secret" in params.data:
        used.append("client_secret")
    if "client_assertion" in params.data or "client_assertion_type" in params.data:
        used.append("client_assertion")
    return used


def one_method(headers: Mapping[str, str], params: Params) -> None:
    """RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    request." Also one client: a body client_id beside Basic credentials must name the same
    client (§3.2.1 lets an authenticating client send it; two different ids make the request
    contradictory, which §5.2 calls invalid_request, "otherwise malformed"). Checked before any
    method is tried, so no method's answer depends on which one authlib happens to try first."""
    if len(methods_used(headers, params)) > 1:
        raise InvalidRequestError("use exactly one client authentication method")
    # The Basic header is decoded here only when the body names a client too: the usual
    # request (/token with Basic alone) pays for one decoding, authlib's.
    body_id = params.get("client_id")
    if body_id is not None and basic_client_id(headers) not in (None, body_id):
        raise InvalidRequestError("client_id differs from the Basic credentials")


@dataclass(frozen=True)
class RemoteKeys:
    """The jwks_uri document of the client an assertion names, read before any transaction."""

    client_id: str
    document: dict[str, Any] | None  # None: the fetch failed


@dataclass(frozen=True)
class _Unverified:
    """What an assertion says of itself, read without checking anything: it only decides
    whether and where to fetch keys; the signature is checked against those keys later."""

    iss: str | None
    sub: str | None
    kid: str | None
    alg: str | None


def _unverified(assertion: str) -> _Unverified:
    try:
        parsed = jws.extract_compact(assertion.encode())
        claims = json.loads(parsed.payload)
    except (JoseError, ValueError, RecursionError):
        return _Unverified(None, None, None, None)
    if not isinstance(claims, dict):
        claims = {}

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    header = parsed.protected
    return _Unverified(
        text(claims.get("iss")),
        text(claims.get("sub")),
        text(header.get("kid")),
        text(header.get("alg")),
    )


def asserted_client(assertion: str) -> str | None:
    """The client a client_assertion claims to come from (its `iss`), unverified."""
    return _unverified(assertion).iss if len(assertion) <= 8192 else None


@dataclass(frozen=True)
class KeysLocation:
    """Where the keys of the client a client_assertion names are to be fetched from."""

    client_id: str
    jwks_uri: str
    kid: str | None


def keys_location(db: Session, form: Params) -> KeysLocation | None:
    """The jwks_uri of the client a client_assertion names; None when nothing is to be fetched.

    Nothing is fetched for an assertion that could not authenticate anyway, so a stranger
    cannot make this server call arbitrary registered hosts: the assertion type must be
    RFC 7523's, `iss` and `sub` must both name the client (RFC 7523 §3, OIDC Core §9), a body
    client_id must name it too, the header's `alg` must be one we verify, and the client must
    be registered for private_key_jwt with a jwks_uri (not inline keys)."""
    assertion = form.get("client_assertion") or ""
    if len(assertion) > 8192 or form.get("client_assertion_type") != JWT_BEARER:
        return None
    said = _unverified(assertion)
    client_id = said.iss
    if not client_id or len(client_id) > 64 or said.sub != client_id:
        return None
    if form.get("client_id") not in (None, client_id) or said.alg not in ASSERTION_ALGS:
        return None
    row = clients.get_record(db, client_id)
    if row is None or row.auth_method != "private_key_jwt" or row.jwks or not row.jwks_uri:
        return None
    return KeysLocation(client_id, row.jwks_uri, said.kid)


def fetch_client_keys(where: KeysLocation, policy: outbound.OutboundPolicy) -> RemoteKeys:
    """The client's keys from its jwks_uri (cached), or the reason they could not be read.
    Called with no transaction open: the network wait holds no database resource at all."""
    try:
        return RemoteKeys(where.client_id, REMOTE_JWKS.get(where.jwks_uri, policy, where.kid))
    except InvalidClientError:
        return RemoteKeys(where.client_id, None)


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, db: Session, issuer: str, remote: RemoteKeys | None) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.db = db
        self.issuer = issuer
        self.remote = remote
        self._ip: str | None = None

    def get_audiences(self) -> list[str]:
        # OIDC Core §9: the audience SHOULD be the token endpoint URL; the issuer is also accepted
        # (RFC 7523 §3, and what many client libraries send).
        return [self.issuer + "/token", self.issuer]

    def resolve_client_public_key(self, client: ClientProtocol) -> KeySet:
        row = client.row
        document = row.jwks
        if not document and row.jwks_uri:
            # Fetched before the transaction began (deps.ClientKeys): never a network wait here.
            remote = self.remote
            if remote is None or remote.client_id != client.client_id:
                raise InvalidClientError(description="The client's keys were not fetched.")
            if remote.document is None:
                raise InvalidClientError(description="The client's jwks_uri could not be read.")
            document = remote.document
        if not document:
            raise InvalidClientError(description="The client has no registered keys.")
        # Weak, symmetric and private keys are left out (idp.protocol.client_jwks); registration
        # refuses them, but a fetched document is whatever the client's host serves.
        document = usable(document, client.client_id)
        if not document["keys"]:
            raise InvalidClientError(description="The client's keys are not valid.")
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
