"""Client authentication at the token endpoint: RFC 6749 §2.3 and §3.2.1, RFC 7523 §2.2 and §3,
OIDC Core §9. Clients registered with a jwks_uri get their keys served by a small HTTP server on
127.0.0.1, started by the test.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import OctKey

from idp.admin.clients import ClientSpec, InvalidRegistration, register
from idp.protocol import client_auth
from tests.helpers import RP, Harness, basic
from tests.key_host import KeyHost, serve_keys
from tests.token_helpers import (
    ISSUER,
    assertion_form,
    audit_events,
    client_assertion,
    client_key,
    error_of,
    public_jwks,
    sql,
)

SERVICE = {"grant_types": ["client_credentials"], "scopes": ["api.read"], "redirect_uris": []}


def cc_form(**data: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", **data}


def assert_invalid_client(response: httpx.Response) -> None:
    """RFC 6749 §5.2 invalid_client: 401, with a WWW-Authenticate challenge, and no token."""
    assert response.status_code == 401, response.text
    assert error_of(response) == "invalid_client"
    assert "www-authenticate" in response.headers
    assert response.headers["www-authenticate"].lower().startswith("basic")
    assert response.headers["cache-control"] == "no-store"
    assert "access_token" not in response.json()


# --- RFC 6749 §2.3.1: client passwords ------------------------------------------------------------


@pytest.fixture
def basic_client(idp: Harness) -> RP:
    return idp.client(**SERVICE)


@pytest.fixture
def post_client(idp: Harness) -> RP:
    return idp.client(auth_method="client_secret_post", **SERVICE)


def test_client_secret_basic(idp: Harness, basic_client: RP) -> None:
    """§2.3.1: the client authenticates with HTTP Basic (client_id:client_secret)."""
    assert basic_client.secret
    response = idp.http.post(
        "/token", data=cc_form(), headers=basic(basic_client.client_id, basic_client.secret)
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_client_secret_post(idp: Harness, post_client: RP) -> None:
    """§2.3.1: a client registered for client_secret_post sends its credentials in the body."""
    assert post_client.secret
    data = cc_form(client_id=post_client.client_id, client_secret=post_client.secret)
    response = idp.http.post("/token", data=data)
    assert response.status_code == 200, response.text


def test_basic_client_cannot_use_post(idp: Harness, basic_client: RP) -> None:
    """§2.3 / RFC 7591 §2: a client uses the method it registered; client_secret_post from a
    client_secret_basic client is refused even with the right secret."""
    assert basic_client.secret
    data = cc_form(client_id=basic_client.client_id, client_secret=basic_client.secret)
    assert_invalid_client(idp.http.post("/token", data=data))


def test_post_client_cannot_use_basic(idp: Harness, post_client: RP) -> None:
    """§2.3 / RFC 7591 §2: and the other way round."""
    assert post_client.secret
    headers = basic(post_client.client_id, post_client.secret)
    assert_invalid_client(idp.http.post("/token", data=cc_form(), headers=headers))


@pytest.mark.parametrize(
    "credentials",
    ["wrong-secret", "unknown-client", "no-credentials", "id-without-secret", "empty-secret"],
)
def test_failed_authentication_is_invalid_client(
    idp: Harness, basic_client: RP, credentials: str
) -> None:
    """§5.2 invalid_client: client authentication failed (unknown client, no authentication
    included, or unsupported method); 401 with WWW-Authenticate since the client may use Basic."""
    assert basic_client.secret
    headers: dict[str, str] = {}
    data = cc_form()
    if credentials == "wrong-secret":
        headers = basic(basic_client.client_id, secrets.token_urlsafe(32))
    elif credentials == "unknown-client":
        headers = basic("no-such-client", basic_client.secret)
    elif credentials == "id-without-secret":
        data["client_id"] = basic_client.client_id
    elif credentials == "empty-secret":
        headers = basic(basic_client.client_id, "")
    assert_invalid_client(idp.http.post("/token", data=data, headers=headers))


def test_confidential_client_must_authenticate_to_redeem(idp: Harness) -> None:
    """§3.2.1 and §4.1.3: a confidential client MUST authenticate; client_id and a valid PKCE
    verifier are not authentication."""
    idp.user()
    rp = idp.client()
    code = idp.code_for(rp)
    response = idp.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
            "client_id": rp.client_id,
        },
    )
    assert_invalid_client(response)


def test_failed_authentication_is_audited(idp: Harness, basic_client: RP) -> None:
    """§10.10 (credential guessing): each failed client authentication leaves an audit row."""
    headers = basic(basic_client.client_id, "guess")
    assert idp.http.post("/token", data=cc_form(), headers=headers).status_code == 401
    assert [row.client_id for row in audit_events(idp, "client_auth.failed")] == [
        basic_client.client_id
    ]


def test_invalid_client_answer_does_not_reveal_which_ids_exist(
    idp: Harness, basic_client: RP
) -> None:
    """§10.10 / RFC 9700 §4.15: unknown client and wrong secret get the same answer."""
    wrong_secret = idp.http.post(
        "/token", data=cc_form(), headers=basic(basic_client.client_id, "guess")
    )
    unknown = idp.http.post("/token", data=cc_form(), headers=basic("no-such-client", "guess"))
    assert wrong_secret.json() == unknown.json()
    assert wrong_secret.status_code == unknown.status_code == 401


# --- client secrets at rest ----------------------------------------------------------------------


def test_client_secret_is_256_bits_and_stored_as_sha256(idp: Harness) -> None:
    """§2.3.1 / §10.1 and RFC 9700 §4.14: secrets are server-generated with >= 256 bits of
    entropy, and the database keeps only their SHA-256 (hex), never the secret."""
    rp = idp.client(**SERVICE)
    assert rp.secret
    assert len(rp.secret) >= 43
    assert set(rp.secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    (row,) = sql(idp, "SELECT * FROM clients WHERE client_id = :c", c=rp.client_id)
    assert row.secret_hash != rp.secret
    assert row.secret_hash == hashlib.sha256(rp.secret.encode()).hexdigest()
    assert all(rp.secret not in str(value) for value in row)


def test_client_secrets_differ(idp: Harness) -> None:
    """§10.1: each client gets its own random secret."""
    assert idp.client(**SERVICE).secret != idp.client(**SERVICE).secret


# --- public clients ------------------------------------------------------------------------------


def test_public_client_redeems_with_client_id_and_pkce(idp: Harness) -> None:
    """§2.1 / §3.2.1 and RFC 7636 §4.5: a public client identifies itself with client_id and
    proves possession of the code with code_verifier; it has no secret."""
    idp.user()
    app = idp.client(public=True)
    assert app.secret is None
    (row,) = sql(idp, "SELECT secret_hash FROM clients WHERE client_id = :c", c=app.client_id)
    assert row.secret_hash is None
    response = idp.exchange(app, idp.code_for(app))  # client_id in the body, no Authorization
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_public_client_cannot_use_client_credentials_at_registration(idp: Harness) -> None:
    """§4.4: the client credentials grant MUST only be used by confidential clients."""
    spec = ClientSpec(
        name="SPA", grant_types=["client_credentials"], scopes=["api.read"], public=True
    )
    with idp.runtime.sessions.begin() as db, pytest.raises(InvalidRegistration):
        register(db, spec, policy=idp.runtime.outbound)
    assert sql(idp, "SELECT client_id FROM clients") == []


def test_public_client_cannot_use_client_credentials(idp: Harness) -> None:
    """§4.4.2: the client MUST authenticate for client_credentials; a bare client_id is not
    authentication."""
    app = idp.client(public=True)
    response = idp.http.post("/token", data=cc_form(client_id=app.client_id))
    assert_invalid_client(response)


# --- RFC 7523 §2.2 / §3 and OIDC Core §9: private_key_jwt ----------------------------------------


@pytest.fixture
def jwt_client(idp: Harness) -> RP:
    return idp.client(auth_method="private_key_jwt", jwks=public_jwks(client_key()), **SERVICE)


def with_assertion(idp: Harness, assertion: str, **data: str) -> httpx.Response:
    return idp.http.post("/token", data=assertion_form(assertion, **cc_form(**data)))


def test_private_key_jwt(idp: Harness, jwt_client: RP) -> None:
    """RFC 7523 §2.2 and OIDC Core §9: a JWT signed with the client's registered key, with
    iss = sub = client_id, aud = the token endpoint, jti and exp, authenticates the client."""
    assert jwt_client.secret is None
    assertion = client_assertion(jwt_client.client_id, client_key())
    response = with_assertion(idp, assertion)
    assert response.status_code == 200, response.text
    claims = idp.decode(response.json()["access_token"]).claims
    assert claims["client_id"] == claims["sub"] == jwt_client.client_id


def test_private_key_jwt_issuer_audience(idp: Harness, jwt_client: RP) -> None:
    """RFC 7523 §3 item 3: the audience identifies the authorization server; its issuer
    identifier is accepted as well as the token endpoint URL."""
    assertion = client_assertion(jwt_client.client_id, client_key(), aud=ISSUER)
    assert with_assertion(idp, assertion).status_code == 200


def test_private_key_jwt_for_authorization_code(idp: Harness) -> None:
    """OIDC Core §9: private_key_jwt authenticates a code redemption too."""
    idp.user()
    rp = idp.client(auth_method="private_key_jwt", jwks=public_jwks(client_key()))
    code = idp.code_for(rp)
    assertion = client_assertion(rp.client_id, client_key())
    response = idp.exchange(rp, code, **assertion_form(assertion))
    assert response.status_code == 200, response.text
    assert idp.decode(response.json()["id_token"]).claims["aud"] == rp.client_id


def test_assertion_lifetime_up_to_one_hour(idp: Harness, jwt_client: RP) -> None:
    """RFC 7523 §3 item 4 leaves the lifetime to the server: one hour is accepted (authlib's
    default for the assertions it signs), two minutes more is refused."""
    now = int(time.time())
    hour = client_assertion(jwt_client.client_id, client_key(), iat=now, exp=now + 3600)
    assert with_assertion(idp, hour).status_code == 200
    longer = client_assertion(jwt_client.client_id, client_key(), iat=now, exp=now + 3720)
    assert_invalid_client(with_assertion(idp, longer))


def test_replayed_assertion_is_refused(idp: Harness, jwt_client: RP) -> None:
    """RFC 7523 §3 item 7 and OIDC Core §9: the jti is used once; a replay is invalid_client."""
    assertion = client_assertion(jwt_client.client_id, client_key())
    assert with_assertion(idp, assertion).status_code == 200
    assert_invalid_client(with_assertion(idp, assertion))


def test_new_jti_is_accepted_after_use(idp: Harness, jwt_client: RP) -> None:
    """RFC 7523 §3 item 7: replay protection is per jti; a fresh assertion works again."""
    for _ in range(2):
        assertion = client_assertion(jwt_client.client_id, client_key())
        assert with_assertion(idp, assertion).status_code == 200


def hs256_assertion(client_id: str) -> str:
    return client_assertion(client_id, OctKey.import_key(secrets.token_bytes(32)), alg="HS256")


def other_key_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key("attacker"), header={"kid": client_key().kid})


def expired_assertion(client_id: str) -> str:
    past = int(time.time()) - 600
    return client_assertion(client_id, client_key(), iat=past - 60, exp=past)


def wrong_aud_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key(), aud="https://other.example/token")


def long_lived_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key(), exp=int(time.time()) + 24 * 3600)


def iss_not_sub_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key(), iss="someone-else")


def no_jti_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key(), jti=None)


def no_exp_assertion(client_id: str) -> str:
    return client_assertion(client_id, client_key(), exp=None)


@pytest.mark.parametrize(
    "make",
    [
        hs256_assertion,
        other_key_assertion,
        expired_assertion,
        wrong_aud_assertion,
        long_lived_assertion,
        iss_not_sub_assertion,
        no_jti_assertion,
        no_exp_assertion,
    ],
    ids=lambda f: f.__name__.removesuffix("_assertion"),
)
def test_invalid_assertion_is_invalid_client(idp: Harness, jwt_client: RP, make: Any) -> None:
    """RFC 7523 §3: the JWT MUST be signed by the client's key with an asymmetric algorithm
    (OIDC Core §9), carry iss = sub = client_id, an aud naming this server, an unexpired exp
    (item 4, which also lets the server refuse one unreasonably far in the future) and a jti
    (item 7); otherwise invalid_client."""
    assert_invalid_client(with_assertion(idp, make(jwt_client.client_id)))


def test_failed_assertion_is_audited(idp: Harness, jwt_client: RP) -> None:
    """RFC 6749 §10.10 (credential guessing): a refused client assertion leaves a
    client_auth.failed audit row, as a refused secret does."""
    assert audit_events(idp, "client_auth.failed") == []
    assertion = wrong_aud_assertion(jwt_client.client_id)
    assert with_assertion(idp, assertion).status_code == 401
    assert len(audit_events(idp, "client_auth.failed")) == 1


def test_assertion_for_secret_client_is_refused(idp: Harness, basic_client: RP) -> None:
    """RFC 7591 §2: a client_secret_basic client cannot switch to private_key_jwt, whatever key
    signs the assertion."""
    assertion = client_assertion(basic_client.client_id, client_key())
    assert_invalid_client(with_assertion(idp, assertion))


def test_private_key_jwt_needs_keys_at_registration(idp: Harness) -> None:
    """RFC 7591 §2: private_key_jwt requires jwks or jwks_uri."""
    spec = ClientSpec(name="No keys", auth_method="private_key_jwt", **SERVICE)  # type: ignore[arg-type]
    with idp.runtime.sessions.begin() as db, pytest.raises(InvalidRegistration):
        register(db, spec, policy=idp.runtime.outbound)


# --- jwks_uri: the client's keys fetched over HTTP ---------------------------------------------


@pytest.fixture
def key_host() -> Iterator[KeyHost]:
    with serve_keys(public_jwks(client_key())) as host:
        yield host


def test_keys_from_jwks_uri_are_fetched_and_cached(idp: Harness, key_host: KeyHost) -> None:
    """OIDC Registration §2 (jwks_uri): the client's keys are fetched from its URL and cached,
    so a second token request does not fetch them again."""
    rp = idp.client(auth_method="private_key_jwt", jwks_uri=key_host.url, **SERVICE)
    for _ in range(2):
        response = with_assertion(idp, client_assertion(rp.client_id, client_key()))
        assert response.status_code == 200, response.text
    assert key_host.fetches == 1


def test_a_rotated_client_key_is_fetched_at_once(
    idp: Harness, key_host: KeyHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that rotates its key (publishes a new kid, signs with it) is accepted at once:
    an assertion whose kid the cached keys lack fetches the jwks_uri again, long before the
    cache expires. A second unknown kid soon after that fetch does not fetch again (at most one
    refetch per JWKS_MIN_REFETCH_SECONDS), and is refused."""
    rp = idp.client(auth_method="private_key_jwt", jwks_uri=key_host.url, **SERVICE)
    assert with_assertion(idp, client_assertion(rp.client_id, client_key())).status_code == 200
    # The refetch spacing has passed (instead of waiting 10 s); the cache itself is still fresh.
    monkeypatch.setattr(client_auth, "JWKS_MIN_REFETCH_SECONDS", 0)
    assert with_assertion(idp, client_assertion(rp.client_id, client_key())).status_code == 200
    assert key_host.fetches == 1  # a known kid never refetches
    new_key = client_key("client-key-rotated")
    with key_host.lock:
        key_host.document = {"keys": [client_key().as_dict(private=False),
                                      new_key.as_dict(private=False)]}  # fmt: skip
    response = with_assertion(idp, client_assertion(rp.client_id, new_key))
    assert response.status_code == 200, response.text
    assert key_host.fetches == 2
    monkeypatch.setattr(client_auth, "JWKS_MIN_REFETCH_SECONDS", 10)
    stranger = client_key("client-key-never-published")
    assert_invalid_client(with_assertion(idp, client_assertion(rp.client_id, stranger)))
    assert key_host.fetches == 2


