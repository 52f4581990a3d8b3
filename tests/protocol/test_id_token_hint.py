"""OIDC Core §3.1.2.1 and RP-Initiated Logout §2: id_token_hint is an ID token this OP issued
(typ absent or JWT), to the client at hand; any other JWT of ours is refused."""

from __future__ import annotations

from idp.protocol.tokens import token_service
from tests.authorize_helpers import redirect_error, signed_in_with_consent
from tests.helpers import Harness


def _logout_token(idp: Harness, sub: str, aud: str) -> str:
    """A back-channel logout token (typ logout+jwt), as this server signs one."""
    claims = {"sub": sub, "aud": aud, "jti": "j", "events": {}}
    return token_service(idp.runtime).logout_token(claims, 120)


def test_a_logout_token_is_not_an_id_token_hint_at_authorize(idp: Harness) -> None:
    user_id = idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    hint = _logout_token(idp, user_id, rp.client_id)
    response = idp.authorize(rp, prompt="none", id_token_hint=hint)
    assert redirect_error(response, rp) == "invalid_request"


def test_a_logout_token_is_not_an_id_token_hint_at_logout(idp: Harness) -> None:
    user_id = idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    hint = _logout_token(idp, user_id, rp.client_id)
    response = idp.http.get("/logout", params={"id_token_hint": hint})
    assert response.status_code == 400 and "id_token_hint" in response.text


def test_an_id_token_of_another_client_is_not_a_hint_for_this_one(idp: Harness) -> None:
    """The hint's aud must be the client: another application's ID token says nothing here."""
    idp.user()
    rp, other = idp.client(), idp.client()
    other_id_token = idp.tokens(other)["id_token"]
    signed_in_with_consent(idp, rp)
    response = idp.authorize(rp, prompt="none", id_token_hint=other_id_token)
    assert redirect_error(response, rp) == "invalid_request"
    own = idp.tokens(rp)["id_token"]
    assert "code=" in idp.authorize(rp, prompt="none", id_token_hint=own).headers["location"]
