"""`idp approvals`, and the CLI's grants of the admin role and admin scopes: the first admin of
a fresh install bootstraps; later ones wait for a second administrator, which the command line
cannot be, so `approve` needs --break-glass and is recorded as a security event."""

from __future__ import annotations

import json
import time

from sqlalchemy import text

from idp.admin.audit import SECURITY_EVENTS
from idp.audit.events import AuditEvent
from tests.cli.test_main import PASSWORD, Cli, cli, one_line_error  # noqa: F401  (fixture)


def create(tool: Cli, email: str, *flags: str) -> dict[str, object]:
    out = tool.ok(
        "users", "create", email, *flags, "--password-stdin", "--json", stdin=PASSWORD + "\n"
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def events(tool: Cli, event: AuditEvent) -> list[str | None]:
    with tool.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor FROM audit_events WHERE event = :e ORDER BY id"), {"e": str(event)}
        )
        return [actor for (actor,) in rows]


def roles_of(tool: Cli, email: str) -> list[str]:
    return json.loads(tool.ok("users", "roles", email, "--json").stdout)["roles"]  # type: ignore[no-any-return]


def test_the_first_admin_of_a_fresh_install_bootstraps(cli: Cli) -> None:  # noqa: F811
    root = create(cli, "root@example.com", "--admin")
    assert root["roles"] == ["admin"] and root["admin"] is True and "pending_changes" not in root
    assert events(cli, AuditEvent.APPROVAL_BOOTSTRAP) == ["cli"]
    assert AuditEvent.APPROVAL_BOOTSTRAP in SECURITY_EVENTS


def test_a_second_admin_waits_and_the_output_says_so(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    second = create(cli, "second@example.com", "--admin")
    assert second["roles"] == [] and second["admin"] is False
    (change,) = second["pending_changes"]  # type: ignore[misc]
    assert change["status"] == "pending" and change["expires_at"] > time.time() + 23 * 3600
    text_out = cli.ok("users", "roles", "root@example.com", "--add", "admin").stdout
    assert "admin" in text_out  # root holds it already: nothing to ask
    create(cli, "alice@example.com")
    asked = cli.ok("users", "roles", "alice@example.com", "--add", "admin").stdout
    assert "pending approval " in asked and "UTC" in asked and "different administrator" in asked
    assert roles_of(cli, "alice@example.com") == []


def test_approvals_list_as_a_table_and_as_json(cli: Cli) -> None:  # noqa: F811
    assert cli.ok("approvals", "list").stdout.strip() == "no pending changes"
    create(cli, "root@example.com", "--admin")
    change = create(cli, "alice@example.com", "--admin")["pending_changes"][0]  # type: ignore[index]
    table = cli.ok("approvals", "list").stdout
    assert change["id"] in table and "grant role admin" in table and "asked by cli" in table
    (listed,) = json.loads(cli.ok("approvals", "list", "--json").stdout)
    assert listed["id"] == change["id"] and listed["kind"] == "role_grant"


def test_approve_refuses_without_break_glass(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    change = create(cli, "alice@example.com", "--admin")["pending_changes"][0]  # type: ignore[index]
    error = one_line_error(cli.run("approvals", "approve", change["id"]))
    assert "--break-glass" in error
    assert roles_of(cli, "alice@example.com") == []
    assert events(cli, AuditEvent.APPROVAL_BREAK_GLASS) == []


def test_break_glass_applies_and_is_a_security_event(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    change = create(cli, "alice@example.com", "--admin")["pending_changes"][0]  # type: ignore[index]
    done = cli.ok("approvals", "approve", change["id"], "--break-glass")
    assert "break-glass" in done.stdout
    assert roles_of(cli, "alice@example.com") == ["admin"]
    assert events(cli, AuditEvent.APPROVAL_BREAK_GLASS) == ["cli"]
    assert AuditEvent.APPROVAL_BREAK_GLASS in SECURITY_EVENTS
    again = one_line_error(cli.run("approvals", "approve", change["id"], "--break-glass"))
    assert "approved already" in again
    assert "no pending change" in one_line_error(cli.run("approvals", "reject", "nope"))


def test_reject(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    change = create(cli, "alice@example.com", "--admin")["pending_changes"][0]  # type: ignore[index]
    assert "rejected" in cli.ok("approvals", "reject", change["id"]).stdout
    assert roles_of(cli, "alice@example.com") == []
    assert events(cli, AuditEvent.APPROVAL_REJECTED) == ["cli"]
    assert "rejected already" in one_line_error(
        cli.run("approvals", "approve", change["id"], "--break-glass")
    )


def test_an_expired_change_cannot_be_approved_even_breaking_glass(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    change = create(cli, "alice@example.com", "--admin")["pending_changes"][0]  # type: ignore[index]
    with cli.engine.begin() as conn:
        then = int(time.time()) - 86400 - 10
        conn.execute(
            text("UPDATE pending_changes SET requested_at = :t, expires_at = :e"),
            {"t": then, "e": then + 86400},
        )
    assert "expired" in one_line_error(
        cli.run("approvals", "approve", change["id"], "--break-glass")
    )
    assert roles_of(cli, "alice@example.com") == []


def test_a_time_boxed_grant_keeps_its_end_through_the_approval(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    create(cli, "alice@example.com")
    asked = json.loads(
        cli.ok(
            "users", "roles", "alice@example.com", "--add", "admin", "--for", "8h", "--json"
        ).stdout
    )
    (change,) = asked["pending_changes"]
    assert change["grant_until"] > time.time() + 7 * 3600
    cli.ok("approvals", "approve", change["id"], "--break-glass")
    grants = json.loads(cli.ok("users", "roles", "alice@example.com", "--json").stdout)[
        "role_grants"
    ]
    assert grants == [{"role": "admin", "expires_at": change["grant_until"]}]


def test_an_admin_scope_on_the_cli_waits_once_an_admin_exists(cli: Cli) -> None:  # noqa: F811
    create(cli, "root@example.com", "--admin")
    made = cli.ok(
        "clients",
        "create",
        "--name",
        "Ops",
        "--grant-type",
        "client_credentials",
        "--scope",
        "ops",
        "--scope",
        "idp:admin",
    )
    assert "pending approval " in made.stdout and "add scope idp:admin" in made.stdout
    created = json.loads(
        cli.ok(
            "clients",
            "create",
            "--name",
            "Ops 2",
            "--grant-type",
            "client_credentials",
            "--scope",
            "idp:admin.read",
            "--json",
        ).stdout
    )
    assert created["scope"] == "" and created["pending_change"]["scopes"] == ["idp:admin.read"]
    cli.ok("approvals", "approve", created["pending_change"]["id"], "--break-glass")
    shown = json.loads(cli.ok("clients", "show", created["client_id"]).stdout)
    assert shown["scope"] == "idp:admin.read"
    updated = cli.ok(
        "clients",
        "update",
        created["client_id"],
        "--name",
        "Ops two",
        "--scope",
        "idp:admin.read",
        "--scope",
        "idp:admin",
    )
    assert "pending approval " in updated.stdout
    shown = json.loads(cli.ok("clients", "show", created["client_id"]).stdout)
    assert shown["client_name"] == "Ops two" and shown["scope"] == "idp:admin.read"
    # Taking the admin scopes away needs no approval.
    cli.ok("clients", "update", created["client_id"], "--scope", "ops")
    assert json.loads(cli.ok("clients", "show", created["client_id"]).stdout)["scope"] == "ops"