def test_an_unreachable_jwks_uri_is_invalid_client(idp: Harness) -> None:
    """RFC 6749 §5.2: keys that cannot be fetched authenticate nobody (invalid_client, not a
    server error)."""
    rp = idp.client(
        auth_method="private_key_jwt", jwks_uri="http://127.0.0.1:9/jwks.json", **SERVICE
    )
    assert_invalid_client(with_assertion(idp, client_assertion(rp.client_id, client_key())))


# --- hostile credentials and RFC 6749 §2.3's one method per request -----------------------------


def raw_basic(credentials: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


@pytest.mark.parametrize(
    "credentials",
    [b"\xff\xfe:\xff", b"id:\xc3", b"\xed\xa0\x80:secret", b"%ff:secret", b"id:%ED%A0%80"],
    ids=["raw-latin1", "truncated-utf8", "lone-surrogate", "pct-ff", "pct-surrogate"],
)
@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_basic_credentials_that_are_not_utf8_are_invalid_client(
    idp: Harness, basic_client: RP, path: str, credentials: bytes
) -> None:
    """RFC 6749 §2.3.1 and Appendix B: the id and secret are UTF-8, form-urlencoded, then
    base64; anything else cannot authenticate a client: §5.2 invalid_client (401), not a 500."""
    data = cc_form() if path == "/token" else {"token": "x"}
    assert_invalid_client(idp.http.post(path, data=data, headers=raw_basic(credentials)))


@pytest.mark.parametrize(
    "header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic ", "Basic"]
)
def test_malformed_basic_header_is_invalid_client(idp: Harness, header: str) -> None:
    """RFC 6749 §2.3.1, §5.2: no base64, no colon, or nothing at all: invalid_client."""
    response = idp.http.post("/token", data=cc_form(), headers={"Authorization": header})
    assert_invalid_client(response)


