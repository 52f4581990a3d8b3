"""Issue 3, "Refresh tokens": the refresh_token grant over HTTP (RFC 6749 §6, RFC 9700 §4.14,
OIDC Core §11-12): issuance, storage, rotation, lifetimes, refreshed ID tokens, reuse detection,
the retry window, the concurrent race and crash safety."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from starlette.testclient import TestClient

from idp.protocol import refresh as refresh_grant
from idp.protocol.server import IdpServer
from idp.store import refresh_tokens as refresh_store
from tests.helpers import RP, Harness
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    age_use,
    family_row,
    family_tokens,
    harness,
    hashed,
    introspected,
    offline_client,
    refresh,
    refreshed,
    token_row,
    userinfo,
)
from tests.token_helpers import ISSUER, error_of, sql

DAY = 86400


@pytest.fixture
def rp(idp: Harness) -> RP:
    """A confidential client with the refresh_token grant, and its user."""
    idp.user()
    return offline_client(idp)


@pytest.fixture
def offline(idp: Harness, rp: RP) -> dict[str, Any]:
    """The token response of a code exchange that granted offline_access."""
    return idp.tokens(rp, scope=OFFLINE_SCOPE)


@pytest.fixture
def strict(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    """An IdP with the retry window turned off (refresh_token_reuse_grace_seconds=0)."""
    with harness(database_url, tmp_path, refresh_token_reuse_grace_seconds=0) as built:
        built.user()
        yield built


def freeze_refresh_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stop the clock the refresh grant and its store read: every step happens in one second."""
    instant = int(time.time())
    monkeypatch.setattr(refresh_grant, "now", lambda: instant)
    monkeypatch.setattr(refresh_store, "now", lambda: instant)
    return instant


def reused_events(idp: Harness) -> list[Any]:
    return sql(
        idp, "SELECT client_id, user_id, ip FROM audit_events WHERE event = 'refresh.reused'"
    )


def consent_page_shown(response: Any) -> bool:
    return response.status_code == 200 and 'action="/consent"' in response.text


# --- issuance -------------------------------------------------------------------------------------


def test_discovery_lists_the_refresh_token_grant(idp: Harness) -> None:
    """Issue 3, Refresh tokens / RFC 8414 §2: grant_types_supported names refresh_token."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert "refresh_token" in metadata["grant_types_supported"]


def test_refresh_token_issued_with_grant_and_offline_access(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("issued when the client may use the refresh_token grant and the
    user granted offline_access"); OIDC Core §11; RFC 6749 §5.1 (refresh_token OPTIONAL)."""
    assert isinstance(offline.get("refresh_token"), str)
    assert refreshed(idp, rp, offline["refresh_token"])["access_token"]


def test_no_refresh_token_without_offline_access(idp: Harness, rp: RP) -> None:
    """Issue 3, Refresh tokens; OIDC Core §11: without offline_access no refresh token, even
    for a client that may use the refresh_token grant."""
    body = idp.tokens(rp, scope="openid profile")
    assert "refresh_token" not in body
    assert sql(idp, "SELECT count(*) FROM refresh_tokens")[0][0] == 0


def test_no_refresh_token_for_client_without_the_grant(idp: Harness) -> None:
    """Issue 3, Refresh tokens ("the client may use the refresh_token grant"); RFC 6749 §6: a
    client not registered for refresh_token gets none, even when offline_access was granted."""
    idp.user()
    rp = idp.client()  # authorization_code only
    body = idp.tokens(rp, scope=OFFLINE_SCOPE)
    assert "refresh_token" not in body
    assert sql(idp, "SELECT count(*) FROM refresh_tokens")[0][0] == 0


