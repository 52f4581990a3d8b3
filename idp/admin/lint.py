"""A security linter for registered clients: what registration allows but an operator should
look at again. Pure functions of a client, the settings and the day: no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from idp.protocol.tokens import ADMIN_SCOPES
from idp.settings import LOOPBACK_HOSTS, Settings
from idp.store.clients import Client

SEVERITIES = ("high", "medium", "low")
# RFC 9700 §2.4 and common rotation policy: a secret or an idle client older than this is
# worth a look.
STALE_DAYS = 90
# A lifetime this many times the server's default is no longer a tuning but a different policy.
TTL_FACTOR = 4
_SECRET_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class Finding:
    code: str  # a stable slug, for scripts and suppressions
    severity: str  # high, medium or low
    message: str  # what is wrong
    fix: str  # how to fix it, naming the CLI flag or the field

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def findings(client: Client, settings: Settings, today: int) -> list[Finding]:
    """Every finding for the client, most severe first (then by code)."""
    found = [
        *_pkce(client),
        *_loopback(client, settings),
        *_stale(client, today),
        *_admin_scopes(client),
        *_lifetimes(client, settings),
        *_secret_where_keys_do(client),
    ]
    return sorted(found, key=lambda f: (SEVERITIES.index(f.severity), f.code))


def _pkce(client: Client) -> list[Finding]:
    if client.require_pkce or "authorization_code" not in client.grant_types:
        return []
    return [
        Finding(
            "pkce-not-required",
            "medium",
            "PKCE is not required: a stolen or injected authorization code can be redeemed "
            "(RFC 9700 §2.1.1)",
            "idp clients update CLIENT_ID --require-pkce (require_pkce: true)",
        )
    ]


def _development_issuer(settings: Settings) -> bool:
    return settings.is_development or urlsplit(settings.issuer).hostname in LOOPBACK_HOSTS


def _loopback(client: Client, settings: Settings) -> list[Finding]:
    if _development_issuer(settings):
        return []
    uris = [
        uri
        for uri in [*client.redirect_uris, *client.post_logout_redirect_uris]
        if urlsplit(uri).hostname in LOOPBACK_HOSTS
    ]
    if not uris:
        return []
    # RFC 8252 §7.3 allows loopback redirects for native apps; for a web client on a
    # production issuer they are usually development leftovers that any local process can use.
    return [
        Finding(
            "loopback-redirect-uri",
            "medium",
            f"loopback redirect URIs on a production issuer: {', '.join(uris)}",
            "idp clients update CLIENT_ID --redirect-uri URI ... without them "
            "(redirect_uris, post_logout_redirect_uris), unless this is a native app",
        )
    ]


def _stale(client: Client, today: int) -> list[Finding]:
    found = []
    if client.secret_hash is not None:
        made = (
            client.secret_created_at if client.secret_created_at is not None else client.created_at
        )
        age = today - made // 86400
        if age > STALE_DAYS:
            found.append(
                Finding(
                    "old-secret",
                    "medium",
                    f"the client secret is {age} days old (more than {STALE_DAYS})",
                    "idp clients rotate-secret CLIENT_ID",
                )
            )
    # None: never used since last_used_day was recorded, so count from registration.
    last = client.last_used_day if client.last_used_day is not None else client.created_at // 86400
    if today - last > STALE_DAYS:
        found.append(
            Finding(
                "unused-client",
                "low",
                f"no token issued for {today - last} days: an unused client is attack surface",
                "idp clients disable CLIENT_ID (or idp clients delete CLIENT_ID)",
            )
        )
    return found


def _admin_scopes(client: Client) -> list[Finding]:
    admin = sorted(ADMIN_SCOPES & set(client.scopes))
    if not admin:
        return []
    return [
        Finding(
            "admin-scope",
            "high",
            f"the client may ask for administrative scopes: {' '.join(admin)}",
            "idp clients update CLIENT_ID --scope ... without them (scope), unless it is an "
            "admin tool",
        )
    ]


def _lifetimes(client: Client, settings: Settings) -> list[Finding]:
    found = []
    access, default = client.access_token_ttl, settings.access_token_ttl_seconds
    if access is not None and access > TTL_FACTOR * default:
        found.append(
            Finding(
                "long-access-token-ttl",
                "medium",
                f"access tokens live {access} s, more than {TTL_FACTOR}x the default {default} s",
                "idp clients update CLIENT_ID --access-token-ttl SECONDS (access_token_ttl)",
            )
        )
    absolute, default = (
        client.refresh_token_absolute_ttl,
        settings.refresh_token_absolute_ttl_seconds,
    )
    if absolute is not None and absolute > TTL_FACTOR * default:
        found.append(
            Finding(
                "long-refresh-token-ttl",
                "medium",
                f"refresh tokens live up to {absolute} s, more than {TTL_FACTOR}x the default "
                f"{default} s",
                "idp clients update CLIENT_ID --refresh-token-absolute-ttl SECONDS "
                "(refresh_token_absolute_ttl)",
            )
        )
    return found


def _secret_where_keys_do(client: Client) -> list[Finding]:
    # A service that only uses client_credentials has no user in the loop and is deployed by
    # its owner: it can hold a private key as easily as a secret, and a key never travels.
    if client.auth_method not in _SECRET_METHODS or set(client.grant_types) != {
        "client_credentials"
    }:
        return []
    return [
        Finding(
            "secret-where-private-key-jwt-would-do",
            "low",
            "a service client authenticates with a shared secret, sent with every request",
            "idp clients update CLIENT_ID --auth-method private_key_jwt --jwks-uri URL "
            "(token_endpoint_auth_method: private_key_jwt, jwks or jwks_uri; RFC 7523)",
        )
    ]
