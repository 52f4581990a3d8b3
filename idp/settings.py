"""Every setting of the IdP, its default and its IDP_* environment variable.

Settings are built once (in `create_app` or the command line) and passed down; nothing reads the
environment at import time, so tests can build as many differently configured apps as they like.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SUPPORTED_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
# The languages of the pages: one catalogue each in idp/web/locale (English is the source).
UI_LOCALES = ("en", "de")
# IDP_SECURITY_WEBHOOK_SECRET: an HMAC-SHA256 key; 32 characters of base64 are 192 bits.
WEBHOOK_SECRET_MIN_LENGTH = 32
HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting that makes the server unsafe or unable to start; the message is one line."""


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value never reaches a traceback or a log, and the input
    # a model validator's error shows is every setting at once (the secrets too).
    model_config = SettingsConfigDict(
        env_prefix="IDP_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # `iss` of every token and the base of every endpoint URL; never taken from the Host header.
    issuer: str = "http://localhost:8000"
    database_url: str = "sqlite:///./idp.db"
    # Pool size for server databases; the threadpool runs up to 40 requests at once.
    database_pool_size: int = Field(default=20, ge=1)
    # PostgreSQL: asyncio connections per worker for single reads awaited on the event loop
    # (idp.db.loop_reads); 0 reads in threads instead.
    database_loop_read_connections: int = Field(default=4, ge=0)

    # 32 random bytes, base64url; or a file holding them. Wraps the signing keys at rest.
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path = Path("keys/key-encryption-key")
    # How often a worker looks for a changed key set (published, activated or revoked keys).
    key_refresh_seconds: int = Field(default=10, ge=1)
    jwks_max_age_seconds: int = Field(default=300, ge=0)
    # Signing algorithms with a key each; RS256 is always on (OIDC Core §15.1 mandates it).
    signing_algs: str = "RS256"
    access_token_alg: str = "RS256"  # noqa: S105 (an algorithm name)
    # A new key every this many days, published this long before it signs: relying parties
    # holding a cached JWKS must have fetched it by then, so at least twice the cache lifetime.
    key_rotation_days: float = Field(default=90, gt=0)
    key_prepublication_seconds: int = Field(default=3600, ge=1)

    access_token_ttl_seconds: int = Field(default=300, ge=30, le=86400)
    id_token_ttl_seconds: int = Field(default=600, ge=30, le=86400)
    # RFC 6749 §4.1.2: codes are short-lived; 60 s is the ceiling this IdP allows.
    authorization_code_ttl_seconds: int = Field(default=60, ge=5, le=60)
    # Refresh tokens (RFC 6749 §6): a family lives at most `absolute`; each token dies unused
    # after `idle`. Clients may override both. A retry with the token just rotated, by the same
    # client within the grace period, gets the same successor instead of revoking the family.
    refresh_token_idle_ttl_seconds: int = Field(default=14 * 86400, ge=60)
    refresh_token_absolute_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    refresh_token_reuse_grace_seconds: int = Field(default=3, ge=0, le=5)
    # Each worker deletes expired codes, tokens and sessions this often (0: only `idp prune`).
    prune_interval_seconds: int = Field(default=3600, ge=0)
    # Audit events older than this are deleted when pruning.
    audit_retention_days: int = Field(default=400, ge=1)
    # RFC 9068 §3: without a resource indicator the AS uses a default audience.
    access_token_audience: str | None = None

    # Every anonymous /authorize stores a sign-in interaction: at most this many per client
    # address and minute (0: no cap). Generous, for many people behind one NAT.
    interactions_per_ip_per_minute: int = Field(default=120, ge=0)

    # Throttled guessing (authn.throttle), counted in the database for every worker. Failed
    # attempts allowed before the first block: per account from one address, per address (many
    # people behind one NAT), per account from unknown devices everywhere, per known device
    # (its own budget), per client from one address. After that one attempt per block; each
    # block doubles, from the backoff to the maximum; a budget untouched for the window after
    # its block is forgotten.
    throttle_account_address_limit: int = Field(default=5, ge=1)
    throttle_address_limit: int = Field(default=100, ge=1)
    throttle_account_limit: int = Field(default=20, ge=1)
    throttle_device_limit: int = Field(default=10, ge=1)
    throttle_client_limit: int = Field(default=20, ge=1)
    throttle_backoff_seconds: int = Field(default=30, ge=1)
    throttle_max_backoff_seconds: int = Field(default=3600, ge=1)
    throttle_window_seconds: int = Field(default=3600, ge=1)
    # Password spraying: this many accounts failing from one network (an IPv6 /64) within one
    # window is the security event login.spray (0: not watched).
    login_spray_accounts: int = Field(default=10, ge=0)
    login_spray_window_seconds: int = Field(default=600, ge=60)
    # The proxies whose X-Forwarded-For / X-Forwarded-Proto name the client (comma-separated
    # addresses or networks, "*" for any; empty: none). Every budget above is per address, so
    # name the proxy here, or all clients share the proxy's budgets.
    forwarded_allow_ips: str = "127.0.0.1"

    session_idle_timeout_seconds: int = Field(default=30 * 60, ge=60)
    # The admin pages' own cookie ends after this long without an admin request.
    admin_idle_seconds: int = Field(default=900, ge=60)
    session_absolute_timeout_seconds: int = Field(default=12 * 3600, ge=60)

    # NIST SP 800-63B-4 §3.1.1.2: at least 15 characters where the password is the account's
    # only factor, at least 8 where it is one of two; the second applies once an account has a
    # second factor, and may not be longer than the first.
    password_min_length: int = Field(default=15, ge=8, le=64)
    password_min_length_with_mfa: int = Field(default=8, ge=8, le=64)
    # argon2id cost (RFC 9106 "second recommended" profile by default).
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=64 * 1024, ge=8)
    password_hash_parallelism: int = Field(default=4, ge=1)
    # Hashes computed at once per process; bounds memory (64 MiB each by default).
    password_hash_concurrency: int = Field(default=4, ge=1)
    # Sign-ins that may wait for a hashing slot, per process; more are answered 503 at once.
    password_hash_queue: int = Field(default=32, ge=0)

    # Largest form body accepted on any endpoint, and largest single parameter value.
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
    max_param_bytes: int = Field(default=4096, ge=256)

    # uvicorn, per worker. An idle keep-alive connection is closed after this long; the TLS
    # proxy's own upstream keep-alive timeout must be shorter, or it reuses a closed connection.
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)
    # Open connections (idle keep-alive ones too) or requests in progress, per worker: while
    # either count is at this limit, a new request is answered 503 (Connection: close) at once
    # instead of queueing. 1000 is 25 times the 40-thread pool, so a burst queues, but a flood
    # is refused instead of growing memory without bound. It closes no slow connection: header
    # and body read timeouts are the TLS proxy's (README, Production).
    limit_concurrency: int = Field(default=1000, ge=1)

    log_level: str = "info"
    # `idp serve`'s log lines on stdout: one JSON object each (for a collector), or text.
    log_format: Literal["json", "text"] = "json"
    # A line per request (method, route, status, duration, request id): off by default, as
    # it costs a measurable share of the token endpoint's time. Audit events are always logged.
    access_log: bool = False
    # /metrics answers loopback clients; with a token, also `Authorization: Bearer <token>`
    # from anywhere (a scraper on another host).
    metrics_token: SecretStr | None = None

    # Branding of the pages (and the TOTP issuer): the organisation's name, its logo (an SVG
    # or PNG file, served from /static/brand/), the accent colour of buttons and links (#rrggbb;
    # darkened or lightened where needed to keep WCAG AA contrast) and where "Need help?" links.
    display_name: str | None = None
    logo_file: Path | None = None
    accent_color: str = "#2f5bd3"
    support_url: str | None = None
    # The pages' language when neither ui_locales (OIDC Core §3.1.2.1) nor Accept-Language
    # names one of UI_LOCALES.
    default_locale: str = "en"

    # Networks (comma-separated CIDRs) this server may connect to outside development, beyond
    # public addresses: relying parties on premises (jwks_uri, backchannel_logout_uri, logos).
    # Link-local and cloud metadata addresses stay refused whatever this says.
    outbound_allowed_networks: str = ""

    # Every security event (idp.audit.events.SECURITY_EVENTS) is POSTed here as JSON, signed
    # with HMAC-SHA256 under the secret (idp.audit.webhook); unset: none is sent. An https URL,
    # or plain http to a loopback host. A failed delivery is tried this many times in all, the
    # delays between attempts doubling from the retry delay; then it is given up on (audited).
    security_webhook_url: str | None = None
    security_webhook_secret: SecretStr | None = None
    security_webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    security_webhook_retry_seconds: int = Field(default=10, ge=1, le=3600)

    @field_validator("security_webhook_url", "security_webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("security_webhook_url")
    @classmethod
    def _webhook_url_is_secure(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        )
        printable = all(c.isprintable() and not c.isspace() for c in value)
        # No userinfo: it would travel, and be logged by the receiver's proxies, with every event.
        if not secure or not parts.hostname or parts.username is not None or not printable:
            raise ValueError(
                "IDP_SECURITY_WEBHOOK_URL must be an https URL (or plain http to a loopback host) "
                "without a user name or password"
            )
        if parts.fragment:
            raise ValueError("IDP_SECURITY_WEBHOOK_URL must not have a fragment")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer_is_origin_plus_path(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"IDP_ISSUER must be an absolute http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("IDP_ISSUER must not have a query or fragment")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(
                f"IDP_ISSUER {value} uses plain http; only a localhost issuer (development) may"
            )
        # OIDC Discovery §4.3: `iss` must match the issuer exactly, so no trailing slash.
        return value.rstrip("/")

    @field_validator("display_name")
    @classmethod
    def _display_name_is_one_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not 1 <= len(value) <= 100 or any(not c.isprintable() for c in value):
            raise ValueError("IDP_DISPLAY_NAME must be 1 to 100 printable characters")
        return value

    @field_validator("accent_color")
    @classmethod
    def _accent_is_hex(cls, value: str) -> str:
        if not HEX_COLOR.match(value):
            raise ValueError(f"IDP_ACCENT_COLOR must be a hex colour like #2f5bd3, got {value!r}")
        if len(value) == 4:  # #abc -> #aabbcc
            value = "#" + "".join(c * 2 for c in value[1:])
        return value.lower()

    @field_validator("support_url")
    @classmethod
    def _support_url_is_web(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        printable = all(c.isprintable() and not c.isspace() for c in value)
        if parts.scheme == "mailto" and printable and "@" in parts.path:
            return value
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        )
        if not secure or not parts.hostname or parts.username is not None or not printable:
            raise ValueError(f"IDP_SUPPORT_URL must be an https or mailto: URL, got {value!r}")
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale_is_shipped(cls, value: str) -> str:
        if value not in UI_LOCALES:
            raise ValueError(
                f"IDP_DEFAULT_LOCALE must be one of {', '.join(UI_LOCALES)}, got {value!r}"
            )
        return value

    @field_validator("outbound_allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _password_lengths_are_ordered(self) -> Settings:
        if self.password_min_length_with_mfa > self.password_min_length:
            raise ValueError(
                "IDP_PASSWORD_MIN_LENGTH_WITH_MFA must not exceed IDP_PASSWORD_MIN_LENGTH "
                f"({self.password_min_length}): a second factor never asks for a longer password"
            )
        return self

    @model_validator(mode="after")
    def _timeouts_are_ordered(self) -> Settings:
        if self.session_idle_timeout_seconds > self.session_absolute_timeout_seconds:
            raise ValueError("IDP_SESSION_IDLE_TIMEOUT_SECONDS exceeds the absolute timeout")
        unknown = set(self.enabled_algs) - set(SUPPORTED_ALGS)
        if unknown:
            raise ValueError(
                f"IDP_SIGNING_ALGS: unsupported {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(SUPPORTED_ALGS)}"
            )
        if self.access_token_alg not in self.enabled_algs:
            raise ValueError("IDP_ACCESS_TOKEN_ALG must be one of IDP_SIGNING_ALGS")
        needed = 2 * self.jwks_max_age_seconds + self.key_refresh_seconds
        if self.key_prepublication_seconds < needed:
            raise ValueError(
                f"IDP_KEY_PREPUBLICATION_SECONDS must be at least {needed} (twice the JWKS cache "
                "lifetime plus the key refresh interval), or relying parties see keys too late"
            )
        if self.key_prepublication_seconds >= self.key_rotation_days * 86400:
            raise ValueError("IDP_KEY_PREPUBLICATION_SECONDS must be shorter than the rotation")
        return self

    @model_validator(mode="after")
    def _webhook_is_complete(self) -> Settings:
        url, secret = self.security_webhook_url, self.security_webhook_secret
        if url is None and secret is None:
            return self
        if url is None:
            raise ValueError("IDP_SECURITY_WEBHOOK_SECRET is set without IDP_SECURITY_WEBHOOK_URL")
        if secret is None or len(secret.get_secret_value()) < WEBHOOK_SECRET_MIN_LENGTH:
            raise ValueError(
                "IDP_SECURITY_WEBHOOK_SECRET must be set with IDP_SECURITY_WEBHOOK_URL, at least "
                f"{WEBHOOK_SECRET_MIN_LENGTH} characters (`openssl rand -base64 32` makes one)"
            )
        host = urlsplit(url).hostname or ""
        if urlsplit(url).scheme == "http" and not self.is_development:
            # What idp.outbound allows outside development: plain http only to an IP address in
            # IDP_OUTBOUND_ALLOWED_NETWORKS. Refused at start, not at every event's delivery.
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                address = None
            allowed = address is not None and any(
                address.version == n.version and address in n for n in self.outbound_networks
            )
            if not allowed:
                raise ValueError(
                    "IDP_SECURITY_WEBHOOK_URL: plain http needs a development issuer, or a "
                    "loopback IP address (127.0.0.1, [::1]) in IDP_OUTBOUND_ALLOWED_NETWORKS"
                )
        return self

    @property
    def enabled_algs(self) -> list[str]:
        """RS256 first, then the others asked for, each once."""
        asked = [a.strip() for a in self.signing_algs.split(",") if a.strip()]
        return list(dict.fromkeys(["RS256", *asked]))

    @property
    def rotation_seconds(self) -> int:
        return int(self.key_rotation_days * 86400)

    @property
    def is_development(self) -> bool:
        """A plain-http localhost issuer: cookies lose `Secure` and the `__Host-` prefix."""
        return urlsplit(self.issuer).scheme == "http"

    @property
    def outbound_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.outbound_allowed_networks)

    @property
    def audience(self) -> str:
        return self.access_token_audience or self.issuer

    @property
    def admin_api_audience(self) -> str:
        """RFC 8707 resource URI of the admin API: the `aud` its tokens must carry, and no
        other API's (nor userinfo's) tokens carry it."""
        return self.issuer + "/admin/api"

    def endpoint(self, path: str) -> str:
        return self.issuer + path


def parse_networks(value: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs ("10.0.0.0/8, fd12::/16"); ValueError names the first bad one."""
    networks: list[Network] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))  # strict: no host bits past the prefix
        except ValueError:
            raise ValueError(
                f"IDP_OUTBOUND_ALLOWED_NETWORKS: {item!r} is not a network in CIDR form "
                "(such as 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with a one-line SettingsError instead of a pydantic dump."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