def test_client_without_the_grant_cannot_refresh(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """RFC 6749 §5.2 unauthorized_client: a client without the refresh_token grant presenting
    a refresh token (here: another client's) is refused."""
    other = idp.client(name="No refresh")
    response = refresh(idp, other, offline["refresh_token"])
    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"
    assert "access_token" not in response.json()


def test_consent_asked_for_offline_access_even_when_remembered(idp: Harness, rp: RP) -> None:
    """Issue 3, Refresh tokens ("consent is always asked for offline_access"); OIDC Core §11:
    a remembered consent does not cover offline_access. Control: the same remembered consent
    without offline_access is not asked again."""
    idp.tokens(rp, scope=OFFLINE_SCOPE)  # signs in and consents (remembered)
    assert not consent_page_shown(idp.follow_local(idp.authorize(rp, scope="openid profile")))
    assert consent_page_shown(idp.follow_local(idp.authorize(rp, scope=OFFLINE_SCOPE)))


def test_consent_asked_for_offline_access_even_for_trusted_client(idp: Harness) -> None:
    """Issue 3, Refresh tokens ("consent is always asked for offline_access"); OIDC Core §11:
    a trusted (first-party) client skips consent, except for offline_access."""
    idp.user()
    trusted = offline_client(idp, trusted=True)
    idp.login()
    assert not consent_page_shown(idp.follow_local(idp.authorize(trusted, scope="openid profile")))
    assert consent_page_shown(idp.follow_local(idp.authorize(trusted, scope=OFFLINE_SCOPE)))
    assert "refresh_token" in idp.tokens(trusted, scope=OFFLINE_SCOPE)


# --- the token itself -----------------------------------------------------------------------------


def test_refresh_tokens_are_opaque_and_256_bits(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("opaque, at least 256 bits"); RFC 9700 §4.14: the first token
    and its successor are 43+ base64url characters (256 bits), not JWTs."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)["refresh_token"]
    for value in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", value), value
        assert "." not in value
    assert first != second


def test_refresh_tokens_are_stored_only_as_sha256(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("stored only as a hash"): the SHA-256 of each token is in
    refresh_tokens; the raw value appears in no column of any table."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)["refresh_token"]
    hashes = {row.token_hash for row in sql(idp, "SELECT token_hash FROM refresh_tokens")}
    assert hashes == {hashed(first), hashed(second)}
    with idp.runtime.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        for table in tables:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 (table names)
                dumped = repr(tuple(row))
                assert first not in dumped, table
                assert second not in dumped, table


def test_refresh_token_bound_to_client_and_family(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("bound to the client and to a grant, the token family"):
    the row names the client and a family of this client and user."""
    row = token_row(idp, offline["refresh_token"])
    assert row is not None
    assert row.client_id == rp.client_id
    family = family_row(idp, row.family_id)
    assert family.client_id == rp.client_id
    assert family.user_id == idp.decode(offline["id_token"]).claims["sub"]


def test_another_client_presenting_the_token_is_invalid_grant(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """RFC 6749 §6 ("the refresh token was issued to the authenticated client") and §5.2
    invalid_grant: a refresh token is bound to its client."""
    thief = offline_client(idp, name="Other RP")
    response = refresh(idp, thief, offline["refresh_token"])
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert "access_token" not in response.json()


def test_public_client_refreshes_with_client_id(idp: Harness) -> None:
    """RFC 6749 §6 / RFC 9700 §4.14.2: a public client (no secret) refreshes with its client_id
    and gets a rotated token."""
    idp.user()
    app = offline_client(idp, public=True)
    body = idp.tokens(app, scope=OFFLINE_SCOPE)
    renewed = refreshed(idp, app, body["refresh_token"])
    assert renewed["refresh_token"] != body["refresh_token"]


def test_missing_refresh_token_is_invalid_request(idp: Harness, rp: RP) -> None:
    """RFC 6749 §6 (refresh_token REQUIRED) and §5.2 invalid_request."""
    response = refresh(idp, rp, None)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_unknown_refresh_token_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """RFC 6749 §5.2 invalid_grant: a refresh token this server never issued."""
    response = refresh(idp, rp, "x" * 43)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


# --- rotation and scope ---------------------------------------------------------------------------


def test_every_use_rotates(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Refresh tokens ("every use rotates: a new refresh token is returned and the
    presented one is dead"); RFC 9700 §4.14.2: each refresh returns a new refresh token, the
    presented one is no longer active, and the new one refreshes in turn."""
    first = offline["refresh_token"]
    body = refreshed(idp, rp, first)
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != first
    assert introspected(idp, rp, first) == {"active": False}
    assert token_row(idp, first).used_at is not None
    third = refreshed(idp, rp, body["refresh_token"])["refresh_token"]
    assert third not in (first, body["refresh_token"])


def test_presented_token_is_dead_after_the_grace_window(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("the presented one is dead"), with the default retry window:
    once the window has passed, the rotated token is invalid_grant."""
    first = offline["refresh_token"]
    refreshed(idp, rp, first)
    age_use(idp, first, 60)
    response = refresh(idp, rp, first)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_scope_can_narrow_and_never_widen_again(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """RFC 6749 §6 (the requested scope MUST NOT include any scope not originally granted) and
    issue 3 ("scope can only narrow"): the narrower access token and refresh token carry the
    narrower scope; a later refresh cannot get the dropped scope back."""
    narrowed = refreshed(idp, rp, offline["refresh_token"], scope="openid offline_access")
    claims = idp.decode(narrowed["access_token"]).claims
    assert set(claims["scope"].split()) == {"openid", "offline_access"}
    assert set(introspected(idp, rp, narrowed["refresh_token"])["scope"].split()) == {
        "openid",
        "offline_access",
    }
    wider = refresh(idp, rp, narrowed["refresh_token"], scope=OFFLINE_SCOPE)
    assert wider.status_code == 400
    assert error_of(wider) == "invalid_scope"
    later = refreshed(idp, rp, narrowed["refresh_token"])
    assert "profile" not in idp.decode(later["access_token"]).claims["scope"].split()


def test_wider_scope_is_invalid_scope_and_does_not_consume(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """RFC 6749 §6 / §5.2 invalid_scope: a scope beyond the grant is refused, and the refused
    request does not cost the client its token: it is still active and still refreshes."""
    token = offline["refresh_token"]
    response = refresh(idp, rp, token, scope=OFFLINE_SCOPE + " email")
    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"
    assert introspected(idp, rp, token)["active"] is True
    assert token_row(idp, token).used_at is None
    assert refreshed(idp, rp, token)["refresh_token"]


# --- lifetimes ------------------------------------------------------------------------------------


def test_default_lifetimes(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Refresh tokens ("idle and absolute lifetimes ... with documented defaults"):
    14 days idle per token, 30 days absolute per family (settings defaults)."""
    settings = idp.runtime.settings
    assert settings.refresh_token_idle_ttl_seconds == 14 * DAY
    assert settings.refresh_token_absolute_ttl_seconds == 30 * DAY
    row = token_row(idp, offline["refresh_token"])
    family = family_row(idp, row.family_id)
    assert row.expires_at - row.created_at == 14 * DAY
    assert family.expires_at - family.created_at == 30 * DAY


def test_per_client_lifetimes(idp: Harness) -> None:
    """Issue 3, Refresh tokens ("idle and absolute lifetimes per client"): a client's
    refresh_token_idle_ttl / refresh_token_absolute_ttl override the settings, for the first
    token, the family and every successor."""
    idp.user()
    rp = offline_client(idp, refresh_token_idle_ttl=600, refresh_token_absolute_ttl=3600)
    first = idp.tokens(rp, scope=OFFLINE_SCOPE)["refresh_token"]
    row = token_row(idp, first)
    family = family_row(idp, row.family_id)
    assert row.expires_at - row.created_at == 600
    assert family.expires_at - family.created_at == 3600
    successor = token_row(idp, refreshed(idp, rp, first)["refresh_token"])
    assert successor.expires_at - successor.created_at == 600


def test_idle_expired_token_is_invalid_grant(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Refresh tokens (idle lifetime); RFC 6749 §5.2 invalid_grant (expired)."""
    token = offline["refresh_token"]
    sql(
        idp,
        "UPDATE refresh_tokens SET expires_at = :t WHERE token_hash = :h",
        t=int(time.time()) - 1,
        h=hashed(token),
    )
    response = refresh(idp, rp, token)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_family_past_absolute_lifetime_is_invalid_grant(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens (absolute lifetime): once the family is past its absolute
    expiry, even a token within its idle lifetime is invalid_grant."""
    token = offline["refresh_token"]
    row = token_row(idp, token)
    sql(
        idp,
        "UPDATE token_families SET expires_at = :t WHERE id = :f",
        t=int(time.time()) - 1,
        f=row.family_id,
    )
    response = refresh(idp, rp, token)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert "access_token" not in response.json()


def test_successor_never_outlives_the_family(idp: Harness) -> None:
    """Issue 3, Refresh tokens (absolute lifetime caps the idle one): no token of a family
    expires after the family, neither the first nor a successor."""
    idp.user()
    rp = offline_client(idp, refresh_token_idle_ttl=7200, refresh_token_absolute_ttl=3600)
    first = idp.tokens(rp, scope=OFFLINE_SCOPE)["refresh_token"]
    row = token_row(idp, first)
    assert row.expires_at <= family_row(idp, row.family_id).expires_at
    soon = int(time.time()) + 100
    sql(idp, "UPDATE token_families SET expires_at = :t WHERE id = :f", t=soon, f=row.family_id)
    successor = token_row(idp, refreshed(idp, rp, first)["refresh_token"])
    assert successor.expires_at <= soon


# --- refreshed ID tokens --------------------------------------------------------------------------


def test_refreshed_id_token_keeps_sub_aud_auth_time_sid(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """OIDC Core §12.2: the refreshed ID token has the same iss, sub, aud and auth_time (and
    here sid) as the original, no nonce, and verifies against the published JWKS."""
    original = idp.decode(offline["id_token"]).claims
    assert original["nonce"] == rp.nonce and "sid" in original  # the comparison means something
    body = refreshed(idp, rp, offline["refresh_token"])
    claims = idp.decode(body["id_token"]).claims  # signature checked against /jwks.json
    for name in ("iss", "sub", "aud", "auth_time", "sid"):
        assert claims[name] == original[name], name
    assert claims["iss"] == ISSUER
    assert "nonce" not in claims
    assert claims["exp"] > time.time()


def test_no_id_token_without_openid(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """OIDC Core §12.2 (an ID token only for an OpenID request): a refresh narrowed to a scope
    without openid gets an access token and no ID token."""
    body = refreshed(idp, rp, offline["refresh_token"], scope="profile offline_access")
    assert body["access_token"]
    assert "id_token" not in body


# --- reuse detection ------------------------------------------------------------------------------


def test_reuse_after_grace_revokes_the_family(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("reuse of a rotated token revokes the whole family (its refresh
    tokens and the access tokens issued from it) and records a token-misuse security event
    naming client, user and IP"); RFC 9700 §4.14.2."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)
    age_use(idp, first, 60)
    reuse = refresh(idp, rp, first)
    assert reuse.status_code == 400
    assert error_of(reuse) == "invalid_grant"
    current = refresh(idp, rp, second["refresh_token"])
    assert current.status_code == 400
    assert error_of(current) == "invalid_grant"
    for access_token in (offline["access_token"], second["access_token"]):
        assert userinfo(idp, access_token).status_code == 401
        assert introspected(idp, rp, access_token) == {"active": False}
    assert introspected(idp, rp, second["refresh_token"]) == {"active": False}
    events = reused_events(idp)
    assert len(events) == 1
    client_id, user_id, ip = events[0]
    assert client_id == rp.client_id
    assert user_id == idp.decode(offline["id_token"]).claims["sub"]
    assert ip


def test_reuse_with_grace_zero_revokes_at_once(
    strict: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 3, Refresh tokens ("0 turns it off"): with refresh_token_reuse_grace_seconds=0 an
    immediate retry with the rotated token (same client, same second) is reuse: the family is
    revoked and no successor is handed out again."""
    rp = offline_client(strict)
    body = strict.tokens(rp, scope=OFFLINE_SCOPE)
    freeze_refresh_clock(monkeypatch)
    second = refreshed(strict, rp, body["refresh_token"])
    retry = refresh(strict, rp, body["refresh_token"])
    assert retry.status_code == 400, retry.text
    assert error_of(retry) == "invalid_grant"
    assert refresh(strict, rp, second["refresh_token"]).status_code == 400
    assert userinfo(strict, second["access_token"]).status_code == 401
    assert len(reused_events(strict)) == 1


# --- lost responses -------------------------------------------------------------------------------


def test_retry_within_window_returns_the_same_successor(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("lost responses are not theft: a retry with the token that was
    just rotated, by the same client, within a short window returns the same successor instead
    of revoking"): identical refresh_token, the family stays alive, no misuse event."""
    first = offline["refresh_token"]
    answer = refreshed(idp, rp, first)
    retry = refreshed(idp, rp, first)
    assert retry["refresh_token"] == answer["refresh_token"]
    for access_token in (offline["access_token"], answer["access_token"], retry["access_token"]):
        assert userinfo(idp, access_token).status_code == 200
    assert refreshed(idp, rp, answer["refresh_token"])["refresh_token"] != answer["refresh_token"]
    assert reused_events(idp) == []
    assert sql(idp, "SELECT count(*) FROM token_families WHERE revoked_at IS NOT NULL")[0][0] == 0


def test_retry_by_another_client_gets_nothing(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("by the same client"): within the window, another client
    presenting the rotated token is invalid_grant, never the successor."""
    first = offline["refresh_token"]
    refreshed(idp, rp, first)
    other = offline_client(idp, name="Other RP")
    response = refresh(idp, other, first)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert "refresh_token" not in response.json()


def test_retry_after_the_successor_was_used_is_reuse(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("there are never two different valid successors"); RFC 9700
    §4.14.2: once the successor has been used, the old token coming back (even within the
    window) is reuse: refused, and the family dies."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)["refresh_token"]
    third = refreshed(idp, rp, second)["refresh_token"]
    replay = refresh(idp, rp, first)
    assert replay.status_code == 400
    assert error_of(replay) == "invalid_grant"
    assert refresh(idp, rp, third).status_code == 400
    assert len(reused_events(idp)) == 1


# --- concurrency ----------------------------------------------------------------------------------


def test_concurrent_refreshes_yield_exactly_one_successor(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Refresh tokens ("many simultaneous refreshes of one token yield exactly one
    successor; prove it with a test that fires them from threads, on SQLite and on
    PostgreSQL"): every 200 carries the same refresh token, every other answer is
    invalid_grant, and the family ends with exactly one unused token."""
    token = offline["refresh_token"]
    racers = 8
    barrier = threading.Barrier(racers)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def fire() -> None:
        # A client of its own per thread, not entered: entering would run the app's lifespan,
        # whose exit disposes of the shared engine.
        client = TestClient(idp.app, base_url=ISSUER, raise_server_exceptions=False)
        barrier.wait()
        try:
            response = refresh(idp, rp, token, http=client)
        finally:
            client.close()
        with lock:
            results.append((response.status_code, parsed(response)))

    threads = [threading.Thread(target=fire) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == racers
    successes = [body for status, body in results if status == 200]
    failures = [body for status, body in results if status != 200]
    assert successes, results
    assert len({body["refresh_token"] for body in successes}) == 1, results
    assert all(body.get("error") == "invalid_grant" for body in failures), results
    family_id = token_row(idp, token).family_id
    unused = [row for row in family_tokens(idp, family_id) if row.used_at is None]
    assert len(unused) == 1
    assert unused[0].token_hash == hashed(successes[0]["refresh_token"])
    assert refreshed(idp, rp, successes[0]["refresh_token"])["refresh_token"]


# --- crash safety ---------------------------------------------------------------------------------


def parsed(response: Any) -> dict[str, Any]:
    try:
        return response.json()  # type: ignore[no-any-return]
    except ValueError:
        return {"text": response.text}


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("the process died here")


@pytest.mark.parametrize("where", ["id_token_for", "_generate_token"])
def test_crash_after_rotation_keeps_the_old_state(
    idp: Harness, rp: RP, offline: dict[str, Any], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Issue 3, Refresh tokens ("crash safety: a rotation is one transaction. A process killed
    in the middle leaves the old state or the new one, never both valid and never neither"):
    a failure after the rotation inside the request leaves the presented token unused, no
    successor row, and the token still refreshes."""
    token = offline["refresh_token"]
    family_id = token_row(idp, token).family_id
    monkeypatch.setattr(IdpServer, where, _boom)
    crashing = TestClient(idp.app, base_url=ISSUER, raise_server_exceptions=False)
    try:
        response = refresh(idp, rp, token, http=crashing)
    finally:
        crashing.close()
    assert response.status_code == 500
    monkeypatch.undo()
    rows = family_tokens(idp, family_id)
    assert [(row.token_hash, row.used_at) for row in rows] == [(hashed(token), None)]
    assert refreshed(idp, rp, token)["refresh_token"]


def test_error_answer_after_rotation_does_not_consume_the_token(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 3, Refresh tokens ("a rotation is one transaction ... never neither"): a refresh
    that ends in an error answer after the rotation step (here server_error: the client's ID
    token algorithm is not enabled) must not commit the rotation, or the client, which never
    received the successor, holds a dead token and its next attempt looks like theft."""
    with harness(database_url, tmp_path, refresh_token_reuse_grace_seconds=0) as idp:
        idp.user()
        rp = offline_client(idp)
        token = idp.tokens(rp, scope=OFFLINE_SCOPE)["refresh_token"]
        family_id = token_row(idp, token).family_id
        sql(
            idp,
            "UPDATE clients SET id_token_signed_response_alg = 'PS256' WHERE client_id = :c",
            c=rp.client_id,
        )
        failed = refresh(idp, rp, token)
        assert failed.status_code >= 500 or error_of(failed) == "server_error"
        assert "refresh_token" not in failed.json()
        rows = family_tokens(idp, family_id)
        assert [(row.token_hash, row.used_at) for row in rows] == [(hashed(token), None)]
        # The operator fixes the client; the client tries again with the only token it has.
        sql(
            idp,
            "UPDATE clients SET id_token_signed_response_alg = NULL WHERE client_id = :c",
            c=rp.client_id,
        )
        assert refresh(idp, rp, token).status_code == 200
        assert reused_events(idp) == []
