"""Four eyes (idp.admin.approvals): the admin role and the admin API scopes wait for a second
administrator; bootstrap, self-approval, expiry, rejection, time boxes, pruning."""

from __future__ import annotations

import time

import pytest

from idp.admin import approvals
from idp.admin.audit import SECURITY_EVENTS
from idp.admin.users import grant_role, revoke_role
from idp.audit.events import AuditEvent
from idp.store import roles, users
from idp.worker import prune
from tests.helpers import Harness
from tests.token_helpers import json_of, sql


def grant(
    idp: Harness,
    user_id: str,
    role: str = "admin",
    *,
    actor: str = "test",
    until: int | None = None,
) -> approvals.PendingChange | None:
    """grant_role() in its own transaction; the pending change it made, if any."""
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        return grant_role(db, user, role, actor=actor, expires_at=until).pending


def holds_admin(idp: Harness, user_id: str) -> bool:
    with idp.runtime.reads.begin() as db:
        return roles.holds(db, user_id, roles.ADMIN)


def approve(idp: Harness, change_id: str, actor: str) -> None:
    with idp.runtime.sessions.begin() as db:
        approvals.approve(db, change_id, actor=actor)


def events(idp: Harness, event: AuditEvent) -> list[tuple[str | None, dict[str, object]]]:
    rows = sql(
        idp, "SELECT actor, detail FROM audit_events WHERE event = :e ORDER BY id", e=str(event)
    )
    return [(actor, json_of(detail)) for actor, detail in rows]


def test_the_first_admin_grant_bootstraps_and_is_audited(idp: Harness) -> None:
    """With no active administrator, nobody could approve: the first grant applies at once,
    recorded as a bootstrap, a security event."""
    root = idp.user("root@example.com")
    assert grant(idp, root, actor="cli") is None
    assert holds_admin(idp, root)
    ((actor, detail),) = events(idp, AuditEvent.APPROVAL_BOOTSTRAP)
    assert actor == "cli" and detail["change"] == {"before": [], "after": ["admin"]}
    assert AuditEvent.APPROVAL_BOOTSTRAP in SECURITY_EVENTS


def test_a_disabled_or_expired_admin_does_not_count_as_an_active_one(idp: Harness) -> None:
    old = idp.user("old@example.com", is_admin=True)
    sql(idp, "UPDATE users SET disabled = true WHERE id = :u", u=old)
    assert grant(idp, idp.user("new@example.com")) is None  # bootstrap again


