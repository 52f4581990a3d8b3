"""Interoperability with a resource server written as a user would write it: examples/api, which
validates our access tokens with PyJWT's PyJWKClient on every request (issue 5). Each check it
makes (signature, typ at+jwt, iss, aud, exp, scope) is shown to matter by a token that fails only
that one, presented next to a genuine token from the real server that passes."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.runtime import build_runtime
from idp.settings import load_settings
from tests.e2e.conftest import RunningServer, free_port, running
from tests.e2e.test_examples import REPO, example_env

pytestmark = pytest.mark.e2e


@dataclass
class Api:
    url: str
    kid: str
    key: RSAKey  # the IdP's own signing key, to forge tokens that differ in one claim only


def idp_signing_key(server: RunningServer) -> tuple[str, RSAKey]:
    """The running server's RS256 key, opened with its KEK as `idp` itself does."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in server.cli.env.items():
            if name.startswith("IDP_"):
                env.setenv(name, value)
        services = build_runtime(load_settings())
    try:
        kid, key = services.keys.signing_key("RS256")
    finally:
        services.engine.dispose()
    assert isinstance(key, RSAKey)
    return kid, key


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[Api]:
    url = f"http://127.0.0.1:{free_port()}"
    kid, key = idp_signing_key(server)
    with running(
        "examples.api",
        [sys.executable, "-m", "examples.api"],
        example_env(server, EXAMPLE_API_URL=url),
        REPO,
        f"{url}/health",
        server.tmp / "resource-server.log",
    ):
        yield Api(url=url, kid=kid, key=key)


def service_token(server: RunningServer, scope: str, audience: str | None) -> str:
    """A client_credentials token from the real server for a fresh service client."""
    args = ["--audience", audience] if audience else []
    service = server.cli.json(
        "clients", "create", "--name", "rs test", "--grant-type", "client_credentials",
        "--scope", scope, *args, "--json",
    )  # fmt: skip
    response = httpx.post(
        f"{server.issuer}/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(service["client_id"], service["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def forged(api: Api, server: RunningServer, typ: str = "at+jwt", **changes: Any) -> str:
    """A token signed with the IdP's real key: valid in every respect but `changes`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": server.issuer,
        "aud": api.url,
        "sub": "svc",
        "client_id": "svc",
        "scope": "notes.read",
        "iat": now,
        "exp": now + 300,
        "jti": f"forged-{time.perf_counter_ns()}",
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": api.kid, "typ": typ}, claims, api.key)


def notes(api: Api, token: str) -> httpx.Response:
    return httpx.get(f"{api.url}/notes", headers={"Authorization": f"Bearer {token}"})


def assert_invalid_token(response: httpx.Response) -> None:
    """RFC 6750 §3.1: 401 and a Bearer challenge with error="invalid_token"."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def test_a_token_from_the_server_is_accepted(server: RunningServer, api: Api) -> None:
    """RFC 9068 §4: a genuine token for this API with the scope it needs: 200 (the control for
    every refusal below), and so is a forged one with nothing changed (the forging is sound)."""
    token = service_token(server, "notes.read", api.url)
    assert notes(api, token).status_code == 200
    assert notes(api, forged(api, server)).status_code == 200


def test_a_tampered_signature_is_refused(server: RunningServer, api: Api) -> None:
    """RFC 7515 §5.2: one changed byte of the payload breaks the signature."""
    header, payload, signature = service_token(server, "notes.read", api.url).split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b"notes.read", b"notes.reaD")
    altered = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    assert_invalid_token(notes(api, f"{header}.{altered}.{signature}"))


def test_a_key_outside_the_jwks_is_refused(server: RunningServer, api: Api) -> None:
    """RFC 9068 §4: signed with a key the IdP never published, even under the published kid."""
    stranger = Api(url=api.url, kid=api.kid, key=RSAKey.generate_key(2048))
    assert_invalid_token(notes(api, forged(stranger, server)))


def test_an_unknown_kid_is_refused(server: RunningServer, api: Api) -> None:
    """A kid the JWKS does not hold, even after PyJWKClient refetches it: refused."""
    assert_invalid_token(notes(api, forged(Api(api.url, "no-such-kid", api.key), server)))


@pytest.mark.parametrize("typ", ["JWT", "logout+jwt", ""], ids=["id-token", "logout", "none"])
def test_a_token_that_is_not_an_access_token_is_refused(
    server: RunningServer, api: Api, typ: str
) -> None:
    """RFC 9068 §4: the typ header must be at+jwt, so an ID token or a logout token signed by
    the same key can never be used as an access token."""
    assert_invalid_token(notes(api, forged(api, server, typ=typ)))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "http://127.0.0.1:1"},
        {"aud": "http://127.0.0.1:1"},
        {"exp": int(time.time()) - 60},
        {"exp": None},
        {"aud": None},
    ],
    ids=["other-issuer", "other-audience", "expired", "no-exp", "no-aud"],
)
def test_claims_are_checked(server: RunningServer, api: Api, changes: dict[str, Any]) -> None:
    """RFC 9068 §4: iss must be the IdP, aud must name this API, exp must be present and in the
    future."""
    assert_invalid_token(notes(api, forged(api, server, **changes)))


def test_a_token_for_another_audience_from_the_server_is_refused(
    server: RunningServer, api: Api
) -> None:
    """RFC 9068 §3-4: a real token issued to a client not registered for this API (its `aud` is
    the server-wide default) is refused here."""
    assert_invalid_token(notes(api, service_token(server, "notes.read", None)))


def test_a_token_without_the_scope_is_forbidden(server: RunningServer, api: Api) -> None:
    """RFC 6750 §3.1: a valid token without the route's scope gets 403 insufficient_scope and
    the scope it needs."""
    response = notes(api, service_token(server, "notes.write", api.url))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="notes.read"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_algorithm_confusion_is_refused(server: RunningServer, api: Api, alg: str) -> None:
    """RFC 8725 §2.1, §3.1: unsigned tokens, and HMAC keyed with the public key, are refused."""
    header = base64.urlsafe_b64encode(
        f'{{"alg":"{alg}","kid":"{api.kid}","typ":"at+jwt"}}'.encode()
    ).rstrip(b"=")
    body = forged(api, server).split(".")[1]
    assert_invalid_token(notes(api, f"{header.decode()}.{body}.c2ln"))
