"""`idp approvals ...`: list the changes that wait for a second administrator (the admin role,
an admin API scope), approve one in an emergency (`--break-glass`), reject one.

The command line cannot tell who runs it, so it can never be the second pair of eyes: approving
needs --break-glass, and is recorded as a security event (actor `cli`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from idp.cli.base import CommandError, Parser, database, emit
from idp.settings import Settings


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def pending_line(change: Any) -> str:
    """What a command that asked for a change says about it."""
    from idp.admin.approvals import summary

    return (
        f"pending approval {change.id}: {summary(change)}; a different administrator must "
        f"approve it before {_utc(change.expires_at)} (idp approvals, or the admin pages)"
    )


def cmd_approvals_list(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.approvals import describe, list_pending
    from idp.admin.listing import MAX_LIMIT

    rows: list[dict[str, Any]] = []
    with database(settings) as db:
        cursor = None
        while True:
            page = list_pending(db, cursor=cursor, limit=MAX_LIMIT)
            rows += [describe(c) for c in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    lines = [
        f"{r['id']}  {r['summary']}  asked by {r['requested_by']}  "
        f"expires {_utc(int(r['expires_at']))}"
        for r in rows
    ]
    emit(rows, args.json, "\n".join(lines) or "no pending changes")


def _decide(settings: Settings, change_id: str, approve: bool) -> dict[str, object]:
    from idp.admin import approvals

    try:
        with database(settings) as db:
            if approve:
                change = approvals.approve(db, change_id, actor="cli", break_glass=True)
            else:
                change = approvals.reject(db, change_id, actor="cli")
            return approvals.describe(change)
    except approvals.UnknownChange:
        raise CommandError(f"no pending change {change_id}") from None
    except (approvals.NotPending, approvals.NotAllowed) as exc:
        raise CommandError(str(exc)) from None


def cmd_approvals_approve(settings: Settings, args: argparse.Namespace) -> None:
    if not args.break_glass:
        raise CommandError(
            "the command line cannot be the second administrator: approve in the admin pages "
            "or the admin API, or, in an emergency, pass --break-glass (a security event)"
        )
    out = _decide(settings, args.id, approve=True)
    emit(out, args.json, f"approved {out['id']} (break-glass, audited): {out['summary']}")


def cmd_approvals_reject(settings: Settings, args: argparse.Namespace) -> None:
    out = _decide(settings, args.id, approve=False)
    emit(out, args.json, f"rejected {out['id']}: {out['summary']}")


def add_commands(sub: Any) -> None:
    approvals = sub.add_parser(
        "approvals", help="changes waiting for a second administrator (admin role, admin scopes)"
    ).add_subparsers(dest="approvals_command", required=True, parser_class=Parser)
    listing = approvals.add_parser("list", help="list the pending changes")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_approvals_list)

    approve = approvals.add_parser(
        "approve", help="apply a pending change with no second administrator (--break-glass)"
    )
    approve.add_argument("id")
    approve.add_argument(
        "--break-glass",
        action="store_true",
        help="required: approve without a second administrator (recorded as a security event)",
    )
    approve.add_argument("--json", action="store_true")
    approve.set_defaults(func=cmd_approvals_approve)

    reject = approvals.add_parser("reject", help="refuse a pending change")
    reject.add_argument("id")
    reject.add_argument("--json", action="store_true")
    reject.set_defaults(func=cmd_approvals_reject)
