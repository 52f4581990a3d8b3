"""What relying parties see of issue 4 ("Signing keys: JWKS publication and automatic rotation
that never breaks a relying party") over HTTP: /jwks.json caching across a rotation, the signing
algorithms (JWKS, discovery, ID tokens per client, access tokens), and the settings that guard
them."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from pydantic import ValidationError
from sqlalchemy import text

from idp.admin.clients import InvalidRegistration
from idp.protocol.jose import registry
from idp.settings import Settings, SettingsError, load_settings
from idp.store.keys import KeyState
from tests.conftest import ISSUER, TEST_KEK, make_settings
from tests.helpers import Harness
from tests.key_helpers import (
    SERVICE_SCOPES,
    Apps,
    Clock,
    fetch_jwks,
    header,
    in_state,
    jwks_kids,
    maintain,
    revoke,
    rotate,
    row,
    service_token,
    the_active,
)

ALL_ALGS = "RS256,ES256,EdDSA,PS256"
KTY = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@pytest.fixture
def apps() -> Iterator[Apps]:
    built = Apps()
    yield built
    built.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def every_alg(apps: Apps, database_url: str, tmp_path: Path) -> Harness:
    return apps.harness(make_settings(database_url, tmp_path, signing_algs=ALL_ALGS))


def max_age(response: Any) -> int:
    found = re.search(r"(?:^|[,\s])max-age=(\d+)", response.headers["cache-control"])
    assert found, response.headers["cache-control"]
    return int(found.group(1))


def at_hash(access_token: str, alg: str) -> str:
    hasher = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    digest = hasher(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def jwks_by_kid(idp: Harness) -> dict[str, dict[str, Any]]:
    return {key["kid"]: key for key in idp.http.get("/jwks.json").json()["keys"]}


# --- /jwks.json caching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwks_max_age", "refresh", "window"), [(300, 30, 3600), (120, 10, 250), (0, 1, 1)]
)
def test_max_age_is_the_setting_and_shorter_than_the_window(
    apps: Apps, database_url: str, tmp_path: Path, jwks_max_age: int, refresh: int, window: int
) -> None:
    """Issue 4, Lifecycle ("The JWKS answer carries Cache-Control max-age shorter than the
    pre-publication window") and RFC 9111 §5.2.2.1: max-age is IDP_JWKS_MAX_AGE_SECONDS, and a
    relying party's copy expires before a staged key starts signing."""
    settings = make_settings(
        database_url,
        tmp_path,
        jwks_max_age_seconds=jwks_max_age,
        key_refresh_seconds=refresh,
        key_prepublication_seconds=window,
    )
    h = apps.harness(settings)
    response = h.http.get("/jwks.json")
    assert response.status_code == 200
    assert max_age(response) == jwks_max_age
    assert max_age(response) < settings.key_prepublication_seconds
    assert "no-store" not in response.headers["cache-control"]


def test_etag_changes_when_the_key_set_changes(idp: Harness, clock: Clock) -> None:
    """Issue 4, Lifecycle (the JWKS answer carries "an ETag") and RFC 9110 §8.8.3, §13.1.2: the
    tag names the key set: it is stable while the set is, differs once a key is staged (a
    relying party revalidating with the old tag gets the new set, not a 304), and changes again
    when a key is revoked."""
    services = idp.runtime
    first = idp.http.get("/jwks.json")
    assert idp.http.get("/jwks.json").headers["etag"] == first.headers["etag"]
    staged = rotate(services)
    services.keys.load()
    second = idp.http.get("/jwks.json")
    assert second.headers["etag"] != first.headers["etag"]
    revalidated = idp.http.get("/jwks.json", headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 200
    assert staged in {key["kid"] for key in revalidated.json()["keys"]}
    current = idp.http.get("/jwks.json", headers={"If-None-Match": second.headers["etag"]})
    assert current.status_code == 304
    revoke(services, staged)
    services.keys.load()
    assert idp.http.get("/jwks.json").headers["etag"] != second.headers["etag"]


def test_activation_keeps_the_published_set(idp: Harness, clock: Clock) -> None:
    """Issue 4, Lifecycle (a staged key is published before it signs): activating it changes
    who signs, not what is published: the JWKS body stays the same, so a cached copy stays
    valid."""
    services = idp.runtime
    new = rotate(services)
    services.keys.load()
    before = idp.http.get("/jwks.json")
    clock.set(max(r.activates_at or 0 for r in in_state(services, KeyState.STAGED)))
    services.keys.tick()
    assert the_active(services).kid == new
    after = idp.http.get("/jwks.json")
    assert after.json() == before.json()


@pytest.mark.parametrize(
    ("jwks_max_age", "refresh", "window"),
    [(300, 30, 629), (300, 30, 600), (600, 60, 1259), (0, 30, 29), (100, 500, 699)],
)
def test_settings_refuse_a_window_shorter_than_two_cache_lifetimes(
    database_url: str, tmp_path: Path, jwks_max_age: int, refresh: int, window: int
) -> None:
    """Issue 4, Lifecycle ("a new key is staged at least a pre-publication window before it
    activates (default at least twice the JWKS cache lifetime)"): a window shorter than twice
    max-age plus the key refresh interval is refused, by Settings (ValidationError) and by
    load_settings (a one-line SettingsError)."""
    overrides: dict[str, object] = {
        "issuer": ISSUER,
        "database_url": database_url,
        "key_encryption_key": TEST_KEK,
        "jwks_max_age_seconds": jwks_max_age,
        "key_refresh_seconds": refresh,
        "key_prepublication_seconds": window,
    }
    with pytest.raises(ValidationError, match="PREPUBLICATION"):
        Settings(**overrides)  # type: ignore[arg-type]
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert "\n" not in str(caught.value)
    # Exactly the minimum is accepted.
    overrides["key_prepublication_seconds"] = 2 * jwks_max_age + refresh
    assert Settings(**overrides).key_prepublication_seconds == 2 * jwks_max_age + refresh  # type: ignore[arg-type]


def test_settings_refuse_a_window_as_long_as_the_rotation(database_url: str) -> None:
    """Issue 4, Lifecycle (staged a window "before it activates", on a rotation schedule): a
    window that is not shorter than the rotation period is refused."""
    with pytest.raises(SettingsError, match="PREPUBLICATION"):
        load_settings(
            issuer=ISSUER,
            database_url=database_url,
            key_rotation_days=1,
            key_prepublication_seconds=86400,
        )


# --- algorithms ---------------------------------------------------------------------------------


def test_jwks_has_one_key_per_enabled_algorithm(every_alg: Harness) -> None:
    """Issue 4, Algorithms ("each enabled algorithm has its own key") and RFC 7517 §4, RFC 7518
    §6, RFC 8037 §2: one active key per algorithm, each with its kty, alg and use=sig (EC on
    P-256, OKP on Ed25519), none with a private member."""
    keys = every_alg.http.get("/jwks.json").json()["keys"]
    assert sorted(key["alg"] for key in keys) == sorted(ALL_ALGS.split(","))
    for key in keys:
        assert key["kty"] == KTY[key["alg"]]
        assert key["use"] == "sig"
        assert key["kid"]
        assert not set(PRIVATE_MEMBERS) & set(key)
        if key["alg"] == "ES256":
            assert key["crv"] == "P-256"
        if key["alg"] == "EdDSA":
            assert key["crv"] == "Ed25519"
    for alg in ALL_ALGS.split(","):
        assert the_active(every_alg.runtime, alg).kid in {key["kid"] for key in keys}


def test_discovery_lists_exactly_the_enabled_algorithms(every_alg: Harness) -> None:
    """Issue 4, Algorithms ("Discovery advertises exactly what is enabled") and OIDC Discovery
    §3 id_token_signing_alg_values_supported."""
    document = every_alg.http.get("/.well-known/openid-configuration").json()
    assert sorted(document["id_token_signing_alg_values_supported"]) == sorted(ALL_ALGS.split(","))


def test_discovery_lists_rs256_alone_by_default(idp: Harness) -> None:
    """Issue 4, Algorithms ("RS256 always (mandatory for OpenID Connect)") and OIDC Discovery §3
    (RS256 MUST be included): by default it is the only one, and the JWKS has only its key."""
    document = idp.http.get("/.well-known/openid-configuration").json()
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert [key["alg"] for key in idp.http.get("/jwks.json").json()["keys"]] == ["RS256"]


def test_rs256_is_enabled_even_when_not_listed(
    apps: Apps, database_url: str, tmp_path: Path
) -> None:
    """Issue 4, Algorithms ("RS256 always"): IDP_SIGNING_ALGS=ES256 still has an RS256 key, and
    discovery lists both."""
    h = apps.harness(make_settings(database_url, tmp_path, signing_algs="ES256"))
    document = h.http.get("/.well-known/openid-configuration").json()
    assert sorted(document["id_token_signing_alg_values_supported"]) == ["ES256", "RS256"]
    assert sorted(key["alg"] for key in h.http.get("/jwks.json").json()["keys"]) == [
        "ES256",
        "RS256",
    ]


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "PS256"])
def test_id_token_uses_the_clients_algorithm(every_alg: Harness, alg: str) -> None:
    """Issue 4, Algorithms ("A client may ask for its ID token algorithm
    (id_token_signed_response_alg)"), OIDC Core §3.1.3.7 (validate with the alg and kid of the
    header) and §3.1.3.6 (at_hash: the left half of the hash of the access token, with the hash
    of the alg: SHA-256 for the *256 algorithms, SHA-512 for EdDSA on Ed25519)."""
    every_alg.user()
    rp = every_alg.client(id_token_signed_response_alg=alg)
    tokens = every_alg.tokens(rp)
    id_token = tokens["id_token"]
    hdr = header(id_token)
    assert hdr["alg"] == alg
    published = jwks_by_kid(every_alg)
    assert hdr["kid"] in published
    assert published[hdr["kid"]]["alg"] == alg
    assert hdr["kid"] == the_active(every_alg.runtime, alg).kid
    # The IdP's own registry: joserfc warns on "EdDSA" (RFC 9864), which OIDC still uses.
    claims = jwt.decode(id_token, fetch_jwks(every_alg.http), registry=registry(alg)).claims
    assert claims["aud"] == rp.client_id
    assert claims["iss"] == ISSUER
    assert claims["at_hash"] == at_hash(tokens["access_token"], alg)
    others = [a for a in KTY if a != alg]
    with pytest.raises(JoseError):
        jwt.decode(id_token, fetch_jwks(every_alg.http), algorithms=others)


