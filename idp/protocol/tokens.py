"""JWTs this IdP signs: RFC 9068 access tokens and OpenID Connect ID tokens."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import JoseError

from idp.keys.ring import DEFAULT_ALG, KeyRing
from idp.protocol.jose import registry
from idp.security.secrets import new_id
from idp.settings import Settings

if TYPE_CHECKING:
    from idp.runtime import Runtime

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a media type, not a secret)
# The admin API's scopes: full access, and read-only. A token carrying either is for the admin
# API (its audience), and a person gets one only as an admin signed in with two factors.
ADMIN_SCOPE = "idp:admin"
ADMIN_READ_SCOPE = "idp:admin.read"
ADMIN_SCOPES = frozenset({ADMIN_SCOPE, ADMIN_READ_SCOPE})
# Every algorithm a token of ours may carry; a token claiming another is refused outright.
VERIFY_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int
    expires_at: int


class BadToken(Exception):
    """A token that is malformed, not ours, expired or of the wrong type."""


def half_hash(value: str, alg: str = DEFAULT_ALG) -> str:
    """OIDC Core §3.1.3.6 at_hash: the left half of the alg's hash, base64url. The *256
    algorithms hash with SHA-256; EdDSA over Ed25519 with SHA-512."""
    hasher = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    digest = hasher(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class TokenService:
    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.settings = settings
        self.keys = keys
        self.issuer = settings.issuer
        self.audience = settings.audience
        self.admin_audience = settings.admin_api_audience

    def access_token(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        ttl: int,
        auth_time: int | None = None,
        audiences: list[str] | None = None,
        roles: list[str] | None = None,
        acr: str | None = None,
    ) -> IssuedAccessToken:
        """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, plus scope, the user's
        roles (§2.2.3.1) when there are any, and the sign-in's acr (§2.2.1)."""
        alg = self.settings.access_token_alg
        kid, key = self.keys.signing_key(alg)
        iat = int(time.time())
        jti = new_id()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self._audience_of(audiences, scope),
            "exp": iat + ttl,
            "iat": iat,
            "jti": jti,
            "client_id": client_id,
            "scope": scope,
        }
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if roles:
            claims["roles"] = roles
        if acr is not None:
            claims["acr"] = acr
        header = {"alg": alg, "kid": kid, "typ": ACCESS_TOKEN_TYP}
        token = jwt.encode(header, claims, key, registry=registry(alg))
        return IssuedAccessToken(token=token, jti=jti, expires_in=ttl, expires_at=iat + ttl)

    def _audience_of(self, resources: list[str] | None, scope: str) -> str | list[str]:
        """The resource servers the token is for (RFC 8707; None: the server-wide default),
        plus this server's own audience when the token also has to open the userinfo endpoint
        (scope openid), plus the admin API's when it carries an admin scope. A token with admin
        scopes and nothing else (an admin service's) is for the admin API alone."""
        scopes = scope.split()
        admin = [self.admin_audience] if ADMIN_SCOPES.intersection(scopes) else []
        if admin and not set(scopes) - ADMIN_SCOPES:
            return admin[0]
        # The API the token is for (the client's, else the server-wide default), and
        # userinfo's own audience, the issuer, only when it is to open userinfo.
        audiences = list(resources or [self.audience])
        if "openid" in scopes and self.issuer not in audiences:
            audiences.append(self.issuer)
        audiences += admin
        return audiences[0] if len(audiences) == 1 else audiences

    def id_token(
        self, claims: dict[str, Any], access_token: str | None, alg: str = DEFAULT_ALG
    ) -> str:
        """OIDC Core §2 and §3.1.3.6; `claims` brings sub, aud, auth_time, nonce, sid, amr, acr."""
        kid, key = self.keys.signing_key(alg)
        iat = int(time.time())
        body = {
            "iss": self.issuer,
            "iat": iat,
            "exp": iat + self.settings.id_token_ttl_seconds,
            **{k: v for k, v in claims.items() if v is not None},
        }
        if access_token:
            body["at_hash"] = half_hash(access_token, alg)
        return jwt.encode({"alg": alg, "kid": kid, "typ": "JWT"}, body, key, registry=registry(alg))

    def logout_token(self, claims: dict[str, Any], ttl: int) -> str:
        """Back-Channel Logout 1.0 §2.4, typed `logout+jwt` so it cannot pass for an ID token."""
        kid, key = self.keys.signing_key(DEFAULT_ALG)
        iat = int(time.time())
        body = {"iss": self.issuer, "iat": iat, "exp": iat + ttl, **claims}
        header = {"alg": DEFAULT_ALG, "kid": kid, "typ": "logout+jwt"}
        return jwt.encode(header, body, key, registry=registry(DEFAULT_ALG))

    def _decode(self, token: str) -> jwt.Token:
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
            raise BadToken("malformed token")
        try:
            return jwt.decode(
                token, self.keys.snapshot().verifying, registry=registry(*VERIFY_ALGS)
            )
        except (JoseError, ValueError, TypeError) as exc:
            raise BadToken("signature or format not valid") from exc

    def verify_access_token(
        self, token: str, any_audience: bool = False, audience: str | None = None
    ) -> dict[str, Any]:
        """Signature, typ (RFC 9068 §4), iss, aud and exp; the caller checks revocation.

        Userinfo needs a token meant for it (the issuer, its own audience whatever
        IDP_ACCESS_TOKEN_AUDIENCE says), the admin API one for its `audience`;
        introspection and revocation act on tokens for any audience (RFC 7662 §2.2 returns
        `aud` for the resource server to check)."""
        decoded = self._decode(token)
        typ = str(decoded.header.get("typ", "")).lower()
        if typ not in (ACCESS_TOKEN_TYP, "application/" + ACCESS_TOKEN_TYP):
            raise BadToken("not an access token")
        claims = decoded.claims
        rules = jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": self.issuer},
            aud={
                "essential": True,
                **({} if any_audience else {"value": audience or self.issuer}),
            },
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
        )
        try:
            rules.validate(claims)
        except JoseError as exc:
            raise BadToken(exc.description or "claims not valid") from exc
        return claims

    def verify_id_token_hint(self, token: str, client_id: str | None = None) -> dict[str, Any]:
        """OIDC Core §3.1.2.1: an ID token we issued (it may have expired), to `client_id` when
        given. Only what an ID token is passes: `typ` absent or JWT (an access token, a logout
        token or any other typed JWT of ours is refused), our `iss`, a `sub` and an `aud`."""
        decoded = self._decode(token)
        if str(decoded.header.get("typ", "JWT")).upper() != "JWT":
            raise BadToken("not an ID token")
        claims = decoded.claims
        if claims.get("iss") != self.issuer or not isinstance(claims.get("sub"), str):
            raise BadToken("not an ID token of this issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(audiences, list)
            or not audiences
            or not all(isinstance(a, str) for a in audiences)
        ):
            raise BadToken("an ID token has an audience")
        if client_id is not None and client_id not in audiences:
            raise BadToken("not an ID token of this client")
        return claims


def token_service(runtime: Runtime) -> TokenService:
    """The signer and verifier of this process's tokens; a few attributes, cheap to build."""
    return TokenService(runtime.settings, runtime.keys)
