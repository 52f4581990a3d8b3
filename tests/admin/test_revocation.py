"""Revoking everything a user or a client holds (idp/admin/revocation.py): the revocation epoch
(`tokens_revoked_before`) checked at userinfo (OIDC Core §5.3, RFC 6750 §3.1 invalid_token) and
introspection (RFC 7662 §2.2 `active: false`), refresh families revoked (RFC 6749 §5.2
invalid_grant), disabled clients refused (RFC 6749 §5.2 invalid_client, an error page at
/authorize per §4.1.2.1), and client secret rotation with an overlap."""

from __future__ import annotations

import time
from typing import Any

import pytest

from idp.admin import revocation
from idp.protocol.backchannel import deliver_due
from idp.store import base
from tests.helpers import RP, Harness
from tests.protocol.test_backchannel import Receiver, receiver  # noqa: F401  (the fixture)
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspected,
    offline_client,
    refresh,
    resource_server,
    userinfo,
)
from tests.token_helpers import audit_events, error_of, json_of, sql

ACTOR = "test-admin"


def run(idp: Harness, action: Any, *args: Any, **kwargs: Any) -> Any:
    """One admin action in its own committed transaction, as the CLI runs it."""
    with idp.runtime.sessions.begin() as db:
        return action(db, *args, actor=ACTOR, **kwargs)


def wait_past(epoch: int) -> None:
    """Sleep until a token issued now has iat >= epoch (at most about a second)."""
    while time.time() < epoch:
        time.sleep(0.02)


def detail_of(event_name: str, idp: Harness) -> dict[str, Any]:
    """The detail of the one audit event of this kind, with who acted as "actor"."""
    (event,) = audit_events(idp, event_name)
    (actor,) = sql(idp, "SELECT actor FROM audit_events WHERE event = :e", e=event_name)
    return {**json_of(event.detail), "actor": actor[0]}


def is_dead_at_userinfo(idp: Harness, access_token: str) -> bool:
    response = userinfo(idp, access_token)
    if response.status_code != 401:
        return False
    return 'error="invalid_token"' in response.headers["www-authenticate"]


def cc_token(idp: Harness, rp: RP) -> str:
    response = idp.client_credentials(rp)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def secret_works(idp: Harness, rp: RP, secret: str) -> bool:
    response = idp.client_credentials(RP(rp.client_id, secret))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


@pytest.fixture
def alice(idp: Harness) -> str:
    return idp.user()


@pytest.fixture
def api(idp: Harness) -> RP:
    return resource_server(idp)


@pytest.fixture
def service(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])


# --- users ---------------------------------------------------------------------------------------


def test_disabling_a_user_kills_access_refresh_and_session(
    idp: Harness, alice: str, api: RP
) -> None:
    """A disabled user's access token is invalid_token at userinfo and inactive at
    introspection, their refresh token (offline included) is invalid_grant, and their browser
    session is gone."""
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    assert introspected(idp, api, tokens["access_token"])["active"] is True
    assert sql(idp, "SELECT count(*) FROM sessions WHERE user_id = :u", u=alice)[0][0] == 1

    revoked = run(idp, revocation.disable_user, alice, reason="left the company")

    assert (revoked.sessions, revoked.families) == (1, 1)
    assert is_dead_at_userinfo(idp, tokens["access_token"])
    assert introspected(idp, api, tokens["access_token"]) == {"active": False}
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"
    assert sql(idp, "SELECT count(*) FROM sessions WHERE user_id = :u", u=alice)[0][0] == 0
    detail = detail_of("user.disabled", idp)
    assert (detail["before"], detail["after"], detail["actor"]) == ("enabled", "disabled", ACTOR)


def test_disabling_a_user_tells_their_relying_parties(
    idp: Harness,
    alice: str,
    receiver: Receiver,  # noqa: F811
) -> None:
    """OIDC Back-Channel Logout 1.0 §2.5: the sessions ended by a revocation are told to the
    relying parties they signed in to, as at sign-out."""
    rp = idp.client(backchannel_logout_uri=receiver.uri)
    idp.tokens(rp)
    idp.app.state.worker.stop()  # delivered below, by this test
    run(idp, revocation.disable_user, alice, reason="left")
    assert deliver_due(idp.runtime) == {"sent": 1, "failed": 0}
    assert len(receiver.tokens) == 1


