"""OpenID Connect RP-Initiated Logout 1.0 (end_session_endpoint), `idp users revoke-sessions`
and `idp prune` (issue 3, Logout and Housekeeping)."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text

from idp.worker import prune
from tests.cli_runner import run_cli
from tests.conftest import ISSUER
from tests.helpers import RP, Harness, form_fields, query_of

AFTER_LOGOUT = "https://rp.example/signed-out"


def signed_in_rp(idp: Harness, **spec: object) -> tuple[RP, dict[str, str]]:
    idp.user()
    rp = idp.client(
        grant_types=["authorization_code", "refresh_token"],
        post_logout_redirect_uris=[AFTER_LOGOUT],
        **spec,
    )
    return rp, idp.tokens(rp, scope="openid offline_access")


def is_signed_in(idp: Harness) -> bool:
    return "signed in as" in idp.http.get("/").text


def refresh(idp: Harness, rp: RP, token: str) -> httpx.Response:
    return idp.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token}, headers=rp.auth()
    )


def test_discovery_names_the_end_session_endpoint(idp: Harness) -> None:
    """RP-Initiated Logout §2.1: end_session_endpoint in the provider metadata."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert metadata["end_session_endpoint"] == f"{ISSUER}/logout"


def test_valid_hint_signs_out_and_returns_with_state(idp: Harness) -> None:
    """§2 and §3: with an id_token_hint for the signed-in user, the OP ends the session without
    asking and redirects to the registered post_logout_redirect_uri with state."""
    rp, tokens = signed_in_rp(idp)
    assert is_signed_in(idp)
    response = idp.http.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": AFTER_LOGOUT,
            "state": "s-123",
        },
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(AFTER_LOGOUT)
    assert query_of(location) == {"state": "s-123"}
    assert not is_signed_in(idp)
    # The old session cannot authorize any more: the user must sign in again.
    again = idp.authorize(rp, prompt="none")
    assert query_of(again.headers["location"])["error"] == "login_required"


def test_without_a_hint_the_user_confirms(idp: Harness) -> None:
    """§2 and §6: without a valid hint a third party must not be able to sign users out, so the
    OP asks; the confirmation form carries a CSRF token and its POST answers 303."""
    rp, _ = signed_in_rp(idp)
    page = idp.http.get(
        "/logout", params={"client_id": rp.client_id, "post_logout_redirect_uri": AFTER_LOGOUT}
    )
    assert page.status_code == 200
    assert 'action="/logout"' in page.text
    assert is_signed_in(idp)  # nothing happened yet
    fields = form_fields(page.text)
    assert fields["csrf_token"]
    fields["confirm"] = "yes"
    done = idp.http.post("/logout", data=fields)
    assert done.status_code == 303
    assert done.headers["location"].startswith(AFTER_LOGOUT)
    assert not is_signed_in(idp)


def test_confirmation_without_csrf_token_is_refused(idp: Harness) -> None:
    """§6 (CSRF): a forged confirmation does not sign the user out."""
    signed_in_rp(idp)
    response = idp.http.post("/logout", data={"confirm": "yes", "csrf_token": "forged" * 5})
    assert response.status_code == 403
    assert is_signed_in(idp)


def test_unregistered_post_logout_redirect_uri_is_an_error_page(idp: Harness) -> None:
    """§3: the URI MUST exactly match a registered one; otherwise no redirect happens."""
    _, tokens = signed_in_rp(idp)
    for uri in ("https://evil.example/", AFTER_LOGOUT + "/", AFTER_LOGOUT + "?x=1"):
        response = idp.http.get(
            "/logout",
            params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": uri},
        )
        assert response.status_code == 400, uri
        assert "location" not in response.headers
    assert is_signed_in(idp)


def test_redirect_needs_a_client(idp: Harness) -> None:
    """§3: without id_token_hint or client_id the OP cannot check the redirect URI: a page."""
    signed_in_rp(idp)
    response = idp.http.get("/logout", params={"post_logout_redirect_uri": AFTER_LOGOUT})
    assert response.status_code == 400
    assert "location" not in response.headers


def test_client_id_must_match_the_hint(idp: Harness) -> None:
    """§2: when both are given, client_id must be the hint's audience."""
    _, tokens = signed_in_rp(idp)
    other = idp.client(name="Other", post_logout_redirect_uris=[AFTER_LOGOUT])
    response = idp.http.get(
        "/logout", params={"id_token_hint": tokens["id_token"], "client_id": other.client_id}
    )
    assert response.status_code == 400
    assert is_signed_in(idp)


