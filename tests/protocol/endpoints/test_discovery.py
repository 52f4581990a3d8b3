"""Provider metadata: OIDC Discovery 1.0 §3 and §4, RFC 8414 §2 and §3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import Harness


@pytest.fixture
def metadata(idp: Harness) -> dict[str, Any]:
    response = idp.http.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def test_issuer_is_exactly_the_configured_one(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3 and §4.3: issuer is identical to the Issuer URL, no trailing slash."""
    assert metadata["issuer"] == "https://testserver"


@pytest.mark.parametrize(
    "name", ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"]
)
def test_endpoints_are_under_the_issuer(metadata: dict[str, Any], name: str) -> None:
    """OIDC Discovery §3: the endpoints are https URLs of this provider."""
    assert metadata[name].startswith(ISSUER + "/")
    assert "//" not in metadata[name].removeprefix("https://")


def test_endpoints_answer_where_announced(idp: Harness, metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3: jwks_uri is the JWK Set document (RFC 7517 §5)."""
    jwks = idp.http.get(metadata["jwks_uri"].removeprefix(ISSUER))
    assert jwks.status_code == 200
    assert jwks.json()["keys"]


def test_only_the_code_flow_is_offered(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3 response_types_supported; RFC 9700 §2.1.2: no implicit or hybrid."""
    assert metadata["response_types_supported"] == ["code"]


def test_no_implicit_or_password_grant(metadata: dict[str, Any]) -> None:
    """RFC 8414 §2 grant_types_supported; RFC 9700 §2.1.2 and §2.4: neither implicit nor ROPC."""
    grants = metadata["grant_types_supported"]
    assert "authorization_code" in grants
    assert "implicit" not in grants
    assert "password" not in grants


def test_pkce_is_s256_only(metadata: dict[str, Any]) -> None:
    """RFC 8414 §2 code_challenge_methods_supported; RFC 9700 §2.1.1: S256."""
    assert metadata["code_challenge_methods_supported"] == ["S256"]


def test_id_tokens_are_signed_with_rs256(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3: RS256 MUST be included in id_token_signing_alg_values_supported."""
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert "none" not in metadata["id_token_signing_alg_values_supported"]


def test_token_endpoint_auth_methods(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3 token_endpoint_auth_methods_supported: the four methods offered."""
    assert sorted(metadata["token_endpoint_auth_methods_supported"]) == sorted(
        ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
    )


def test_iss_parameter_is_announced(metadata: dict[str, Any]) -> None:
    """RFC 9207 §3: authorization_response_iss_parameter_supported is true."""
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_openid_scope_is_listed(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3: scopes_supported MUST include openid."""
    assert "openid" in metadata["scopes_supported"]


def test_subject_types_are_listed(metadata: dict[str, Any]) -> None:
    """OIDC Discovery §3: subject_types_supported is REQUIRED."""
    assert metadata["subject_types_supported"]


def test_oauth_metadata_is_the_same_document(idp: Harness, metadata: dict[str, Any]) -> None:
    """RFC 8414 §3: the OAuth metadata, with the same issuer and values."""
    response = idp.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.json() == metadata


def test_issuer_trailing_slash_is_normalised(database_url: str, tmp_path: Path) -> None:
    """OIDC Discovery §4.3: iss must equal the issuer exactly, so a configured trailing slash
    is dropped, in the settings and in the metadata."""
    settings = make_settings(database_url, tmp_path, issuer="https://testserver/")
    assert settings.issuer == "https://testserver"
    app = migrated_app(settings)
    try:
        with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
            document = client.get("/.well-known/openid-configuration").json()
    finally:
        app.state.runtime.engine.dispose()
    assert document["issuer"] == "https://testserver"
    assert document["token_endpoint"] == "https://testserver/token"


@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
def test_metadata_has_an_etag_and_answers_304(idp: Harness, path: str) -> None:
    """RFC 9110 §8.8.3 and §13.1.2: the document carries an ETag; a client that holds it gets
    304 Not Modified without the body, with the same caching headers."""
    first = idp.http.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "public, max-age=3600"
    again = idp.http.get(path, headers={"If-None-Match": f'W/{etag}, "other"'})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["access-control-allow-origin"] == "*"


def test_published_documents_keep_the_security_headers_and_request_id(idp: Harness) -> None:
    """The documents are answered before routing, still inside the middlewares that add the
    security headers and the request id."""
    for path in ("/.well-known/openid-configuration", "/jwks.json"):
        response = idp.http.get(path, headers={"X-Request-ID": "doc-check-1"})
        assert response.headers["x-request-id"] == "doc-check-1"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks.json"])
def test_head_has_the_headers_without_the_body(idp: Harness, path: str) -> None:
    """RFC 9110 §9.3.2: HEAD is GET without the content."""
    got, head = idp.http.get(path), idp.http.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks.json"])
def test_other_methods_are_405(idp: Harness, path: str) -> None:
    response = idp.http.post(path, data={"x": "1"})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