def test_the_epoch_alone_kills_an_access_token(idp: Harness, alice: str, api: RP) -> None:
    """revoke_user without disabling: the user may sign in again, but an access token issued
    before the revocation is refused on every worker by its iat, not by a denylist entry (a
    token of a code exchange without offline_access is linked to no family)."""
    access = idp.tokens(idp.client(), scope="openid")["access_token"]
    run(idp, revocation.revoke_user, alice, reason="lost laptop")
    assert sql(idp, "SELECT count(*) FROM revoked_tokens")[0][0] == 0
    assert is_dead_at_userinfo(idp, access)
    assert introspected(idp, api, access) == {"active": False}


def test_a_token_issued_in_the_same_second_is_dead(
    idp: Harness, alice: str, api: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token times are whole seconds: a revocation in the second a token was issued covers it,
    even if the token was signed a moment after the revocation within that second."""
    access = idp.tokens(idp.client(), scope="openid")["access_token"]
    iat = int(idp.decode(access).claims["iat"])
    monkeypatch.setattr(revocation, "now", lambda: iat)  # the revocation ran in that second
    revoked = run(idp, revocation.revoke_user, alice, reason="same second")
    assert revoked.epoch == iat + 1
    assert is_dead_at_userinfo(idp, access)
    assert introspected(idp, api, access) == {"active": False}


def test_enabling_a_user_works_for_new_tokens_only(idp: Harness, alice: str, api: RP) -> None:
    """Enabling clears the flag and nothing else: what was revoked stays revoked."""
    rp = idp.client()
    old = idp.tokens(rp, scope="openid")["access_token"]
    revoked = run(idp, revocation.disable_user, alice, reason="suspended")
    assert run(idp, revocation.enable_user, alice) is True
    wait_past(revoked.epoch)
    new = idp.tokens(rp, scope="openid")["access_token"]
    assert userinfo(idp, new).status_code == 200
    assert introspected(idp, api, new)["active"] is True
    assert is_dead_at_userinfo(idp, old)
    assert introspected(idp, api, old) == {"active": False}
    assert len(audit_events(idp, "user.enabled")) == 1


def test_a_disabled_user_cannot_sign_in(idp: Harness, alice: str) -> None:
    """The flag is the one the login page already honours: no code for a disabled user."""
    rp = idp.client()
    run(idp, revocation.disable_user, alice, reason="suspended")
    response = idp.follow_to_code(idp.authorize(rp), rp)
    assert not response.headers.get("location", "").startswith(rp.redirect_uri)


# --- clients -------------------------------------------------------------------------------------


def test_disabling_a_client_refuses_it_everywhere(idp: Harness, api: RP, service: RP) -> None:
    """Its client_credentials token is inactive, and /token, /introspect and /revoke answer
    invalid_client exactly as for a wrong secret (RFC 6749 §5.2)."""
    access = cc_token(idp, service)
    wrong = idp.client_credentials(RP(service.client_id, "not-the-secret"))
    run(idp, revocation.disable_client, service.client_id, reason="compromised")

    assert introspected(idp, api, access) == {"active": False}
    refused = idp.client_credentials(service)
    assert (refused.status_code, refused.json()) == (wrong.status_code, wrong.json())
    assert error_of(refused) == "invalid_client"
    for path in ("/introspect", "/revoke"):
        answer = idp.http.post(path, data={"token": access}, headers=service.auth())
        assert (answer.status_code, error_of(answer)) == (401, "invalid_client")
    assert len(audit_events(idp, "client.disabled")) == 1


def test_a_disabled_client_gets_an_error_page_at_authorize(idp: Harness, alice: str) -> None:
    """RFC 6749 §4.1.2.1 spirit: nothing is sent to the client; the person sees a page."""
    rp = idp.client()
    run(idp, revocation.disable_client, rp.client_id, reason="retired")
    response = idp.authorize(rp)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "This application is disabled" in response.text


def test_disabling_a_client_revokes_its_refresh_tokens(idp: Harness, alice: str, api: RP) -> None:
    """Every family of the client dies, and its user tokens are refused at userinfo."""
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    revoked = run(idp, revocation.disable_client, rp.client_id, reason="retired")
    assert revoked.families == 1
    assert is_dead_at_userinfo(idp, tokens["access_token"])
    run(idp, revocation.enable_client, rp.client_id)
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"


def test_a_disabled_clients_refresh_is_invalid_client(idp: Harness, alice: str) -> None:
    """RFC 6749 §5.2: the refresh grant authenticates the client first; a disabled one fails
    there, as with a wrong secret."""
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    run(idp, revocation.disable_client, rp.client_id, reason="retired")
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_client"


def test_a_client_disabled_during_sign_in_gets_no_code(idp: Harness, alice: str) -> None:
    """A sign-in that began before the client was disabled ends on the error page, with no
    redirect to the client."""
    rp = idp.client()
    started = idp.authorize(rp)
    assert started.headers["location"].startswith("/login")
    run(idp, revocation.disable_client, rp.client_id, reason="retired")
    page = idp.http.get(started.headers["location"])  # the login page of that sign-in
    assert page.status_code == 400 and "This application is disabled" in page.text


def test_enabling_a_client_works_for_new_tokens_only(idp: Harness, api: RP, service: RP) -> None:
    old = cc_token(idp, service)
    revoked = run(idp, revocation.disable_client, service.client_id, reason="paused")
    assert run(idp, revocation.enable_client, service.client_id) is True
    wait_past(revoked.epoch)
    new = cc_token(idp, service)
    assert introspected(idp, api, new)["active"] is True
    assert introspected(idp, api, old) == {"active": False}
    assert introspected(idp, service, new)["active"] is True  # its own token, its own record


def test_revoke_client_without_disabling(idp: Harness, api: RP, service: RP) -> None:
    """The client keeps authenticating; what it held before is dead."""
    old = cc_token(idp, service)
    run(idp, revocation.revoke_client, service.client_id, reason="key leak")
    assert introspected(idp, api, old) == {"active": False}
    assert idp.client_credentials(service).status_code == 200
    assert detail_of("client.tokens_revoked", idp)["reason"] == "key leak"


def test_a_deleted_clients_tokens_are_refused(idp: Harness, alice: str, api: RP) -> None:
    """Its epoch went with its row: a token naming a client that no longer exists is refused
    at introspection and userinfo."""
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    service_token = cc_token(idp, service)
    rp = idp.client()
    user_token = idp.tokens(rp, scope="openid")["access_token"]
    run(idp, revocation.delete_client, service.client_id)
    run(idp, revocation.delete_client, rp.client_id)
    assert introspected(idp, api, service_token) == {"active": False}
    assert introspected(idp, api, user_token) == {"active": False}
    assert is_dead_at_userinfo(idp, user_token)
    assert len(audit_events(idp, "client.deleted")) == 2


def test_unknown_ids_are_errors(idp: Harness) -> None:
    with pytest.raises(revocation.NoSuchUser):
        run(idp, revocation.disable_user, "nobody", reason="x")
    with pytest.raises(revocation.NoSuchClient):
        run(idp, revocation.disable_client, "nothing", reason="x")


# --- secret rotation -----------------------------------------------------------------------------


def test_both_secrets_work_inside_the_overlap_then_only_the_new(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rotated-out secret authenticates until previous_secret_expires_at, not after."""
    assert service.secret is not None
    new = run(idp, revocation.rotate_secret, service.client_id, overlap_seconds=3600)
    assert new != service.secret
    assert secret_works(idp, service, service.secret)
    assert secret_works(idp, service, new)
    real_now = base.now
    monkeypatch.setattr("idp.store.clients.now", lambda: real_now() + 3600)
    assert not secret_works(idp, service, service.secret)
    assert secret_works(idp, service, new)


def test_overlap_zero_ends_the_old_secret_now(idp: Harness, service: RP) -> None:
    assert service.secret is not None
    new = run(idp, revocation.rotate_secret, service.client_id, overlap_seconds=0)
    assert not secret_works(idp, service, service.secret)
    assert secret_works(idp, service, new)


def test_an_expired_overlap_in_the_database_is_refused(idp: Harness, service: RP) -> None:
    assert service.secret is not None
    run(idp, revocation.rotate_secret, service.client_id)
    sql(
        idp,
        "UPDATE clients SET previous_secret_expires_at = :t WHERE client_id = :c",
        t=int(time.time()) - 1,
        c=service.client_id,
    )
    assert not secret_works(idp, service, service.secret)


def test_a_second_rotation_ends_the_first_old_secret(idp: Harness, service: RP) -> None:
    """One previous secret at a time: the one before it dies at the next rotation."""
    assert service.secret is not None
    second = run(idp, revocation.rotate_secret, service.client_id)
    third = run(idp, revocation.rotate_secret, service.client_id)
    assert not secret_works(idp, service, service.secret)
    assert secret_works(idp, service, second)
    assert secret_works(idp, service, third)


def test_rotation_is_audited_without_the_secret(idp: Harness, service: RP) -> None:
    new = run(idp, revocation.rotate_secret, service.client_id, overlap_seconds=60)
    detail = detail_of("client.secret_rotated", idp)
    assert new not in str(detail)
    assert (detail["overlap_seconds"], detail["actor"]) == (60, ACTOR)


def test_only_secret_clients_rotate(idp: Harness) -> None:
    public = idp.client(public=True)
    with pytest.raises(revocation.NotASecretClient, match="none"):
        run(idp, revocation.rotate_secret, public.client_id)