def test_a_second_admin_grant_waits_for_a_different_admin(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    alice = idp.user()
    change = grant(idp, alice, actor=f"user:{root}")
    assert change is not None and change.kind == "role_grant"
    assert change.expires_at - change.requested_at == 24 * 3600
    assert not holds_admin(idp, alice)
    ((actor, detail),) = events(idp, AuditEvent.APPROVAL_REQUESTED)
    assert actor == f"user:{root}" and detail["approval"] == change.id
    assert detail["change"] == {"before": [], "after": ["admin"]}
    bob = idp.user("bob@example.com", is_admin=True)
    approve(idp, change.id, f"user:{bob}")
    assert holds_admin(idp, alice)
    ((actor, detail),) = events(idp, AuditEvent.APPROVAL_APPROVED)
    assert actor == f"user:{bob}" and detail["requested_by"] == f"user:{root}"


def test_other_roles_need_no_approval(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    alice = idp.user()
    assert grant(idp, alice, "auditor") is None
    with idp.runtime.reads.begin() as db:
        assert roles.of(db, alice) == ["auditor"]


def test_asking_twice_asks_once(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    alice = idp.user()
    first, second = grant(idp, alice), grant(idp, alice)
    assert first is not None and second is not None and first.id == second.id


@pytest.mark.parametrize("who", ["requester", "target"])
def test_nobody_approves_their_own_change(idp: Harness, who: str) -> None:
    """The approver is neither the one who asked nor the one the change makes an admin."""
    root = idp.user("root@example.com", is_admin=True)
    alice = idp.user()
    if who == "target":
        # alice is an admin for another hour; root asks for a lasting grant for her
        sql(
            idp,
            "INSERT INTO user_roles (user_id, role, granted_at, expires_at)"
            " VALUES (:u, 'admin', 0, :t)",
            u=alice,
            t=int(time.time()) + 3600,
        )
    change = grant(idp, alice, actor=f"user:{root}")
    assert change is not None
    approver = root if who == "requester" else alice
    with pytest.raises(approvals.NotAllowed):
        approve(idp, change.id, f"user:{approver}")
    assert events(idp, AuditEvent.APPROVAL_APPROVED) == []


@pytest.mark.parametrize("actor", ["client:svc", "cli", "user:nobody"])
def test_only_a_person_who_is_an_admin_approves(idp: Harness, actor: str) -> None:
    idp.user("root@example.com", is_admin=True)
    change = grant(idp, idp.user(), actor="client:svc")
    assert change is not None
    with pytest.raises(approvals.NotAllowed):
        approve(idp, change.id, actor)


def test_an_approver_whose_admin_role_was_revoked_cannot_approve(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    change = grant(idp, idp.user())
    assert change is not None
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, bob)
        assert user is not None
        revoke_role(db, user, "admin", actor="test")  # needs no approval: it takes power away
    with pytest.raises(approvals.NotAllowed):
        approve(idp, change.id, f"user:{bob}")


def test_a_change_expires_after_a_day(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    alice = idp.user()
    change = grant(idp, alice)
    assert change is not None
    day_ago = int(time.time()) - 24 * 3600 - 1
    sql(
        idp,
        "UPDATE pending_changes SET requested_at = :t, expires_at = :e",
        t=day_ago,
        e=day_ago + 24 * 3600,
    )
    with pytest.raises(approvals.NotPending, match="expired"):
        approve(idp, change.id, f"user:{bob}")
    assert not holds_admin(idp, alice)
    with idp.runtime.reads.begin() as db:
        assert approvals.status_of(approvals.get_change(db, change.id)) == "expired"
        assert approvals.list_pending(db).items == []


def test_expired_changes_are_pruned(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    assert grant(idp, idp.user()) is not None
    sql(idp, "UPDATE pending_changes SET expires_at = :t", t=int(time.time()) - 1)
    counts = prune(idp.runtime.sessions)
    assert counts["pending changes"] == 1
    assert sql(idp, "SELECT count(*) FROM pending_changes") == [(0,)]


def test_a_rejected_change_never_applies(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    alice = idp.user()
    change = grant(idp, alice)
    assert change is not None
    with idp.runtime.sessions.begin() as db:
        approvals.reject(db, change.id, actor=f"user:{bob}")
    with pytest.raises(approvals.NotPending, match="rejected"):
        approve(idp, change.id, f"user:{bob}")
    assert not holds_admin(idp, alice)
    ((actor, _),) = events(idp, AuditEvent.APPROVAL_REJECTED)
    assert actor == f"user:{bob}"


def test_a_change_is_decided_once(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    change = grant(idp, idp.user())
    assert change is not None
    approve(idp, change.id, f"user:{bob}")
    with pytest.raises(approvals.NotPending, match="approved"):
        approve(idp, change.id, f"user:{bob}")
    with pytest.raises(approvals.UnknownChange):
        approve(idp, "no-such-change", f"user:{bob}")


def test_a_time_boxed_grant_keeps_its_end_through_the_approval(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    alice = idp.user()
    until = int(time.time()) + 8 * 3600
    change = grant(idp, alice, until=until)
    assert change is not None and change.grant_until == until
    approve(idp, change.id, f"user:{bob}")
    with idp.runtime.reads.begin() as db:
        assert roles.grants_of(db, alice) == [("admin", until)]


def test_a_time_box_that_ended_before_the_approval_refuses_it(idp: Harness) -> None:
    idp.user("root@example.com", is_admin=True)
    bob = idp.user("bob@example.com", is_admin=True)
    alice = idp.user()
    change = grant(idp, alice, until=int(time.time()) + 3600)
    assert change is not None
    sql(idp, "UPDATE pending_changes SET grant_until = :t", t=int(time.time()) - 1)
    with pytest.raises(approvals.NotPending, match="time box"):
        approve(idp, change.id, f"user:{bob}")
    assert not holds_admin(idp, alice)


def test_break_glass_applies_without_a_second_admin_audited(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    alice = idp.user()
    change = grant(idp, alice, actor=f"user:{root}")
    assert change is not None
    with idp.runtime.sessions.begin() as db:
        approvals.approve(db, change.id, actor="cli", break_glass=True)
    assert holds_admin(idp, alice)
    ((actor, detail),) = events(idp, AuditEvent.APPROVAL_BREAK_GLASS)
    assert actor == "cli" and detail["change"] == {"before": [], "after": ["admin"]}
    assert AuditEvent.APPROVAL_BREAK_GLASS in SECURITY_EVENTS
