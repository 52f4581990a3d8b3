"""A private_key_jwt client's jwks_uri (OIDC Registration §2, RFC 7523 §3; issue 11, increment
4): fetched only for an assertion that could authenticate, through the address policy, once per
URI at a time, and a failure remembered for JWKS_MIN_REFETCH_SECONDS.

The client's host is a loopback server (tests.key_host, tests.slow_host) that counts what it is
asked; the suite allows loopback (IDP_OUTBOUND_ALLOWED_NETWORKS in tests.conftest).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from idp.protocol import client_auth
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import Harness, wait_until
from tests.key_host import KeyHost, serve_keys
from tests.protocol.test_client_auth import SERVICE, assert_invalid_client, hs256_assertion
from tests.slow_host import serve_slow
from tests.token_helpers import assertion_form, client_assertion, client_key, public_jwks


@pytest.fixture(autouse=True)
def _no_cached_client_keys() -> Iterator[None]:
    """The jwks_uri cache is per process: start and end each test with it empty."""
    client_auth.REMOTE_JWKS.clear()
    yield
    client_auth.REMOTE_JWKS.clear()


@pytest.fixture
def key_host() -> Iterator[KeyHost]:
    with serve_keys(public_jwks(client_key())) as host:
        yield host


def token_request(idp: Harness, assertion: str, **data: str) -> int:
    """POST /token (client_credentials) with this assertion; the status."""
    form = assertion_form(assertion, grant_type="client_credentials", **data)
    return idp.http.post("/token", data=form).status_code


def unsigned(client_id: str) -> str:
    """An assertion with alg "none" (RFC 7519 §6): nothing could verify it."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER + "/token", "exp": 2**31}
    return f"{part({'alg': 'none'})}.{part(claims)}."


def relabelled(assertion: str, alg: str) -> str:
    """The assertion with another alg in its header (the signature no longer matters)."""
    header, rest = assertion.split(".", 1)
    claimed = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    claimed["alg"] = alg
    encoded = base64.urlsafe_b64encode(json.dumps(claimed).encode()).rstrip(b"=").decode()
    return f"{encoded}.{rest}"


