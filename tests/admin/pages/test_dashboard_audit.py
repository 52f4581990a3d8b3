"""Issue 13, admin UI dashboard, roles and audit: counts and recent security events; roles
with who holds them; the trail searched by actor, subject, event type and time range, with
pagination."""

from __future__ import annotations

import time

from tests.admin.pages.admin_helpers import form_of, sign_in_admin
from tests.helpers import Harness
from tests.token_helpers import sql


def test_the_dashboard_counts_and_shows_security_events(idp: Harness) -> None:
    """Dashboard: counts (clients, users, admins, disabled users, keys) and security events."""
    sign_in_admin(idp)
    idp.client()
    idp.user(email="bob@example.com")
    idp.login(email="bob@example.com", password="wrong password, twice over")
    page = idp.http.get("/admin")
    assert page.status_code == 200
    text = " ".join(page.text.split())
    for what, count in (("Clients", 1), ("Users", 2), ("Administrators", 1), ("Signing keys", 1)):
        assert f"<dt>{what}</dt><dd>{count}</dd>" in text, what
    assert "<td>role.granted</td>" in text


def test_the_roles_page_lists_roles_and_their_holders(idp: Harness) -> None:
    """Roles: each role with how many hold it, linking to the users who do."""
    admin = sign_in_admin(idp)
    page = idp.http.get("/admin/roles")
    assert page.status_code == 200 and 'href="/admin/users?role=admin">1<' in page.text
    holders = idp.http.get("/admin/users?role=admin")
    assert f'href="/admin/users/{admin}"' in holders.text


def test_the_audit_trail_is_searched_by_actor_subject_event_and_time(idp: Harness) -> None:
    """Audit: search by actor, subject, event type and time range."""
    admin = sign_in_admin(idp)
    user_id = idp.user(email="dave@example.com")
    fields = form_of(idp, f"/admin/users/{user_id}/disable")
    assert idp.http.post(f"/admin/users/{user_id}/disable", data=fields).status_code == 303
    actor = f"user:{admin}"
    by_actor = idp.http.get("/admin/audit", params={"actor": actor})
    assert by_actor.status_code == 200 and "<td>user.disabled</td>" in by_actor.text
    assert "<td>user.created</td>" not in by_actor.text  # created by the test, not by the admin
    by_subject = idp.http.get("/admin/audit", params={"subject": user_id, "event": "user.created"})
    assert "<td>user.created</td>" in by_subject.text
    assert "<td>user.disabled</td>" not in by_subject.text
    today = time.strftime("%Y-%m-%d", time.gmtime())
    in_range = idp.http.get("/admin/audit", params={"event": "user.disabled", "since": today})
    assert "<td>user.disabled</td>" in in_range.text
    before = idp.http.get("/admin/audit", params={"event": "user.disabled", "until": "2000-01-01"})
    assert "<td>user.disabled</td>" not in before.text
    assert idp.http.get("/admin/audit", params={"event": "no.such"}).status_code == 400


def test_the_audit_trail_pages(idp: Harness) -> None:
    """Audit: pagination, newest first, 50 to a page."""
    sign_in_admin(idp)
    for i in range(60):
        sql(idp, "INSERT INTO audit_events (at, event, detail) VALUES (:t, 'logout', '{}')", t=i)
    first = idp.http.get("/admin/audit", params={"event": "logout"})
    assert first.text.count("<td>logout</td>") == 50
    older = first.text.split('href="/admin/audit?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = idp.http.get(f"/admin/audit?{older}")
    assert second.text.count("<td>logout</td>") == 10 and "Older events" not in second.text
