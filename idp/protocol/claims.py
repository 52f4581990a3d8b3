"""Which scope releases which claims (OIDC Core §5.4), and the userinfo payload."""

from __future__ import annotations

from typing import Any

from idp.store.users import User

# Scopes that act on behalf of a person; a service (client_credentials) may not ask for them.
USER_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
STANDARD_SCOPES = ("openid", "profile", "email", "offline_access", "roles")
# The scope under which an access token lists the user's roles (RFC 9068 §2.2.3.1).
ROLES_SCOPE = "roles"

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "updated_at"),
    "email": ("email", "email_verified"),
}

def user_claims(user: User, scopes: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        if user.name:
            claims["name"] = user.name
        claims["updated_at"] = user.updated_at
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims


def supported_claims() -> list[str]:
    return [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        *[c for claims in SCOPE_CLAIMS.values() for c in claims],
    ]