def test_client_without_a_preference_gets_rs256(every_alg: Harness) -> None:
    """OIDC Registration §2 (id_token_signed_response_alg defaults to RS256), issue 4
    Algorithms: with every algorithm enabled, a client that asked for none gets RS256."""
    every_alg.user()
    id_token = every_alg.tokens(every_alg.client())["id_token"]
    assert header(id_token)["alg"] == "RS256"
    assert header(id_token)["kid"] == the_active(every_alg.runtime, "RS256").kid


def test_access_token_algorithm_is_a_setting(apps: Apps, database_url: str, tmp_path: Path) -> None:
    """Issue 4, Algorithms ("the access-token algorithm is a setting"): with
    IDP_ACCESS_TOKEN_ALG=ES256, access tokens (client_credentials and code grant) are ES256 with
    the ES256 key's kid and verify with the JWKS; /userinfo accepts them; ID tokens stay RS256."""
    h = apps.harness(
        make_settings(database_url, tmp_path, signing_algs="RS256,ES256", access_token_alg="ES256")
    )
    es256 = the_active(h.runtime, "ES256").kid
    service = h.client(grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[])
    token = service_token(h, service)
    assert header(token)["alg"] == "ES256"
    assert header(token)["kid"] == es256
    jwt.decode(token, fetch_jwks(h.http), algorithms=["ES256"])
    h.user()
    tokens = h.tokens(h.client())
    assert header(tokens["access_token"])["alg"] == "ES256"
    assert header(tokens["access_token"])["kid"] == es256
    assert header(tokens["id_token"])["alg"] == "RS256"
    response = h.http.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["sub"]


