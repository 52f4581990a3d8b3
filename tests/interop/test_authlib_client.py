"""Interoperability with authlib's OAuth 2.0 / OpenID Connect client (httpx), a library we did
not write, against the real server (issue 5, first increment): discovery, authorization code
with PKCE, token exchange, ID token validation from the JWKS, userinfo, refresh, client
credentials, revocation, introspection and the end-session URL."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.e2e.conftest import REDIRECT_URI, RunningServer
from tests.e2e.test_server import follow, only_form, submit
from tests.key_host import serve_keys

pytestmark = pytest.mark.e2e


def metadata(server: RunningServer) -> dict[str, object]:
    return httpx.get(f"{server.issuer}/.well-known/openid-configuration").json()  # type: ignore[no-any-return]


def sign_in_and_consent(browser: httpx.Client, url: str, server: RunningServer) -> str:
    """Play the browser: the login form, then the consent page (offline_access always asks);
    return the Location the IdP finally sends the browser to."""
    response = browser.get(url)
    login_page = follow(browser, response)
    login = only_form(login_page)
    response = submit(
        browser, login_page, login.submission(email=server.email, password=server.password), login
    )
    consent_page = follow(browser, response)
    consent = only_form(consent_page)
    response = submit(browser, consent_page, consent.press("decision", "allow"), consent)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def test_authlib_client_code_flow_refresh_and_back_channel_endpoints(
    server: RunningServer, browser: httpx.Client
) -> None:
    """OIDC Core §3.1 and RFC 6749 §6, RFC 7009, RFC 7662, RP-Initiated Logout, with authlib's
    client doing PKCE, the token requests, refresh, revocation and introspection itself."""
    meta = metadata(server)
    registered = server.cli.json(
        "clients", "create", "--name", "authlib RP", "--redirect-uri", REDIRECT_URI,
        "--post-logout-redirect-uri", "http://127.0.0.1:9/bye",
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--scope", "openid", "--scope", "email", "--scope", "offline_access", "--json",
    )  # fmt: skip
    client = OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        scope="openid email offline_access",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    with client:
        _code_flow(client, meta, registered, browser, server)


def _code_flow(
    client: OAuth2Client,
    meta: dict[str, object],
    registered: dict[str, str],
    browser: httpx.Client,
    server: RunningServer,
) -> None:
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    url, state = client.create_authorization_url(
        str(meta["authorization_endpoint"]), code_verifier=verifier, nonce=nonce
    )
    location = sign_in_and_consent(browser, url, server)
    assert location.startswith(REDIRECT_URI)
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["state"] == state and params["iss"] == server.issuer

    token = client.fetch_token(
        str(meta["token_endpoint"]), authorization_response=location, code_verifier=verifier
    )
    keys = KeySet.import_key_set(httpx.get(str(meta["jwks_uri"])).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == server.issuer and claims["aud"] == registered["client_id"]
    assert claims["nonce"] == nonce

    userinfo = client.get(str(meta["userinfo_endpoint"]))
    assert userinfo.status_code == 200 and userinfo.json()["email"] == server.email

    refreshed = client.refresh_token(str(meta["token_endpoint"]))
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert (
        jwt.decode(refreshed["id_token"], keys, algorithms=["RS256"]).claims["sub"] == claims["sub"]
    )

    introspected = client.introspect_token(
        str(meta["introspection_endpoint"]), token=refreshed["access_token"]
    )
    assert introspected.json()["active"] is True
    revoked = client.revoke_token(
        str(meta["revocation_endpoint"]), token=refreshed["refresh_token"]
    )
    assert revoked.status_code == 200
    after = client.introspect_token(
        str(meta["introspection_endpoint"]), token=refreshed["access_token"]
    )
    assert after.json() == {"active": False}

    # RP-Initiated Logout: the end-session URL a relying party builds.
    logout = browser.get(
        f"{meta['end_session_endpoint']}?"
        + urlencode(
            {
                "id_token_hint": refreshed["id_token"],
                "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                "state": "x",
            }
        )
    )
    assert logout.status_code == 302
    assert logout.headers["location"] == "http://127.0.0.1:9/bye?state=x"


def test_authlib_client_credentials(server: RunningServer) -> None:
    """RFC 6749 §4.4 with authlib's client, client_secret_post."""
    registered = server.cli.json(
        "clients", "create", "--name", "authlib service", "--grant-type", "client_credentials",
        "--scope", "api.read", "--auth-method", "client_secret_post", "--json",
    )  # fmt: skip
    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_post",
    ) as client:
        token = client.fetch_token(f"{server.issuer}/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == "api.read"
    assert "refresh_token" not in token


def test_authlib_private_key_jwt_with_keys_at_a_jwks_uri(server: RunningServer) -> None:
    """RFC 7523 §2.2 / OIDC Core §9 with authlib's PrivateKeyJWT: a service with no shared
    secret, whose public key the real server fetches from the service's own jwks_uri."""
    key = RSAKey.generate_key(2048, parameters={"kid": "svc-1", "alg": "RS256", "use": "sig"})
    with serve_keys({"keys": [key.as_dict(private=False)]}) as host:
        registered = server.cli.json(
            "clients", "create", "--name", "authlib keyed service",
            "--grant-type", "client_credentials", "--scope", "api.read",
            "--auth-method", "private_key_jwt", "--jwks-uri", host.url, "--json",
        )  # fmt: skip
        token_endpoint = f"{server.issuer}/token"
        with OAuth2Client(
            client_id=registered["client_id"],
            client_secret=key,  # authlib's name for the private key it signs assertions with
            token_endpoint_auth_method="private_key_jwt",
        ) as client:
            client.register_client_auth_method(PrivateKeyJWT(token_endpoint))
            token = client.fetch_token(token_endpoint, grant_type="client_credentials")
        assert host.fetches == 1
    assert token["token_type"] == "Bearer" and token["scope"] == "api.read"
