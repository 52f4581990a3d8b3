"""Issue 13, admin UI clients: list (search, linter findings), detail, create (the secret shown
once, no-store, with a copy button), edit (field errors by RFC 7591 name), rotate the secret,
disable and delete through a confirmation page. Every change is audited with the admin."""

from __future__ import annotations

import re

from idp.store import clients
from tests.admin.pages.admin_helpers import actors, form_of, sign_in_admin
from tests.helpers import Harness, basic

SERVICE = {
    "client_name": "Billing service",
    "grant_types": "client_credentials",
    "scope": "billing.read",
    "token_endpoint_auth_method": "client_secret_basic",
    "require_pkce": "on",
}


def _secret_of(page: str) -> str:
    found = re.search(r'id="client-secret" name="client_secret" type="text" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _client_id_of(page: str) -> str:
    found = re.search(r'<code id="client-id">([^<]+)</code>', page)
    assert found, page
    return found.group(1)


def _create(idp: Harness, **values: str) -> tuple[str, str]:
    fields = {**form_of(idp, "/admin/clients/new"), **SERVICE, **values}
    page = idp.http.post("/admin/clients/new", data=fields)
    assert page.status_code == 200, page.text
    return _client_id_of(page.text), _secret_of(page.text)


def _token(idp: Harness, client_id: str, secret: str) -> int:
    r = idp.http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    return r.status_code


def test_a_new_secret_is_shown_once_on_a_no_store_page_and_works(idp: Harness) -> None:
    """The secret comes back once, on a no-store page with a copy button; it works at /token."""
    admin = sign_in_admin(idp)
    fields = {**form_of(idp, "/admin/clients/new"), **SERVICE}
    page = idp.http.post("/admin/clients/new", data=fields)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-copy="client-secret"' in page.text and "readonly" in page.text
    client_id, secret = _client_id_of(page.text), _secret_of(page.text)
    assert _token(idp, client_id, secret) == 200
    detail = idp.http.get(f"/admin/clients/{client_id}")
    assert detail.status_code == 200 and secret not in detail.text
    assert "Billing service" in idp.http.get("/admin/clients?q=billing").text
    assert "Billing service" not in idp.http.get("/admin/clients?q=nothing-like-it").text
    assert actors(idp, "client.created") == [f"user:{admin}"]


def test_field_errors_are_shown_next_to_the_fields(idp: Harness) -> None:
    """A bad registration is not saved; each error sits by its RFC 7591 field name."""
    sign_in_admin(idp)
    fields = {
        **form_of(idp, "/admin/clients/new"),
        **SERVICE,
        "grant_types": "authorization_code",
        "redirect_uris": "http://rp.example/callback",
    }
    page = idp.http.post("/admin/clients/new", data=fields)
    assert page.status_code == 422
    assert "redirect_uris[0]:" in page.text and 'class="field-error"' in page.text


def test_editing_a_client_with_a_field_error_and_then_without(idp: Harness) -> None:
    """Edit via fetch_for_update + update_client: a field error, then a change that is saved
    and audited with the admin as actor."""
    admin = sign_in_admin(idp)
    client_id, _ = _create(idp)
    base = {**form_of(idp, f"/admin/clients/{client_id}/edit"), **SERVICE}
    bad = idp.http.post(
        f"/admin/clients/{client_id}/edit", data={**base, "backchannel_logout_uri": "not a uri"}
    )
    assert bad.status_code == 422 and 'id="backchannel_logout_uri-error"' in bad.text
    good = idp.http.post(
        f"/admin/clients/{client_id}/edit", data={**base, "client_name": "Billing v2"}
    )
    assert good.status_code == 303
    assert "Billing v2" in idp.http.get(f"/admin/clients/{client_id}").text
    assert actors(idp, "client.updated") == [f"user:{admin}"]


def test_rotating_the_secret_keeps_the_old_one_for_the_overlap(idp: Harness) -> None:
    """Rotate with the default 24 h overlap: both secrets work; the new one is shown once."""
    admin = sign_in_admin(idp)
    client_id, old = _create(idp)
    fields = form_of(idp, f"/admin/clients/{client_id}/rotate")
    assert fields["overlap_seconds"]
    page = idp.http.post(
        f"/admin/clients/{client_id}/rotate",
        data={"csrf_token": fields["csrf_token"], "overlap_seconds": "86400"},
    )
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    new = _secret_of(page.text)
    assert new != old
    assert _token(idp, client_id, new) == 200 and _token(idp, client_id, old) == 200
    assert actors(idp, "client.secret_rotated") == [f"user:{admin}"]


def test_disabling_and_enabling_a_client(idp: Harness) -> None:
    """Disable through its confirmation page: the client authenticates nowhere; enable again."""
    sign_in_admin(idp)
    client_id, secret = _create(idp)
    confirm = idp.http.get(f"/admin/clients/{client_id}/disable")
    assert confirm.status_code == 200 and "every token it holds is revoked" in confirm.text
    fields = form_of(idp, f"/admin/clients/{client_id}/disable")
    assert idp.http.post(f"/admin/clients/{client_id}/disable", data=fields).status_code == 303
    assert _token(idp, client_id, secret) == 401
    fields = form_of(idp, f"/admin/clients/{client_id}")
    assert idp.http.post(f"/admin/clients/{client_id}/enable", data=fields).status_code == 303
    assert _token(idp, client_id, secret) == 200


def test_deleting_a_client_through_its_confirmation_page(idp: Harness) -> None:
    """GET shows what will happen (nothing done yet); POST deletes and revokes."""
    admin = sign_in_admin(idp)
    client_id, secret = _create(idp)
    confirm = idp.http.get(f"/admin/clients/{client_id}/delete")
    assert "cannot be undone" in confirm.text
    assert _token(idp, client_id, secret) == 200
    fields = form_of(idp, f"/admin/clients/{client_id}/delete")
    done = idp.http.post(f"/admin/clients/{client_id}/delete", data=fields)
    assert done.status_code == 303
    assert idp.http.get(f"/admin/clients/{client_id}").status_code == 404
    assert _token(idp, client_id, secret) == 401
    assert actors(idp, "client.deleted") == [f"user:{admin}"]


def test_the_linter_finding_for_pkce_shows_and_goes(idp: Harness) -> None:
    """A client without PKCE shows the finding with its fix; turning PKCE on clears it."""
    sign_in_admin(idp)
    values = {
        "grant_types": "authorization_code",
        "redirect_uris": "https://rp.example/callback",
        "scope": "openid",
        "require_pkce": "",
    }
    client_id, _ = _create(idp, **values)
    assert "pkce-not-required" in idp.http.get(f"/admin/clients/{client_id}").text
    assert "1 (medium)" in idp.http.get("/admin/clients").text
    base = {**form_of(idp, f"/admin/clients/{client_id}/edit"), **SERVICE, **values}
    base["require_pkce"] = "on"
    assert idp.http.post(f"/admin/clients/{client_id}/edit", data=base).status_code == 303
    assert "pkce-not-required" not in idp.http.get(f"/admin/clients/{client_id}").text


def test_least_privilege_fields_are_set_and_changed_on_the_form(idp: Harness) -> None:
    """The audiences (RFC 8707), the roles a client may see, and a resource server's resources
    (RFC 7662 §4) are on the form; the client's tokens then follow them."""
    sign_in_admin(idp)
    client_id, secret = _create(
        idp,
        audiences="https://notes.example\nurn:example:billing",
        roles_visible="auditor  reader",
        can_introspect="on",
        resources="https://notes.example",
    )
    with idp.runtime.sessions.begin() as db:
        row = clients.get(db, client_id)
        assert row is not None
        assert row.audiences == ["https://notes.example", "urn:example:billing"]
        assert row.roles_visible == ["auditor", "reader"]
        assert row.can_introspect and row.resources == ["https://notes.example"]
    r = idp.http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": "urn:example:billing"},
        headers=basic(client_id, secret),
    )
    assert idp.decode(r.json()["access_token"]).claims["aud"] == "urn:example:billing"
    page = idp.http.get(f"/admin/clients/{client_id}/edit").text
    assert ">https://notes.example\nurn:example:billing</textarea>" in page
    assert 'name="can_introspect" checked' in page
    edit = {**form_of(idp, f"/admin/clients/{client_id}/edit"), **SERVICE}
    # Resources without can_introspect are refused by their field, and nothing is saved.
    refused = idp.http.post(
        f"/admin/clients/{client_id}/edit", data={**edit, "resources": "https://notes.example"}
    )
    assert refused.status_code == 422 and 'id="resources-error"' in refused.text
    cleared = idp.http.post(
        f"/admin/clients/{client_id}/edit",
        data={**edit, "audiences": "", "roles_visible": "", "resources": ""},
    )
    assert cleared.status_code == 303
    with idp.runtime.sessions.begin() as db:
        row = clients.get(db, client_id)
        assert row is not None
        assert (row.audiences, row.roles_visible, row.resources) == (None, None, None)
