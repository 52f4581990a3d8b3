"""Register and remove relying parties; a client secret is returned once and stored as a hash."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from idp.admin.client_uris import (
    InvalidRegistration as InvalidRegistration,  # re-exported: callers catch it from here
    check_audience,
    check_redirect_uri,
    check_url,
)
from idp.audit.events import AuditEvent, record
from idp.security.secrets import new_id, new_secret, sha256_hex
from idp.settings import SUPPORTED_ALGS
from idp.store import clients
from idp.store.clients import AUTH_METHODS, GRANT_TYPES, Client

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
MIN_TTL, MAX_TTL = 30, 86400


@dataclass
class ClientSpec:
    name: str
    grant_types: list[str]
    scopes: list[str]
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    public: bool = False
    auth_method: str | None = None
    jwks_uri: str | None = None
    jwks: dict[str, object] | None = None
    access_token_ttl: int | None = None
    require_pkce: bool = True
    trusted: bool = False
    id_token_signed_response_alg: str | None = None
    refresh_token_idle_ttl: int | None = None
    refresh_token_absolute_ttl: int | None = None
    can_introspect: bool = False
    backchannel_logout_uri: str | None = None
    access_token_audience: str | None = None


@dataclass
class Registered:
    client: Client
    client_secret: str | None  # shown once, never stored


def load_jwks_file(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRegistration(f"cannot read JWKS file {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidRegistration(f"{path} is not a JWK Set (no 'keys' list)")
    if any(isinstance(k, dict) and "d" in k for k in document["keys"]):
        raise InvalidRegistration(f"{path} holds a private key; register only public keys")
    return document


def _validate(spec: ClientSpec) -> str:
    """Check the whole registration; returns the token endpoint auth method."""
    if not spec.name.strip() or len(spec.name) > 200:
        raise InvalidRegistration("name must be 1 to 200 characters")
    if not spec.grant_types:
        raise InvalidRegistration("at least one --grant-type is required")
    for grant in spec.grant_types:
        if grant not in GRANT_TYPES:
            raise InvalidRegistration(
                f"unknown grant type {grant!r}; choose from {', '.join(GRANT_TYPES)}"
            )
    grants = set(spec.grant_types)
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise InvalidRegistration("refresh_token needs the authorization_code grant")
    for scope in spec.scopes:
        if not SCOPE_TOKEN.match(scope):
            raise InvalidRegistration(f"scope {scope!r} is not a valid scope token")
    if "authorization_code" in grants and not spec.redirect_uris:
        raise InvalidRegistration("authorization_code needs at least one --redirect-uri")
    for uri in spec.redirect_uris:
        check_redirect_uri(uri)
    for uri in spec.post_logout_redirect_uris:
        check_redirect_uri(uri, "post-logout redirect URI")
    method = spec.auth_method or ("none" if spec.public else "client_secret_basic")
    if method not in AUTH_METHODS:
        raise InvalidRegistration(f"unknown auth method {method!r}")
    if spec.public != (method == "none"):
        raise InvalidRegistration("a public client uses auth method none, and only it does")
    if spec.public and "client_credentials" in grants:
        raise InvalidRegistration("client_credentials is for confidential clients only")
    if spec.public and not spec.require_pkce:
        raise InvalidRegistration("a public client must use PKCE; --no-pkce is not allowed")
    if method == "private_key_jwt" and not (spec.jwks_uri or spec.jwks):
        raise InvalidRegistration("private_key_jwt needs --jwks-uri or --jwks-file")
    if spec.jwks_uri and spec.jwks:
        raise InvalidRegistration("give --jwks-uri or --jwks-file, not both")
    if spec.jwks_uri:
        check_url(spec.jwks_uri, "jwks_uri")
    if spec.backchannel_logout_uri:
        check_url(spec.backchannel_logout_uri, "backchannel_logout_uri")
        if "#" in spec.backchannel_logout_uri:
            raise InvalidRegistration("backchannel_logout_uri must not have a fragment")
    for ttl in (spec.refresh_token_idle_ttl, spec.refresh_token_absolute_ttl):
        if ttl is not None and not 60 <= ttl <= 365 * 86400:
            raise InvalidRegistration("refresh token lifetimes must be 60 s to 365 days")
    if (
        spec.refresh_token_idle_ttl or spec.refresh_token_absolute_ttl
    ) and "refresh_token" not in grants:
        raise InvalidRegistration("refresh token lifetimes need the refresh_token grant")
    if spec.access_token_audience is not None:
        check_audience(spec.access_token_audience)
    alg = spec.id_token_signed_response_alg
    if alg is not None and alg not in SUPPORTED_ALGS:
        raise InvalidRegistration(f"unsupported ID token algorithm {alg!r}")
    if spec.access_token_ttl is not None and not MIN_TTL <= spec.access_token_ttl <= MAX_TTL:
        raise InvalidRegistration(f"access token TTL must be {MIN_TTL} to {MAX_TTL} seconds")
    return method


def register(db: Session, spec: ClientSpec) -> Registered:
    method = _validate(spec)
    secret = new_secret() if method in ("client_secret_basic", "client_secret_post") else None
    client = clients.add(
        db,
        Client(
            client_id=new_id(18),
            name=spec.name.strip(),
            secret_hash=sha256_hex(secret) if secret else None,
            is_public=spec.public,
            auth_method=method,
            redirect_uris=list(dict.fromkeys(spec.redirect_uris)),
            post_logout_redirect_uris=list(dict.fromkeys(spec.post_logout_redirect_uris)),
            grant_types=list(dict.fromkeys(spec.grant_types)),
            scopes=list(dict.fromkeys(spec.scopes)),
            jwks_uri=spec.jwks_uri,
            jwks=spec.jwks,
            access_token_ttl=spec.access_token_ttl,
            require_pkce=spec.require_pkce,
            trusted=spec.trusted,
            id_token_signed_response_alg=spec.id_token_signed_response_alg,
            refresh_token_idle_ttl=spec.refresh_token_idle_ttl,
            refresh_token_absolute_ttl=spec.refresh_token_absolute_ttl,
            can_introspect=spec.can_introspect,
            backchannel_logout_uri=spec.backchannel_logout_uri,
            access_token_audience=spec.access_token_audience,
        ),
    )
    record(db, AuditEvent.CLIENT_CREATED, client_id=client.client_id, name=client.name)
    return Registered(client=client, client_secret=secret)


def remove(db: Session, client_id: str) -> bool:
    if not clients.remove(db, client_id):
        return False
    record(db, AuditEvent.CLIENT_DELETED, client_id=client_id)
    return True


def describe(client: Client) -> dict[str, object]:
    """A client as JSON, without its secret hash."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "token_endpoint_auth_method": client.auth_method,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "scopes": client.scopes,
        "jwks_uri": client.jwks_uri,
        "jwks": client.jwks,
        "access_token_ttl": client.access_token_ttl,
        "require_pkce": client.require_pkce,
        "trusted": client.trusted,
        "id_token_signed_response_alg": client.id_token_signed_response_alg or "RS256",
        "refresh_token_idle_ttl": client.refresh_token_idle_ttl,
        "refresh_token_absolute_ttl": client.refresh_token_absolute_ttl,
        "can_introspect": client.can_introspect,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "access_token_audience": client.access_token_audience,
        "created_at": client.created_at,
    }
