"""A client's keys for private_key_jwt (RFC 7523 §2.2, OIDC Core §9; issue 11, client-JWKS key
strength): only public keys strong enough for the assertion algorithms we verify. Registration
(register(), `--jwks-file`) refuses any other key with a reason; a fetched jwks_uri document is
used without them, so an assertion signed with one is invalid_client.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from idp.admin.clients import InvalidRegistration, load_jwks_file
from idp.protocol import client_auth
from idp.protocol.client_jwks import key_problem
from tests.helpers import Harness
from tests.key_host import serve_keys
from tests.protocol.test_client_auth import SERVICE, assert_invalid_client
from tests.token_helpers import assertion_form, client_assertion, client_key


@pytest.fixture(autouse=True)
def _no_cached_client_keys() -> Iterator[None]:
    client_auth.REMOTE_JWKS.clear()
    yield
    client_auth.REMOTE_JWKS.clear()


@cache
def weak_rsa() -> RSAKey:
    """A 1024-bit RSA key pair (joserfc warns when it makes one; this test means to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RSAKey.generate_key(1024, parameters={"kid": "weak", "alg": "RS256"})


@cache
def p384() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "p384"})


@cache
def p256() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "p256"})


@cache
def ed25519() -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": "ed25519"})


def public(key: Any) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


REFUSED: dict[str, tuple[Any, str]] = {
    "oct": (lambda: OctKey.generate_key(256).as_dict(), "is a symmetric (oct) key"),
    "rsa-private": (lambda: client_key().as_dict(private=True), "holds private key material"),
    "rsa-private-parts-without-d": (
        lambda: {k: v for k, v in client_key().as_dict(private=True).items() if k != "d"},
        "holds private key material",
    ),
    "ec-private": (lambda: p256().as_dict(private=True), "holds private key material"),
    "okp-private": (lambda: ed25519().as_dict(private=True), "holds private key material"),
    "rsa-1024": (lambda: public(weak_rsa()), "is an RSA key of 1024 bits; at least 2048"),
    "ec-p384": (lambda: public(p384()), "is on curve 'P-384'; only P-256"),
    "okp-ed448": (
        lambda: public(OKPKey.generate_key("Ed448")),
        "is on curve 'Ed448'; only Ed25519",
    ),
    "okp-x25519": (
        lambda: public(OKPKey.generate_key("X25519")),
        "is on curve 'X25519'; only Ed25519",
    ),
    "rsa-for-rs512": (lambda: {**public(client_key()), "alg": "RS512"}, "is declared for 'RS512'"),
    "rsa-for-encryption": (lambda: {**public(client_key()), "use": "enc"}, "is for use 'enc'"),
    "unknown-kty": (lambda: {"kty": "XYZ", "x": "AA"}, "has key type 'XYZ'"),
}


@pytest.mark.parametrize(("make", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_registration_refuses_a_key_we_would_not_verify_with(
    idp: Harness, make: Any, reason: str
) -> None:
    """Issue 11: RSA of at least 2048 bits, EC P-256 and OKP Ed25519 only, public keys only
    (a client must never hand us its private key), never oct; refused in one line that names
    the key."""
    jwks = {"keys": [public(client_key()), make()]}
    with pytest.raises(InvalidRegistration) as raised:
        idp.client(auth_method="private_key_jwt", jwks=jwks, **SERVICE)
    message = str(raised.value)
    assert message.startswith("jwks: key 2") and reason in message, message
    assert "\n" not in message


def test_registration_accepts_each_strong_public_key(idp: Harness) -> None:
    """RSA 2048 (RS256/PS256), EC P-256 (ES256) and Ed25519 (EdDSA) public keys register."""
    jwks = {"keys": [public(client_key()), public(p256()), public(ed25519())]}
    idp.client(auth_method="private_key_jwt", jwks=jwks, **SERVICE)


def test_registration_refuses_an_empty_key_set(idp: Harness) -> None:
    """A JWK Set without keys could never verify an assertion."""
    with pytest.raises(InvalidRegistration, match="at least one key"):
        idp.client(auth_method="private_key_jwt", jwks={"keys": []}, **SERVICE)


def test_a_jwks_file_holding_a_private_key_is_refused_with_its_path(tmp_path: Path) -> None:
    """`idp clients create --jwks-file`: a file holding the client's private key is refused,
    naming the file and the key."""
    path = tmp_path / "client.jwks"
    path.write_text(json.dumps({"keys": [client_key().as_dict(private=True)]}))
    with pytest.raises(InvalidRegistration) as raised:
        load_jwks_file(path)
    assert str(raised.value).startswith(f"{path}: jwks: key 1 ('client-key-1') holds private")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (lambda: public(client_key()), None),
        (lambda: public(p256()), None),
        (lambda: public(ed25519()), None),
        (lambda: {**public(client_key()), "alg": "PS256", "use": "sig"}, None),
        (lambda: {**public(ed25519()), "alg": "EdDSA"}, None),
        (lambda: {"kty": "RSA", "e": "AQAB"}, "has no valid RSA modulus ('n')"),
        (lambda: "a string", "is not a JSON object"),
    ],
)
def test_key_problem(key: Any, problem: str | None) -> None:
    """What client_jwks.key_problem says of keys it accepts and of malformed ones."""
    assert key_problem(key()) == problem


def test_a_weak_key_in_a_fetched_document_is_ignored(idp: Harness) -> None:
    """Issue 11: a jwks_uri document is what the client's host serves; a 1024-bit RSA key in
    it is not used, so an assertion signed with it is invalid_client, while an assertion signed
    with the strong key beside it still authenticates."""
    with serve_keys({"keys": [public(weak_rsa()), public(client_key())]}) as host:
        rp = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        weak = client_assertion(rp.client_id, weak_rsa())
        form = assertion_form(weak, grant_type="client_credentials")
        assert_invalid_client(idp.http.post("/token", data=form))
        strong = assertion_form(
            client_assertion(rp.client_id, client_key()), grant_type="client_credentials"
        )
        assert idp.http.post("/token", data=strong).status_code == 200


@pytest.mark.parametrize("kind", ["private-rsa", "oct"])
def test_a_fetched_document_of_private_or_symmetric_keys_authenticates_nobody(
    idp: Harness, kind: str
) -> None:
    """Issue 11: a client host that publishes its private key, or a symmetric key, has
    published no key we use: its assertions are invalid_client."""
    if kind == "private-rsa":
        document = {"keys": [client_key().as_dict(private=True)]}
    else:
        document = {"keys": [{**OctKey.generate_key(256).as_dict(), "kid": "client-key-1"}]}
    with serve_keys(document) as host:
        rp = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        assertion = client_assertion(rp.client_id, client_key())
        response = idp.http.post(
            "/token", data=assertion_form(assertion, grant_type="client_credentials")
        )
        assert_invalid_client(response)