def test_offline_grant_survives_logout(idp: Harness) -> None:
    """OIDC Core §11 / issue 3: offline_access the user granted outlives the browser session."""
    rp, tokens = signed_in_rp(idp)
    idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    assert not is_signed_in(idp)
    assert refresh(idp, rp, tokens["refresh_token"]).status_code == 200


def test_logout_is_audited(idp: Harness) -> None:
    """Issue 3: the end of a session is on the audit trail."""
    _, tokens = signed_in_rp(idp)
    idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    with idp.runtime.sessions() as db:
        events = db.execute(text("SELECT event FROM audit_events")).scalars().all()
    assert "logout" in events


def test_revoke_sessions_ends_everything(idp: Harness, database_url: str, tmp_path: Path) -> None:
    """Issue 3: `idp users revoke-sessions EMAIL` ends every session and refresh token of a user,
    offline grants included; an unknown email exits 1 with one line."""
    rp, tokens = signed_in_rp(idp)
    env = {
        "PATH": "/usr/bin:/bin",
        "IDP_DATABASE_URL": database_url,
        "IDP_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
    }
    done = run_cli(["users", "revoke-sessions", "alice@example.com"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not is_signed_in(idp)
    assert refresh(idp, rp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    info = idp.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401
    unknown = run_cli(["users", "revoke-sessions", "nobody@example.com"], env, tmp_path)
    assert unknown.returncode == 1
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_prune_deletes_only_what_expired(idp: Harness) -> None:
    """Issue 3, Housekeeping: `idp prune` deletes expired codes, tokens, sessions and revocation
    entries in bounded batches and leaves everything still usable alone."""
    rp, tokens = signed_in_rp(idp)
    for _ in range(3):
        idp.code_for(rp)  # codes that will never be redeemed
    with idp.runtime.sessions.begin() as db:
        db.execute(text("UPDATE authorization_codes SET expires_at = 1"))
        db.execute(text("INSERT INTO revoked_tokens VALUES ('old', 1, 1, 'test')"))
        db.execute(text("INSERT INTO revoked_tokens VALUES ('live', 9999999999, 1, 'test')"))
    counts = prune(idp.runtime.sessions, batch=1)
    # The codes of a live session say which clients it signed in to (its back-channel logout
    # targets): they stay while it lives.
    assert counts["authorization codes"] == 0
    assert counts["revoked tokens"] == 1
    with idp.runtime.sessions() as db:
        left = db.execute(text("SELECT jti FROM revoked_tokens")).scalars().all()
    assert left == ["live"]
    assert is_signed_in(idp)  # the live session stays
    assert refresh(idp, rp, tokens["refresh_token"]).status_code == 200
    with idp.runtime.sessions.begin() as db:
        db.execute(text("UPDATE sessions SET expires_at = 1"))
    counts = prune(idp.runtime.sessions, batch=1)
    assert counts["sessions"] == 1
    assert counts["authorization codes"] == 4  # the redeemed one too: it expired long ago
    with idp.runtime.sessions() as db:
        codes_left = db.execute(text("SELECT count(*) FROM authorization_codes")).scalar()
    assert codes_left == 0


def test_each_worker_prunes_periodically(database_url: str, tmp_path: Path) -> None:
    """Issue 3, Housekeeping: "the server can also do it periodically": a running app deletes
    expired revocation entries by itself."""
    import time

    from starlette.testclient import TestClient

    from tests.conftest import migrated_app, ticking_settings

    settings = ticking_settings(database_url, tmp_path, prune_interval_seconds=1)
    app = migrated_app(settings)
    services = app.state.runtime
    try:
        with services.sessions.begin() as db:
            db.execute(text("INSERT INTO revoked_tokens VALUES ('old', 1, 1, 'test')"))
        with TestClient(app, base_url=ISSUER):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with services.sessions() as db:
                    left = db.execute(text("SELECT count(*) FROM revoked_tokens")).scalar()
                if left == 0:
                    break
                time.sleep(0.2)
        assert left == 0
    finally:
        services.engine.dispose()


def test_prune_command(database_url: str, tmp_path: Path, idp: Harness) -> None:
    """Issue 3, Housekeeping: `idp prune --json` reports what it deleted per table."""
    import json

    with idp.runtime.sessions.begin() as db:
        db.execute(text("INSERT INTO revoked_tokens VALUES ('old', 1, 1, 'test')"))
    env = {
        "PATH": "/usr/bin:/bin",
        "IDP_DATABASE_URL": database_url,
        "IDP_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
    }
    done = run_cli(["prune", "--batch", "10", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["revoked tokens"] == 1