Case = Callable[[str], tuple[str, dict[str, str]]]
CASES: dict[str, Case] = {
    "sub-names-another-client": lambda c: (
        client_assertion(c, client_key(), sub="someone-else"),
        {},
    ),
    "iss-names-another-client": lambda c: (
        client_assertion(c, client_key(), iss="someone-else"),
        {},
    ),
    "body-client-id-differs": lambda c: (
        client_assertion(c, client_key()),
        {"client_id": "someone-else"},
    ),
    "hs256": lambda c: (hs256_assertion(c), {}),
    "alg-none": lambda c: (unsigned(c), {}),
    "alg-rs512": lambda c: (relabelled(client_assertion(c, client_key()), "RS512"), {}),
    "wrong-assertion-type": lambda c: (
        client_assertion(c, client_key()),
        {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
    ),
    "not-a-jwt": lambda c: ("not.a.jwt", {"client_id": c}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_nothing_is_fetched_for_an_assertion_that_could_not_authenticate(
    idp: Harness, key_host: KeyHost, case: Case
) -> None:
    """Issue 11 / RFC 7523 §3: iss and sub must both name the client, a body client_id must
    name it too (RFC 7521 §4.2), the header's alg must be one we verify (ASSERTION_ALGS,
    asymmetric only) and the type RFC 7523's; otherwise the request fails without this server
    asking the client's host anything (a stranger must not make it call registered hosts)."""
    rp = idp.client(auth_method="private_key_jwt", jwks_uri=key_host.url, **SERVICE)
    assertion, extra = case(rp.client_id)
    form = assertion_form(assertion, grant_type="client_credentials")
    form.update(extra)
    response = idp.http.post("/token", data=form)
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_client", "invalid_request")
    assert key_host.fetches == 0


def test_nothing_is_fetched_for_a_client_not_registered_for_private_key_jwt(
    idp: Harness, key_host: KeyHost
) -> None:
    """Issue 11: a client_secret_basic client that also registered a jwks_uri cannot be made
    to have its keys fetched by an assertion naming it: it does not authenticate that way."""
    rp = idp.client(jwks_uri=key_host.url, **SERVICE)
    assertion = client_assertion(rp.client_id, client_key())
    assert_invalid_client(
        idp.http.post("/token", data=assertion_form(assertion, grant_type="client_credentials"))
    )
    assert key_host.fetches == 0


def test_a_valid_assertion_with_its_client_id_is_fetched_and_accepted(
    idp: Harness, key_host: KeyHost
) -> None:
    """The counterpart: a well-formed assertion, with or without the optional body client_id,
    has its client's keys fetched (once) and authenticates."""
    rp = idp.client(auth_method="private_key_jwt", jwks_uri=key_host.url, **SERVICE)
    assert token_request(idp, client_assertion(rp.client_id, client_key())) == 200
    assertion = client_assertion(rp.client_id, client_key())
    assert token_request(idp, assertion, client_id=rp.client_id) == 200
    assert key_host.fetches == 1


def test_a_failed_fetch_is_remembered_and_not_repeated(idp: Harness) -> None:
    """Issue 11 (negative cache): a jwks_uri that answered 500 is not asked again within
    JWKS_MIN_REFETCH_SECONDS; the second request is invalid_client with no second connection."""
    with serve_slow("status", status=500, body=b"{}") as host:
        rp = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        for _ in range(3):
            assert token_request(idp, client_assertion(rp.client_id, client_key())) == 401
    assert host.connections == 1


def test_one_fetch_per_jwks_uri_at_a_time(idp: Harness) -> None:
    """Issue 11: requests arriving while a jwks_uri is being fetched do not fetch it again:
    they wait a moment (JWKS_WAIT_SECONDS) for that fetch, then fail as invalid_client. The
    host sees one connection however many requests name the client."""
    with serve_slow("hang", linger=30) as host:
        rp = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        statuses: list[int] = []

        def post() -> None:
            assertion = client_assertion(rp.client_id, client_key())
            form = assertion_form(assertion, grant_type="client_credentials")
            statuses.append(idp.http.post("/token", data=form).status_code)

        first = threading.Thread(target=post, daemon=True)
        first.start()
        assert wait_until(lambda: host.connections >= 1)
        crowd = [threading.Thread(target=post, daemon=True) for _ in range(4)]
        for thread in crowd:
            thread.start()
        for thread in crowd:
            thread.join(30)
        host.stop.set()  # the hanging host lets go: the first fetch fails
        first.join(30)
    assert statuses == [401] * 5
    assert host.connections == 1


def test_a_loopback_jwks_uri_is_not_fetched_in_production(
    tmp_path: Path, database_url: str
) -> None:
    """Issue 11: with IDP_OUTBOUND_ALLOWED_NETWORKS unset, a production server does not connect
    to a loopback jwks_uri (here a client registered before the policy, straight in the
    table): the assertion is invalid_client and the host is never asked."""
    with serve_keys(public_jwks(client_key())) as host:
        allowed = migrated_app(make_settings(database_url, tmp_path / "a"))
        strict = make_settings(database_url, tmp_path / "s", outbound_allowed_networks="")
        try:
            with TestClient(allowed, base_url=ISSUER) as http:
                rp = Harness(allowed, http).client(
                    auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE
                )
            production = migrated_app(strict)
            try:
                with TestClient(production, base_url=ISSUER) as http:
                    form = assertion_form(
                        client_assertion(rp.client_id, client_key()),
                        grant_type="client_credentials",
                    )
                    assert_invalid_client(http.post("/token", data=form))
            finally:
                _dispose(production)
        finally:
            _dispose(allowed)
    assert host.fetches == 0


def _dispose(app: FastAPI) -> None:
    app.state.runtime.engine.dispose()
