"""/admin/api/clients: RFC 7591 §2 client metadata in and out, field errors, pagination,
secret rotation with an overlap, and disabling or deleting a client killing its tokens."""

from __future__ import annotations

from typing import Any

import pytest

from idp.store import base
from tests.admin.api.tokens import call, service, service_token
from tests.helpers import RP, Harness
from tests.refresh_helpers import OFFLINE_SCOPE, introspected, refresh, resource_server, userinfo
from tests.token_helpers import error_of, sql

WEB_APP = {
    "client_name": "Billing",
    "redirect_uris": ["https://billing.example/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid email offline_access",
}
SERVICE = {
    "client_name": "Nightly export",
    "grant_types": ["client_credentials"],
    "scope": "reports",
    "token_endpoint_auth_method": "client_secret_post",
}


@pytest.fixture
def admin(idp: Harness) -> str:
    return service_token(idp, service(idp))


def created(idp: Harness, admin: str, body: dict[str, Any]) -> dict[str, Any]:
    response = call(idp, "POST", "/clients", admin, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def count_clients(idp: Harness) -> int:
    return int(sql(idp, "SELECT count(*) FROM clients")[0][0])


def test_create_returns_the_secret_once_and_it_works(idp: Harness, admin: str) -> None:
    """RFC 7591 §3.2.1: the answer holds client_id, client_secret and the metadata; later
    reads never show the secret, and the secret authenticates at /token."""
    out = created(idp, admin, SERVICE)
    assert out["client_secret"] and out["client_name"] == "Nightly export"
    assert out["scope"] == "reports" and out["token_endpoint_auth_method"] == "client_secret_post"
    shown = call(idp, "GET", f"/clients/{out['client_id']}", admin).json()
    assert "client_secret" not in shown and "secret_hash" not in str(shown)
    assert out["client_secret"] not in call(idp, "GET", "/clients", admin).text
    token = idp.http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": out["client_id"],
            "client_secret": out["client_secret"],
        },
    )
    assert token.status_code == 200, token.text
    (actor,) = sql(
        idp,
        "SELECT actor FROM audit_events WHERE event = 'client.created' AND client_id = :c",
        c=out["client_id"],
    )
    assert actor[0].startswith("client:")


def test_a_public_client_gets_no_secret(idp: Harness, admin: str) -> None:
    out = created(idp, admin, {**WEB_APP, "token_endpoint_auth_method": "none"})
    assert out["client_secret"] is None and out["public"] is True


