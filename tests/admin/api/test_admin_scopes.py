"""Who comes to hold the admin API's scopes: an admin service registered on the CLI, and a
person only with consent, as an admin, signed in with two factors."""

from __future__ import annotations

import json

import pytest

from idp.admin.users import revoke_role
from idp.cli.main import main
from idp.store import users
from tests.admin.api.tokens import (
    admin_person,
    call,
    service_token,
    sign_in_tokens,
)
from tests.conftest import TEST_KEK
from tests.helpers import PASSWORD, RP, Harness, form_fields
from tests.mfa_helpers import answer_factor, totp_code
from tests.refresh_helpers import refresh
from tests.token_helpers import json_of, sql


def test_the_cli_registers_an_admin_service_audited(
    idp: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`idp clients create --grant-type client_credentials --scope idp:admin` makes a service
    whose client_credentials token opens the admin API; its registration is audited."""
    settings = idp.runtime.settings
    monkeypatch.setenv("IDP_ISSUER", settings.issuer)
    monkeypatch.setenv("IDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY", TEST_KEK)
    argv = ["clients", "create", "--name", "Provisioning", "--grant-type", "client_credentials",
            "--scope", "idp:admin", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    rp = RP(out["client_id"], out["client_secret"])
    assert call(idp, "GET", "/users", service_token(idp, rp)).status_code == 200
    ((actor, detail),) = sql(
        idp, "SELECT actor, detail FROM audit_events WHERE event = 'client.created'"
    )
    assert actor == "cli" and json_of(detail)["registration"]["scope"] == "idp:admin"
    assert out["client_secret"] not in str(detail)


def test_a_trusted_app_still_asks_consent_for_admin_scopes(idp: Harness) -> None:
    """Power over the IdP is consented to explicitly, even in a first-party app whose users
    are otherwise not asked."""
    _, secret = admin_person(idp)
    rp = idp.client(name="Console", scopes=["openid", "idp:admin"], trusted=True)
    response = idp.follow_local(idp.authorize(rp, scope="openid idp:admin"))
    page = idp.http.get(response.headers["location"])
    fields = form_fields(page.text)
    fields.update(email="root@example.com", password=PASSWORD)
    response = answer_factor(idp, idp.http.post("/login", data=fields), totp_code(secret))
    for _ in range(4):
        if response.status_code in (302, 303) and response.headers["location"].startswith("/"):
            response = idp.http.get(response.headers["location"])
    assert response.status_code == 200 and 'action="/consent"' in response.text
    # the same app without the admin scope asks nothing
    plain = idp.follow_local(idp.authorize(rp, scope="openid"))
    assert plain.headers["location"].startswith(rp.redirect_uri)


def test_a_refresh_after_the_role_is_revoked_drops_the_admin_scope(idp: Harness) -> None:
    """RFC 6749 §6 with §3.3: the refreshed token carries only what the user may hold now."""
    user_id, secret = admin_person(idp)
    rp = idp.client(
        name="Console",
        scopes=["openid", "offline_access", "idp:admin"],
        grant_types=["authorization_code", "refresh_token"],
    )
    scope = "openid offline_access idp:admin"
    token_response = sign_in_tokens(idp, rp, "root@example.com", secret, scope)
    assert "idp:admin" in token_response["scope"].split()
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        revoke_role(db, user, "admin", actor="test")
    refreshed = refresh(idp, rp, token_response["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert "idp:admin" not in refreshed.json()["scope"].split()
    assert call(idp, "GET", "/users", refreshed.json()["access_token"]).status_code == 401


def test_admin_tokens_live_at_most_five_minutes(idp: Harness) -> None:
    """A right taken away outlives the tokens already issued by minutes at most, whatever
    the client's own access token lifetime."""
    rp = idp.client(
        grant_types=["client_credentials"], scopes=["idp:admin", "reports"], redirect_uris=[],
        access_token_ttl=3600,
    )  # fmt: skip
    admin = idp.client_credentials(rp, scope="idp:admin").json()
    assert admin["expires_in"] == 300
    claims = idp.decode(admin["access_token"]).claims
    assert claims["exp"] - claims["iat"] == 300
    assert idp.client_credentials(rp, scope="reports").json()["expires_in"] == 3600
