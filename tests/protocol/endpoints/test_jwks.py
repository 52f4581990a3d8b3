"""GET /jwks.json: the JWK Set of RFC 7517 §5, cached per RFC 9111 and RFC 9110 §13."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jws

from tests.helpers import Harness

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@pytest.fixture
def keys(idp: Harness) -> list[dict[str, Any]]:
    response = idp.http.get("/jwks.json")
    assert response.status_code == 200
    return response.json()["keys"]  # type: ignore[no-any-return]


def test_content_type_is_jwk_set(idp: Harness) -> None:
    """RFC 7517 §8.5.1: application/jwk-set+json (any JSON type is accepted by clients)."""
    content_type = idp.http.get("/jwks.json").headers["content-type"]
    assert content_type.split(";")[0] in ("application/jwk-set+json", "application/json")


def test_keys_are_rsa_signing_keys(keys: list[dict[str, Any]]) -> None:
    """RFC 7517 §4.1-§4.5 and RFC 7518 §6.3.1: kty, kid, use=sig, alg RS256, n and e."""
    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["kid"]
        assert key["use"] == "sig"
        assert key["alg"] == "RS256"
        assert key["n"]
        assert key["e"]


def test_no_private_members_are_published(keys: list[dict[str, Any]]) -> None:
    """RFC 7518 §6.3.2: d, p, q, dp, dq, qi are private; a JWK Set served to everyone has none."""
    for key in keys:
        assert not set(PRIVATE_MEMBERS) & set(key), sorted(key)


def test_kids_are_unique(keys: list[dict[str, Any]]) -> None:
    """RFC 7517 §4.5: kid values should be unique within a JWK Set, so a kid names one key."""
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids))


def test_etag_and_max_age(idp: Harness) -> None:
    """RFC 9110 §8.8.3 ETag and RFC 9111 §5.2.2.1 max-age: relying parties can cache the set."""
    response = idp.http.get("/jwks.json")
    assert response.headers["etag"].startswith('"')
    assert "max-age=" in response.headers["cache-control"]


def test_if_none_match_is_304(idp: Harness) -> None:
    """RFC 9110 §13.1.2: If-None-Match with the current ETag answers 304 Not Modified,
    with the same ETag and Cache-Control (§15.4.5)."""
    first = idp.http.get("/jwks.json")
    etag = first.headers["etag"]
    again = idp.http.get("/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]


def test_stale_etag_is_200(idp: Harness) -> None:
    """RFC 9110 §13.1.2: a non-matching entity tag gets the full representation."""
    response = idp.http.get("/jwks.json", headers={"If-None-Match": '"something-else"'})
    assert response.status_code == 200
    assert response.json()["keys"]


@pytest.mark.parametrize("form", ["weak", "list", "star"])
def test_if_none_match_uses_weak_comparison_and_lists(idp: Harness, form: str) -> None:
    """RFC 9110 §13.1.2: If-None-Match is "*" or a list of entity tags, compared with the weak
    comparison function (a proxy may have weakened the tag to W/"...")."""
    etag = idp.http.get("/jwks.json").headers["etag"]
    header = {"weak": f"W/{etag}", "list": f'"older", {etag}', "star": "*"}[form]
    assert idp.http.get("/jwks.json", headers={"If-None-Match": header}).status_code == 304


def test_id_token_kid_is_in_the_set(idp: Harness, keys: list[dict[str, Any]]) -> None:
    """OIDC Core §10.1: the kid of a signed ID token names a key of the published set."""
    idp.user()
    id_token = idp.tokens(idp.client())["id_token"]
    header = jws.extract_compact(id_token.encode()).protected
    assert header["kid"] in {key["kid"] for key in keys}
