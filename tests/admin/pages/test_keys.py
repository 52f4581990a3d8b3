"""Issue 13, admin UI keys: list, rotate, revoke (after a confirmation page)."""

from __future__ import annotations

from tests.admin.pages.admin_helpers import actors, form_of, sign_in_admin
from tests.helpers import Harness
from tests.token_helpers import sql


def _states(idp: Harness) -> dict[str, str]:
    return {kid: state for kid, state in sql(idp, "SELECT kid, state FROM signing_keys")}


def test_the_keys_are_listed_with_their_state(idp: Harness) -> None:
    """Keys: list."""
    sign_in_admin(idp)
    page = idp.http.get("/admin/keys")
    assert page.status_code == 200
    for kid, state in _states(idp).items():
        assert kid in page.text and state in page.text


def test_rotating_stages_a_key_and_at_once_makes_it_sign(idp: Harness) -> None:
    """Keys: rotate (staged first; in an emergency it signs at once)."""
    sign_in_admin(idp)
    (old,) = _states(idp)
    fields = form_of(idp, "/admin/keys/rotate")
    r = idp.http.post("/admin/keys/rotate", data={**fields, "alg": "RS256"})
    assert r.status_code == 303
    assert sorted(_states(idp).values()) == ["active", "staged"]
    r = idp.http.post("/admin/keys/rotate", data={**fields, "alg": "RS256", "immediately": "on"})
    assert r.status_code == 303
    states = _states(idp)
    assert states[old] == "retired" and sorted(states.values()) == ["active", "retired"]


def test_revoking_a_key_goes_through_a_confirmation(idp: Harness) -> None:
    """Keys: revoke, destructive, so a GET shows what will happen and the POST does it."""
    admin = sign_in_admin(idp)
    (kid,) = _states(idp)
    confirm = idp.http.get(f"/admin/keys/{kid}/revoke")
    assert confirm.status_code == 200 and "stops verifying" in confirm.text
    assert _states(idp)[kid] == "active"
    fields = form_of(idp, f"/admin/keys/{kid}/revoke")
    assert idp.http.post(f"/admin/keys/{kid}/revoke", data=fields).status_code == 303
    states = _states(idp)
    assert states[kid] == "revoked" and "active" in states.values()
    assert actors(idp, "key.revoked") == [f"user:{admin}"]
