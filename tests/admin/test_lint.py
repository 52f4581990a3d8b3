"""The client security linter (idp.admin.lint): what registration allows but an operator should
review (RFC 9700, the OAuth 2.0 Security Best Current Practice), as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from idp.admin.lint import findings
from idp.settings import Settings
from idp.store.clients import Client

TODAY = 20_000  # Unix days
PROD = Settings(issuer="https://idp.example")
DEV = Settings(issuer="http://localhost:8000")


def client(**overrides: Any) -> Client:
    """A clean confidential web client, made today and used today."""
    fields: dict[str, Any] = {
        "client_id": "c1",
        "name": "RP",
        "secret_hash": "0" * 64,
        "secret_created_at": TODAY * 86400,
        "is_public": False,
        "auth_method": "client_secret_basic",
        "redirect_uris": ["https://rp.example/cb"],
        "post_logout_redirect_uris": [],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "email"],
        "require_pkce": True,
        "access_token_ttl": None,
        "refresh_token_absolute_ttl": None,
        "last_used_day": TODAY,
        "created_at": TODAY * 86400,
    }
    fields.update(overrides)
    return Client(**fields)


def codes(c: Client, settings: Settings = PROD, today: int = TODAY) -> list[str]:
    return [f.code for f in findings(c, settings, today)]


def test_a_clean_client_has_no_findings() -> None:
    """Nothing to report for a PKCE-enforcing https client with a fresh secret."""
    assert findings(client(), PROD, TODAY) == []


@pytest.mark.parametrize(
    ("overrides", "code", "severity"),
    [
        ({"require_pkce": False}, "pkce-not-required", "medium"),
        ({"redirect_uris": ["http://127.0.0.1:8080/cb"]}, "loopback-redirect-uri", "medium"),
        ({"redirect_uris": ["http://[::1]/cb"]}, "loopback-redirect-uri", "medium"),
        ({"post_logout_redirect_uris": ["http://localhost/"]}, "loopback-redirect-uri", "medium"),
        ({"secret_created_at": (TODAY - 91) * 86400}, "old-secret", "medium"),
        ({"last_used_day": TODAY - 91}, "unused-client", "low"),
        ({"last_used_day": None, "created_at": (TODAY - 100) * 86400}, "unused-client", "low"),
        ({"scopes": ["openid", "idp:admin"]}, "admin-scope", "high"),
        ({"scopes": ["idp:admin.read"]}, "admin-scope", "high"),
        ({"access_token_ttl": 4 * 300 + 1}, "long-access-token-ttl", "medium"),
        ({"refresh_token_absolute_ttl": 121 * 86400}, "long-refresh-token-ttl", "medium"),
        (
            {"grant_types": ["client_credentials"], "redirect_uris": []},
            "secret-where-private-key-jwt-would-do",
            "low",
        ),
    ],
)
def test_each_finding(overrides: dict[str, Any], code: str, severity: str) -> None:
    """RFC 9700 §2.1.1 (PKCE), §4.1 (redirect URIs), §2.4 (least privilege), §4.14 (token
    lifetimes) and RFC 7523 (keys over secrets): one finding each, with a message and a fix."""
    (finding,) = findings(client(**overrides), PROD, TODAY)
    assert (finding.code, finding.severity) == (code, severity)
    assert finding.message and finding.fix


def test_limits_are_not_findings() -> None:
    """At exactly 90 days and 4x the default, nothing is reported yet."""
    c = client(
        secret_created_at=(TODAY - 90) * 86400,
        last_used_day=TODAY - 90,
        access_token_ttl=4 * 300,
        refresh_token_absolute_ttl=4 * 30 * 86400,
    )
    assert codes(c) == []


def test_loopback_redirects_are_fine_on_a_development_issuer() -> None:
    """RFC 8252 §7.3: loopback redirects are expected while developing on localhost."""
    assert codes(client(redirect_uris=["http://localhost:8002/cb"]), DEV) == []


def test_pkce_off_without_code_grant_is_not_reported() -> None:
    """PKCE protects the authorization code; a client without that grant has none."""
    c = client(
        require_pkce=False,
        grant_types=["client_credentials"],
        auth_method="private_key_jwt",
        secret_hash=None,
    )
    assert codes(c) == []


def test_a_secret_of_unknown_age_counts_from_registration() -> None:
    """A secret made before its age was recorded is as old as the client."""
    c = client(secret_created_at=None, created_at=(TODAY - 200) * 86400, last_used_day=TODAY)
    assert codes(c) == ["old-secret"]


def test_findings_are_sorted_by_severity() -> None:
    """High first, then medium, then low."""
    c = client(
        scopes=["idp:admin"], require_pkce=False, last_used_day=TODAY - 365,
    )  # fmt: skip
    assert [f.severity for f in findings(c, PROD, TODAY)] == ["high", "medium", "low"]