def test_client_asking_for_a_disabled_algorithm_gets_a_server_error(
    apps: Apps, database_url: str, tmp_path: Path
) -> None:
    """Issue 4, Algorithms (ID tokens are signed only with enabled algorithms) and RFC 6749
    §5.2 (errors are JSON): a client registered for ES256 while it was enabled, after the
    operator turned ES256 off, gets a JSON server_error from /token, never a 200 with an ID token
    in another algorithm."""
    with_es256 = apps.harness(make_settings(database_url, tmp_path, signing_algs="RS256,ES256"))
    with_es256.user()
    rp = with_es256.client(id_token_signed_response_alg="ES256")
    rs256_only = apps.harness(make_settings(database_url, tmp_path), migrate=False)
    response = rs256_only.exchange(rp, rs256_only.code_for(rp))
    assert response.status_code >= 400
    assert response.status_code != 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "server_error"
    assert "id_token" not in body
    assert "access_token" not in body


def test_client_alg_column_unsupported_by_the_server_never_gets_tokens(
    idp: Harness,
) -> None:
    """Issue 4, Algorithms (only enabled algorithms sign): a client row whose algorithm is not
    enabled (here PS256 on an RS256-only server, set directly in the table) gets server_error."""
    idp.user()
    rp = idp.client()
    with idp.runtime.sessions.begin() as db:
        db.execute(
            text("UPDATE clients SET id_token_signed_response_alg = 'PS256' WHERE client_id = :c"),
            {"c": rp.client_id},
        )
    response = idp.exchange(rp, idp.code_for(rp))
    assert response.status_code != 200
    assert response.json()["error"] == "server_error"