@pytest.mark.parametrize(
    "body,field",
    [
        ({**WEB_APP, "redirect_uris": [*WEB_APP["redirect_uris"], "http://evil.example/cb"]},
         "redirect_uris[1]"),
        ({**WEB_APP, "grant_types": ["implicit"]}, "grant_types[0]"),
        ({**WEB_APP, "client_name": ""}, "client_name"),
        ({**WEB_APP, "require_pkce": "true"}, "require_pkce"),
        ({**WEB_APP, "colour": "red"}, "colour"),
        ({k: v for k, v in WEB_APP.items() if k != "client_name"}, "client_name"),
        ({**SERVICE, "id_token_signed_response_alg": "HS256"}, "id_token_signed_response_alg"),
        ({**SERVICE, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_writes_nothing(
    idp: Harness, admin: str, body: dict[str, Any], field: str
) -> None:
    """422 {"error": "invalid_request", "fields": {...}}: the field by its RFC 7591 name."""
    before = count_clients(idp)
    response = call(idp, "POST", "/clients", admin, json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["error"] == "invalid_request" and field in problem["fields"], problem
    assert count_clients(idp) == before


def test_update_changes_only_the_fields_given(idp: Harness, admin: str) -> None:
    out = created(idp, admin, WEB_APP)
    response = call(
        idp, "PATCH", f"/clients/{out['client_id']}", admin,
        json={"client_name": "Billing v2", "require_pkce": False, "client_uri": "https://billing.example/"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    after = response.json()
    changed = {
        "client_name": "Billing v2",
        "require_pkce": False,
        "client_uri": "https://billing.example/",
    }
    assert {k: after[k] for k in changed} == changed
    unchanged = {k: v for k, v in out.items() if k not in {*changed, "lint", "client_secret"}}
    assert {k: after[k] for k in unchanged} == unchanged
    assert "pkce-not-required" in [f["code"] for f in after["lint"]]
    again = call(idp, "PATCH", f"/clients/{out['client_id']}", admin, json={"require_pkce": True})
    assert "pkce-not-required" not in [f["code"] for f in again.json()["lint"]]


def test_a_bad_update_is_422_and_changes_nothing(idp: Harness, admin: str) -> None:
    out = created(idp, admin, WEB_APP)
    response = call(
        idp, "PATCH", f"/clients/{out['client_id']}", admin,
        json={"client_name": "New", "redirect_uris": ["https://a.example/cb", "not a uri"]},
    )  # fmt: skip
    assert response.status_code == 422 and "redirect_uris[1]" in response.json()["fields"]
    shown = call(idp, "GET", f"/clients/{out['client_id']}", admin).json()
    assert shown["client_name"] == "Billing"


def test_unknown_client_is_404(idp: Harness, admin: str) -> None:
    for method, path in (
        ("GET", "/clients/nope"),
        ("PATCH", "/clients/nope"),
        ("DELETE", "/clients/nope"),
        ("POST", "/clients/nope/disable"),
        ("POST", "/clients/nope/secret"),
    ):
        response = call(idp, method, path, admin, json={})
        assert response.status_code == 404 and response.json()["error"] == "not_found", path


def test_list_searches_and_pages_with_a_cursor(idp: Harness, admin: str) -> None:
    for i in range(5):
        created(idp, admin, {**SERVICE, "client_name": f"Export {i}"})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2, "q": "export", **({"cursor": cursor} if cursor else {})}
        page = call(idp, "GET", "/clients", admin, params=params).json()
        seen += [c["client_name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"Export {i}" for i in range(5)]
    bad = call(idp, "GET", "/clients", admin, params={"cursor": "garbage!"})
    assert bad.status_code == 422 and "cursor" in bad.json()["fields"]
    assert call(idp, "GET", "/clients", admin, params={"limit": 0}).status_code == 422


def test_secret_rotation_overlap(idp: Harness, admin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both secrets work inside the window; only the new one after it."""
    out = created(idp, admin, SERVICE)
    old = RP(out["client_id"], out["client_secret"])
    response = call(
        idp, "POST", f"/clients/{old.client_id}/secret", admin, json={"overlap_seconds": 3600}
    )
    assert response.status_code == 200, response.text
    new = RP(old.client_id, response.json()["client_secret"])
    assert response.json()["previous_secret_expires_at"] is not None

    def works(rp: RP) -> bool:
        return (
            idp.http.post(
                "/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": rp.client_id,
                    "client_secret": rp.secret,
                },
            ).status_code
            == 200
        )

    assert works(old) and works(new)
    real_now = base.now
    monkeypatch.setattr("idp.store.clients.now", lambda: real_now() + 3601)
    assert not works(old) and works(new)


def test_rotating_a_client_without_a_secret_is_409(idp: Harness, admin: str) -> None:
    out = created(idp, admin, {**WEB_APP, "token_endpoint_auth_method": "none"})
    response = call(idp, "POST", f"/clients/{out['client_id']}/secret", admin)
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def _tokens(idp: Harness, rp: RP) -> dict[str, Any]:
    idp.user("alice@example.com")
    return idp.tokens(rp, scope=OFFLINE_SCOPE)


@pytest.mark.parametrize("how", ["disable", "delete"])
def test_disabling_or_deleting_a_client_kills_its_tokens(
    idp: Harness, admin: str, how: str
) -> None:
    """At userinfo, introspection and refresh, at once."""
    rp = idp.client(grant_types=["authorization_code", "refresh_token"])
    api = resource_server(idp)
    tokens = _tokens(idp, rp)
    assert userinfo(idp, tokens["access_token"]).status_code == 200
    if how == "disable":
        response = call(
            idp, "POST", f"/clients/{rp.client_id}/disable", admin, json={"reason": "compromised"}
        )
    else:
        response = call(idp, "DELETE", f"/clients/{rp.client_id}", admin)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token_families"] == 1
    assert userinfo(idp, tokens["access_token"]).status_code == 401
    assert introspected(idp, api, tokens["access_token"]) == {"active": False}
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) in (
        "invalid_grant",
        "invalid_client",
    )


def test_enable_lets_a_client_back_but_old_tokens_stay_dead(idp: Harness, admin: str) -> None:
    out = created(idp, admin, {**SERVICE, "token_endpoint_auth_method": "client_secret_basic"})
    rp = RP(out["client_id"], out["client_secret"])
    old_token = service_token(idp, rp)
    call(idp, "POST", f"/clients/{rp.client_id}/disable", admin)
    assert idp.client_credentials(rp).status_code == 401
    response = call(idp, "POST", f"/clients/{rp.client_id}/enable", admin)
    assert response.json() == {"changed": True}
    assert idp.client_credentials(rp).status_code == 200
    api = resource_server(idp)
    assert introspected(idp, api, old_token) == {"active": False}


def test_roles_visible_is_a_client_field(idp: Harness, admin: str) -> None:
    out = created(idp, admin, {**SERVICE, "roles_visible": ["auditor"]})
    assert out["roles_visible"] == ["auditor"]
    path = f"/clients/{out['client_id']}"
    changed = call(idp, "PATCH", path, admin, json={"roles_visible": None})
    assert changed.status_code == 200 and changed.json()["roles_visible"] is None
    bad = call(idp, "PATCH", path, admin, json={"roles_visible": ["A B"]})
    assert bad.status_code == 422 and "roles_visible[0]" in bad.json()["fields"]
