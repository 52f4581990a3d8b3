"""`idp users ...`: create a user, change their roles, end their sessions, disable and enable
them, unlock them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from idp.cli.approvals import pending_line
from idp.cli.base import CommandError, Parser, database, emit
from idp.settings import Settings


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(text: str) -> int:
    """ "30m", "8h", "7d" (or plain seconds) as seconds, at least a minute and at most a year."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 8h or 7d")
    seconds = int(number) * units[unit]
    if not 60 <= seconds <= 365 * 86400:
        raise argparse.ArgumentTypeError("a time-boxed grant lasts a minute to a year")
    return seconds


def read_password_stdin() -> str:
    data = sys.stdin.readline() if not sys.stdin.isatty() else ""
    if data.endswith("\n"):
        data = data[:-1]
        if data.endswith("\r"):
            data = data[:-1]
    if not data:
        raise CommandError("no password on standard input")
    return data


def cmd_users_create(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.approvals import describe, pending_for_user
    from idp.admin.users import InvalidUser, create_user
    from idp.authn.passwords import Passwords
    from idp.store import roles

    if not args.password_stdin:
        raise CommandError("--password-stdin is required (passwords never go on the command line)")
    password = read_password_stdin()
    try:
        with database(settings) as db:
            user = create_user(
                db,
                Passwords(settings),
                settings,
                email=args.email,
                password=password,
                name=args.name,
                is_admin=args.admin,
                roles_granted=args.role or [],
                actor="cli",
            )
            pending = pending_for_user(db, user.id)
            out = {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "admin": args.admin and not pending,
                "roles": roles.of(db, user.id),
                **({"pending_changes": [describe(c) for c in pending]} if pending else {}),
            }
    except InvalidUser as exc:
        raise CommandError(str(exc)) from None
    except IntegrityError:
        raise CommandError(f"a user with email {args.email} already exists") from None
    text = "\n".join([f"created user {out['email']} ({out['id']})", *map(pending_line, pending)])
    emit(out, args.json, text)


def cmd_users_roles(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.approvals import describe
    from idp.admin.users import InvalidUser, grant_role, revoke_role
    from idp.store import roles, users
    from idp.store.base import now

    pending = []
    try:
        with database(settings) as db:
            user = users.by_email(db, args.email)
            if user is None:
                raise CommandError(f"no user {args.email}")
            until = now() + args.for_seconds if args.for_seconds else None
            for role in args.add or []:
                granted = grant_role(db, user, role, actor="cli", expires_at=until)
                if granted.pending is not None:
                    pending.append(granted.pending)
            for role in args.remove or []:
                revoke_role(db, user, role, actor="cli")
            grants = roles.grants_of(db, user.id)
            waiting = [describe(c) for c in pending]
    except InvalidUser as exc:
        raise CommandError(str(exc)) from None
    held = [role for role, _ in grants]
    shown = [role + (f" (until {_utc(until)})" if until else "") for role, until in grants]
    out = {
        "email": user.email,
        "roles": held,
        "role_grants": [{"role": r, "expires_at": until} for r, until in grants],
        **({"pending_changes": waiting} if waiting else {}),
    }
    emit(out, args.json, "\n".join([" ".join(shown) or "(no roles)", *map(pending_line, pending)]))


def cmd_users_revoke_sessions(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import revoke_user
    from idp.store import users

    # Through revoke_user, so the access tokens already issued die too (the epoch), not only
    # the sessions and refresh tokens.
    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        revoked = revoke_user(db, user.id, actor="cli", reason=args.reason)
    print(
        f"ended {revoked.sessions} sessions and {revoked.families} refresh-token grants of "
        f"{args.email}; access tokens issued before now are refused"
    )


def cmd_users_disable(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import disable_user
    from idp.store import users

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        revoked = disable_user(db, user.id, actor="cli", reason=args.reason)
    out = {"email": args.email, "disabled": True, **asdict(revoked)}
    emit(
        out,
        args.json,
        f"disabled {args.email}: ended {revoked.sessions} sessions and {revoked.families} "
        "refresh-token grants; access tokens issued before now are refused",
    )


def cmd_users_enable(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import enable_user
    from idp.store import users

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        was_disabled = enable_user(db, user.id, actor="cli")
    text = f"enabled {args.email}" if was_disabled else f"{args.email} was not disabled"
    emit({"email": args.email, "disabled": False, "was_disabled": was_disabled}, args.json, text)


def cmd_users_unlock(settings: Settings, args: argparse.Namespace) -> None:
    from idp.authn import throttle
    from idp.store import users

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        cleared = throttle.unlock(db, args.email, user.id, actor="cli")
    print(f"cleared {cleared} sign-in throttle budgets of {args.email}")


def cmd_users_mfa(settings: Settings, args: argparse.Namespace) -> None:
    from idp.authn import mfa
    from idp.store import factors, users, webauthn

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        totp = factors.totp_of(db, user.id)
        state = mfa.factors_of(db, user.id)
        out = {
            "email": user.email,
            "required": mfa.must_use_mfa(db, user, None),
            "authenticator_app": (
                None
                if totp is None
                else {
                    "confirmed": totp.confirmed_at is not None,
                    "created_at": totp.created_at,
                    "confirmed_at": totp.confirmed_at,
                }
            ),
            "passkeys": [
                {
                    "id": c.id,
                    "name": c.name,
                    "synced": c.backup_eligible,
                    "created_at": c.created_at,
                    "last_used_at": c.last_used_at,
                }
                for c in webauthn.of_user(db, user.id)
            ],
            "recovery_codes_left": state.recovery_codes,
        }
    lines = [f"{out['email']}: two-step verification {'on' if state.any else 'off'}"]
    if out["required"]:
        lines.append("  required (admin role)")
    if totp is not None:
        lines.append(
            f"  authenticator app ({'confirmed' if totp.confirmed_at else 'not confirmed'})"
        )
    lines += [f"  passkey {p['name']!r} ({p['id']})" for p in out["passkeys"]]  # type: ignore[attr-defined]
    lines.append(f"  {state.recovery_codes} recovery codes left")
    emit(out, args.json, "\n".join(lines))


def cmd_users_reset_mfa(settings: Settings, args: argparse.Namespace) -> None:
    from idp.authn import mfa
    from idp.store import users

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        before = mfa.reset(db, user.id, actor="cli")
        required = mfa.must_use_mfa(db, user, None)
    print(
        f"removed the second factors of {args.email} (authenticator app: "
        f"{'yes' if before.totp else 'no'}, passkeys: {before.passkeys}, recovery codes: "
        f"{before.recovery_codes})" + ("; the next sign-in sets up a new one" if required else "")
    )


def add_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True, parser_class=Parser
    )
    create_user = users.add_parser("create", help="create a user")
    create_user.add_argument("email")
    create_user.add_argument("--name")
    create_user.add_argument("--admin", action="store_true")
    create_user.add_argument(
        "--role", action="append", metavar="ROLE", help="a role for the `roles` claim (repeat)"
    )
    create_user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (required)",
    )
    create_user.add_argument("--json", action="store_true")
    create_user.set_defaults(func=cmd_users_create)

    user_roles = users.add_parser(
        "roles", help="show a user's roles, or change them (--add/--remove, audited)"
    )
    user_roles.add_argument("email")
    user_roles.add_argument("--add", action="append", metavar="ROLE")
    user_roles.add_argument("--remove", action="append", metavar="ROLE")
    user_roles.add_argument(
        "--for",
        dest="for_seconds",
        type=duration,
        metavar="DURATION",
        help="time-box the --add grants: 30m, 8h, 7d (default: until revoked)",
    )
    user_roles.add_argument("--json", action="store_true")
    user_roles.set_defaults(func=cmd_users_roles)

    revoke_sessions = users.add_parser(
        "revoke-sessions", help="end every session and refresh token of a user"
    )
    revoke_sessions.add_argument("email")
    revoke_sessions.add_argument(
        "--reason", default="sessions_revoked", help="for the audit trail (default: %(default)s)"
    )
    revoke_sessions.set_defaults(func=cmd_users_revoke_sessions)

    disable = users.add_parser(
        "disable",
        help="refuse a user's sign-ins and tokens, and revoke every session and token (audited)",
    )
    disable.add_argument("email")
    disable.add_argument(
        "--reason", default="disabled", help="for the audit trail (default: %(default)s)"
    )
    disable.add_argument("--json", action="store_true")
    disable.set_defaults(func=cmd_users_disable)

    enable = users.add_parser(
        "enable", help="let a disabled user sign in again; revoked tokens stay revoked (audited)"
    )
    enable.add_argument("email")
    enable.add_argument("--json", action="store_true")
    enable.set_defaults(func=cmd_users_enable)

    unlock = users.add_parser(
        "unlock", help="clear a user's sign-in throttling (failed attempts; audited)"
    )
    unlock.add_argument("email")
    unlock.set_defaults(func=cmd_users_unlock)

    factors = users.add_parser("mfa", help="list a user's second factors")
    factors.add_argument("email")
    factors.add_argument("--json", action="store_true")
    factors.set_defaults(func=cmd_users_mfa)

    reset_mfa = users.add_parser(
        "reset-mfa",
        help="remove every second factor of a user (a lost phone; audited): the next sign-in "
        "sets up a new one where the policy requires it",
    )
    reset_mfa.add_argument("email")
    reset_mfa.set_defaults(func=cmd_users_reset_mfa)