def test_disabling_an_algorithm_retires_its_key(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Lifecycle ("active: signs new tokens"; "retired: still published, verifies only,
    until every token it signed has expired; then removed"): once ES256 is turned off, its key
    signs nothing, so it is no longer active: it retires, stays published until its tokens have
    expired, and is then removed from the JWKS."""
    before = apps.harness(make_settings(database_url, tmp_path, signing_algs="RS256,ES256"))
    es256 = the_active(before.runtime, "ES256").kid
    after = apps.harness(make_settings(database_url, tmp_path), migrate=False)
    maintain(after.runtime)
    after.runtime.keys.load()
    key = row(after.runtime, es256)
    assert key.state == KeyState.RETIRED, f"ES256 is off but its key is still {key.state}"
    assert es256 in jwks_kids(after.http)
    clock.set(key.remove_after or 0)
    maintain(after.runtime)
    after.runtime.keys.load()
    assert es256 not in jwks_kids(after.http)


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")
def test_eddsa_at_hash_is_the_left_half_of_sha512(every_alg: Harness) -> None:
    """OIDC Core §3.1.3.6 (at_hash uses the hash of the ID token's alg; for EdDSA on Ed25519
    that is SHA-512): the EdDSA ID token's at_hash is the left 32 bytes of SHA-512 of the access
    token, not SHA-256's. (joserfc's RFC 9864 deprecation warning for "EdDSA" is set aside here;
    test_id_token_uses_the_clients_algorithm[EdDSA] checks the server does not emit it.)"""
    every_alg.user()
    tokens = every_alg.tokens(every_alg.client(id_token_signed_response_alg="EdDSA"))
    claims = jwt.decode(tokens["id_token"], fetch_jwks(every_alg.http), algorithms=["EdDSA"]).claims
    assert claims["at_hash"] == at_hash(tokens["access_token"], "EdDSA")
    assert claims["at_hash"] != at_hash(tokens["access_token"], "RS256")
    assert len(base64.urlsafe_b64decode(claims["at_hash"] + "==")) == 32


@pytest.mark.parametrize("alg", ["HS256", "none", "RS512", "ES384"])
def test_registration_refuses_an_unsupported_id_token_alg(idp: Harness, alg: str) -> None:
    """Issue 4, Algorithms (RS256, ES256, EdDSA and PS256 are the algorithms there are) and OIDC
    Core §3.1.3.7 (an ID token from the token endpoint is signed; HS256 would need the client
    secret as key, "none" is no signature): registering any other ID token algorithm fails."""
    with pytest.raises(InvalidRegistration, match=re.escape(alg)):
        idp.client(id_token_signed_response_alg=alg)
