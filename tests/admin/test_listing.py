"""Searching clients, users and the audit trail (idp/admin): keyset pagination with an opaque
cursor, and searches that narrow by what is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from idp.admin import audit, clients, users
from idp.admin.listing import InvalidCursor, Page, encode_cursor
from idp.audit.events import AuditEvent, record
from tests.helpers import Harness

T = TypeVar("T")


def read(idp: Harness, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with idp.runtime.sessions.begin() as db:
        result = fn(db, *args, **kwargs)
        db.expunge_all()
        return result


def every_page(idp: Harness, fn: Callable[..., Page[Any]], **kwargs: Any) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        page = read(idp, fn, cursor=cursor, **kwargs)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_clients_page_newest_first_and_each_appears_once(idp: Harness) -> None:
    made = [idp.client(name=f"App {i}").client_id for i in range(5)]
    pages = every_page(idp, clients.search_clients, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [c.client_id for p in pages for c in p]
    assert sorted(seen) == sorted(made) and len(set(seen)) == 5
    keys = [(c.created_at, c.client_id) for p in pages for c in p]
    assert keys == sorted(keys, reverse=True)


def test_client_search_matches_id_or_name_in_any_case(idp: Harness) -> None:
    billing = idp.client(name="Billing Portal")
    idp.client(name="Wiki")
    assert [c.client_id for c in read(idp, clients.search_clients, q="billing").items] == [
        billing.client_id
    ]
    assert read(idp, clients.search_clients, q=billing.client_id[:8]).items[0].client_id == (
        billing.client_id
    )
    # LIKE wildcards are text to search for, not patterns
    assert read(idp, clients.search_clients, q="%").items == []


def test_users_page_by_email_and_filter_by_role(idp: Harness) -> None:
    for name in ("carol", "alice", "bob"):
        idp.user(f"{name}@example.com")
    idp.user("dave@example.com", is_admin=True)
    pages = every_page(idp, users.search_users, limit=3)
    assert [[u.email for u in p] for p in pages] == [
        ["alice@example.com", "bob@example.com", "carol@example.com"],
        ["dave@example.com"],
    ]
    admins = read(idp, users.search_users, role="admin").items
    assert [u.email for u in admins] == ["dave@example.com"]
    assert [u.email for u in read(idp, users.search_users, q="CAR").items] == [
        "carol@example.com"
    ]


def test_a_cursor_not_made_for_the_list_is_refused(idp: Harness) -> None:
    for bad in ("not base64 !", encode_cursor(["x", "y"]), encode_cursor([True])):
        with pytest.raises(InvalidCursor):
            read(idp, users.search_users, cursor=encode_cursor([1, 2]))
        with pytest.raises(InvalidCursor):
            read(idp, audit.search_events, cursor=bad)
    with pytest.raises(ValueError, match="limit"):
        read(idp, clients.search_clients, limit=0)


def _events(idp: Harness) -> None:
    with idp.runtime.sessions.begin() as db:
        record(db, AuditEvent.USER_DISABLED, user_id="u1", actor="user:admin-1")
        record(db, AuditEvent.CLIENT_DISABLED, client_id="c1", actor="cli")
        record(db, AuditEvent.ROLE_GRANTED, user_id="u2", actor="user:admin-1", role="auditor")


def test_audit_search_by_actor_subject_event_and_time(idp: Harness) -> None:
    _events(idp)

    def events(**kwargs: Any) -> list[str]:
        return [r.event for r in read(idp, audit.search_events, **kwargs).items]

    assert events(actor="user:admin-1") == ["role.granted", "user.disabled"]
    assert events(subject="c1") == ["client.disabled"]
    assert events(subject="u2", event="role.granted") == ["role.granted"]
    assert events(actor="user:admin-1", event="client.disabled") == []
    assert events(since=0, until=1) == []
    assert len(events(since=0)) >= 3
    with pytest.raises(audit.UnknownEvent):
        events(event="no.such.event")


def test_audit_pages_hold_each_event_once(idp: Harness) -> None:
    for _ in range(3):
        _events(idp)
    pages = every_page(idp, audit.search_events, actor="user:admin-1", limit=4)
    ids = [r.id for p in pages for r in p]
    assert [len(p) for p in pages] == [4, 2] and ids == sorted(set(ids), reverse=True)


def test_dashboard_counts_and_security_events(idp: Harness) -> None:
    idp.user("alice@example.com")
    idp.user("root@example.com", is_admin=True)
    idp.client()
    _events(idp)
    counts = read(idp, audit.counts)
    assert (counts.users, counts.admins, counts.clients) == (2, 1, 1)
    assert counts.published_keys >= 1
    recent = [r.event for r in read(idp, audit.recent_security_events)]
    assert {"role.granted", "user.disabled", "client.disabled"} <= set(recent)
    assert "user.created" not in recent
