"""The admin API's request and response bodies: FastAPI documents them in the OpenAPI 3.1
document, and checks every request against them (strictly: "true" is not a boolean here).

Client fields carry their RFC 7591 §2 names, as the admin services take them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(extra="forbid", strict=True)

_TTL = "seconds"


class Finding(BaseModel):
    code: str = Field(description="a stable slug")
    severity: str = Field(description="high, medium or low")
    message: str
    fix: str = Field(description="how to fix it")


class LogoFacts(BaseModel):
    content_type: str
    sha256: str
    bytes: int


class ClientFields(BaseModel):
    """Client metadata that may be set at registration and changed later."""

    model_config = STRICT

    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    grant_types: list[str] | None = Field(
        default=None, description="authorization_code, refresh_token, client_credentials"
    )
    scope: str | None = Field(default=None, description="space-separated scope values")
    token_endpoint_auth_method: str | None = Field(
        default=None, description="client_secret_basic, client_secret_post, private_key_jwt or none"
    )
    jwks: dict[str, Any] | None = Field(default=None, description="a JWK Set of public keys")
    jwks_uri: str | None = None
    backchannel_logout_uri: str | None = None
    logo_uri: str | None = None
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None
    require_pkce: bool | None = None
    trusted: bool | None = Field(
        default=None, description="first-party: its users are not asked to consent"
    )
    require_mfa: bool | None = None
    can_introspect: bool | None = None
    access_token_ttl: int | None = Field(default=None, description=_TTL)
    refresh_token_idle_ttl: int | None = Field(default=None, description=_TTL)
    refresh_token_absolute_ttl: int | None = Field(default=None, description=_TTL)
    id_token_signed_response_alg: str | None = None
    audiences: list[str] | None = Field(
        default=None,
        description="the audiences its access tokens may be for (RFC 8707 resource), the first"
        " its default; null: the server-wide one",
    )
    roles_visible: list[str] | None = Field(
        default=None, description="the roles its access tokens may list; null: every role"
    )
    resources: list[str] | None = Field(
        default=None,
        description="with can_introspect: the audiences it serves; null: the server-wide one",
    )


class ClientRegistration(ClientFields):
    """RFC 7591 §2 client metadata for a new client; RFC 7591's defaults apply to what is
    left out (grant_types authorization_code, token_endpoint_auth_method client_secret_basic)."""

    client_name: str


class ClientUpdate(ClientFields):
    """The fields to change; a field left out stays as it is, null clears an optional one."""

    client_name: str | None = None


class ClientOut(BaseModel):
    client_id: str
    client_name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scope: str
    token_endpoint_auth_method: str
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    backchannel_logout_uri: str | None
    logo_uri: str | None
    client_uri: str | None
    policy_uri: str | None
    tos_uri: str | None
    require_pkce: bool
    trusted: bool
    require_mfa: bool
    can_introspect: bool
    access_token_ttl: int | None
    refresh_token_idle_ttl: int | None
    refresh_token_absolute_ttl: int | None
    id_token_signed_response_alg: str | None
    audiences: list[str] | None
    roles_visible: list[str] | None
    resources: list[str] | None
    public: bool
    disabled: bool
    secret_created_at: int | None
    previous_secret_expires_at: int | None = Field(
        description="until when the secret rotated out still works"
    )
    last_used_day: int | None = Field(description="the last day (Unix days) it got a token")
    logo: LogoFacts | None
    client_id_issued_at: int
    lint: list[Finding] = Field(description="the security linter's findings, worst first")


class ClientCreated(ClientOut):
    client_secret: str | None = Field(
        description="shown this once, never again; null for public and private_key_jwt clients"
    )


class ClientPage(BaseModel):
    items: list[ClientOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Reason(BaseModel):
    model_config = STRICT

    reason: str = Field(default="admin_api", max_length=64, description="kept in the audit trail")


class SecretRotation(BaseModel):
    model_config = STRICT

    overlap_seconds: int = Field(
        default=86400, ge=0, le=30 * 86400, description="how long the old secret keeps working"
    )


class SecretRotated(BaseModel):
    client_id: str
    client_secret: str = Field(description="shown this once, never again")
    previous_secret_expires_at: int | None


class Revoked(BaseModel):
    """What a revocation ended: tokens issued before `epoch` are refused everywhere."""

    sessions: int
    refresh_token_families: int
    epoch: int


def revoked(what: Any) -> dict[str, int]:
    """A Revoked answer from what idp.admin.revocation returned."""
    return {
        "sessions": what.sessions,
        "refresh_token_families": what.families,
        "epoch": what.epoch,
    }


class PendingChangeOut(BaseModel):
    """A sensitive change (the admin role, an admin API scope) waiting for a second
    administrator; it takes effect only when approved, within 24 hours of the request."""

    id: str
    kind: str = Field(description="role_grant or client_scopes")
    status: str = Field(description="pending, approved, rejected or expired")
    summary: str
    user_id: str | None
    client_id: str | None
    role: str | None
    scopes: list[str] | None = Field(description="the scopes a client_scopes change adds")
    grant_until: int | None = Field(description="the end of a time-boxed grant; null: none")
    requested_by: str = Field(description="the audit actor who asked")
    requested_at: int
    expires_at: int = Field(description="after this, it can no longer be approved")
    decided_by: str | None
    decided_at: int | None


class PendingChangePage(BaseModel):
    items: list[PendingChangeOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class ClientCreatedPending(BaseModel):
    """202: the client is registered without the admin scopes, which wait for approval."""

    client: ClientCreated
    pending_change: PendingChangeOut


class ClientUpdatedPending(BaseModel):
    """202: the other changes applied; the admin scopes added wait for approval."""

    client: ClientOut
    pending_change: PendingChangeOut


class StateChange(BaseModel):
    changed: bool = Field(description="false when it already was so")


class Mfa(BaseModel):
    authenticator_app: bool
    passkeys: int
    recovery_codes: int


class RoleGrant(BaseModel):
    role: str
    expires_at: int | None = Field(description="when a time-boxed grant ends; null: until revoked")


class GrantIn(BaseModel):
    model_config = STRICT

    expires_in: int | None = Field(
        default=None,
        ge=60,
        le=365 * 86400,
        description="time-box the grant: it ends this many seconds from now",
    )


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    email_verified: bool
    disabled: bool
    password_change_required: bool
    roles: list[str]
    role_grants: list[RoleGrant]
    mfa: Mfa
    sessions: int = Field(description="browsers signed in now")
    created_at: int
    updated_at: int


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class NewUser(BaseModel):
    model_config = STRICT

    email: str
    password: str = Field(description="the policy's minimum length applies; never stored")
    name: str | None = None
    roles: list[str] = []


class RoleCount(BaseModel):
    role: str
    users: int


class KeyOut(BaseModel):
    kid: str
    alg: str
    state: str = Field(description="staged, active, retired or revoked")
    published: bool
    created_at: int
    activates_at: int | None
    activated_at: int | None
    retired_at: int | None
    remove_after: int | None
    revoked_at: int | None
    public_jwk: dict[str, Any]


class KeyRotation(BaseModel):
    model_config = STRICT

    alg: str = "RS256"
    now: bool = Field(default=False, description="emergency: sign with the new key at once")


class KeyRevoked(BaseModel):
    kid: str
    replacement: KeyOut | None = Field(description="the key that signs now, if it was signing")


class EventOut(BaseModel):
    id: int
    at: int
    event: str
    actor: str | None
    user_id: str | None
    client_id: str | None
    ip: str | None
    detail: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class Problem(BaseModel):
    """RFC 6749 §5.2 / RFC 6750 §3 error; `fields` names each field in error."""

    error: str
    error_description: str | None = None
    fields: dict[str, str] | None = None