def _second_method(rp: RP, method: str) -> dict[str, str]:
    if method == "client_secret":
        return {"client_id": rp.client_id, "client_secret": rp.secret or ""}
    return assertion_form(client_assertion(rp.client_id, client_key()))


@pytest.mark.parametrize("method", ["client_secret", "client_assertion"])
@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_two_authentication_methods_are_invalid_request(
    idp: Harness, basic_client: RP, path: str, method: str
) -> None:
    """RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    request." Basic credentials plus a body secret or assertion: §5.2 invalid_request, at the
    token endpoint and at RFC 7009 §2.1 revocation and RFC 7662 §2.1 introspection alike."""
    data = cc_form() if path == "/token" else {"token": "x"}
    data.update(_second_method(basic_client, method))
    response = idp.http.post(path, data=data, headers=basic_client.auth())
    assert response.status_code == 400, response.text
    assert error_of(response) == "invalid_request"
    assert "access_token" not in response.json()


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_body_client_id_other_than_basic_is_invalid_request(
    idp: Harness, basic_client: RP, path: str
) -> None:
    """RFC 6749 §3.2.1 lets an authenticated client also send client_id; one that names another
    client makes the request contradictory: §5.2 invalid_request ("otherwise malformed"), never
    a token for either client."""
    other = idp.client(**SERVICE)
    data = cc_form() if path == "/token" else {"token": "x"}
    data["client_id"] = other.client_id
    response = idp.http.post(path, data=data, headers=basic_client.auth())
    assert response.status_code == 400, response.text
    assert error_of(response) == "invalid_request"


def test_body_client_id_equal_to_basic_is_accepted(idp: Harness, basic_client: RP) -> None:
    """RFC 6749 §3.2.1: the same client_id in the body as in the Basic header is fine."""
    response = idp.http.post(
        "/token", data=cc_form(client_id=basic_client.client_id), headers=basic_client.auth()
    )
    assert response.status_code == 200, response.text
