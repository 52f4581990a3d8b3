"""The `idp` command line (also `python -m idp`): serve, migrate, users, clients, keys.

Bad input exits non-zero with one line on stderr and writes nothing: every command that writes
does so in one transaction, after validating everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from idp.settings import Settings, SettingsError, load_settings


class CommandError(Exception):
    """Shown as `idp: error: <message>`, exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts and people read the reason first.
        self.exit(2, f"idp: error: {message}\n")


@contextmanager
def database(settings: Settings) -> Iterator[Session]:
    """One transaction on a short-lived engine: commit on success, nothing written on error."""
    from idp.db import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine).begin() as db:
            yield db
    finally:
        engine.dispose()


def emit(data: object, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2) if as_json else text)


# --- migrate and serve ---------------------------------------------------------------------------


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> None:
    from idp.db import make_engine
    from idp.migrate import upgrade

    engine = make_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    print("database is at the latest schema", file=sys.stderr)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from idp.app import build_services
    from idp.store import clients

    cmd_migrate(settings, args)
    services = build_services(settings)  # fails here, with one line, on a wrong KEK
    with services.sessions() as db:
        empty = not users_exist(db) or not clients.all_clients(db)
    services.engine.dispose()
    print(
        f"idp: issuer {settings.issuer}, listening on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    if empty:
        print(FIRST_STEPS.format(issuer=settings.issuer), file=sys.stderr)
    uvicorn.run(
        "idp.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
        date_header=True,
        log_level=settings.log_level,
        # Per-request access lines cost a measurable share of the token endpoint's time; the
        # audit trail records what matters for security. Opt in with --access-log.
        access_log=args.access_log,
    )


def users_exist(db: Session) -> bool:
    from sqlalchemy import select

    from idp.store.users import User

    return db.scalar(select(User.id).limit(1)) is not None


FIRST_STEPS = """
First steps (in another terminal):
  printf '%s\\n' 'a long passphrase' | .venv/bin/idp users create you@example.com --name You \\
      --password-stdin
  .venv/bin/idp clients create --name "My app" --redirect-uri http://localhost:3000/callback \\
      --grant-type authorization_code --scope openid --scope profile --scope email --json
Discovery: {issuer}/.well-known/openid-configuration
""".rstrip()


# --- users ---------------------------------------------------------------------------------------


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
    from idp.admin.users import InvalidUser, create_user
    from idp.authn.passwords import Passwords

    if not args.password_stdin:
        raise CommandError("--password-stdin is required (passwords never go on the command line)")
    password = read_password_stdin()
    try:
        with database(settings) as db:
            user = create_user(
                db,
                Passwords(settings),
                email=args.email,
                password=password,
                min_length=settings.password_min_length,
                name=args.name,
                is_admin=args.admin,
                roles_granted=args.role or [],
            )
            out = {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "admin": user.is_admin,
                "roles": sorted(set(args.role or [])),
            }
    except InvalidUser as exc:
        raise CommandError(str(exc)) from None
    except IntegrityError:
        raise CommandError(f"a user with email {args.email} already exists") from None
    emit(out, args.json, f"created user {out['email']} ({out['id']})")


def cmd_users_roles(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.users import InvalidUser, grant_role, revoke_role
    from idp.store import roles, users

    try:
        with database(settings) as db:
            user = users.by_email(db, args.email)
            if user is None:
                raise CommandError(f"no user {args.email}")
            for role in args.add or []:
                grant_role(db, user, role)
            for role in args.remove or []:
                revoke_role(db, user, role)
            held = roles.of(db, user.id)
    except InvalidUser as exc:
        raise CommandError(str(exc)) from None
    emit({"email": user.email, "roles": held}, args.json, " ".join(held) or "(no roles)")


def cmd_users_revoke_sessions(settings: Settings, args: argparse.Namespace) -> None:
    from idp.housekeeping import revoke_user_sessions
    from idp.store import users

    with database(settings) as db:
        user = users.by_email(db, args.email)
        if user is None:
            raise CommandError(f"no user {args.email}")
        ended, families = revoke_user_sessions(db, user.id)
    print(f"ended {ended} sessions and {families} refresh-token grants of {args.email}")


def cmd_prune(settings: Settings, args: argparse.Namespace) -> None:
    from idp.db import make_engine, make_sessionmaker
    from idp.housekeeping import prune

    engine = make_engine(settings)
    try:
        counts = prune(make_sessionmaker(engine), batch=args.batch)
    finally:
        engine.dispose()
    emit(counts, args.json, "\n".join(f"{n}: {c} deleted" for n, c in counts.items()))


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="idp", description="A small, auditable OpenID Connect provider.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    serve = sub.add_parser("serve", help="apply migrations and run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-* headers are trusted",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

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
    user_roles.add_argument("--json", action="store_true")
    user_roles.set_defaults(func=cmd_users_roles)

    revoke_sessions = users.add_parser(
        "revoke-sessions", help="end every session and refresh token of a user"
    )
    revoke_sessions.add_argument("email")
    revoke_sessions.set_defaults(func=cmd_users_revoke_sessions)
    prune_cmd = sub.add_parser("prune", help="delete expired codes, tokens and sessions")
    prune_cmd.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    prune_cmd.add_argument("--json", action="store_true")
    prune_cmd.set_defaults(func=cmd_prune)

    from idp import cli_clients, cli_keys  # their commands use this module's helpers

    cli_clients.add_commands(sub)
    cli_keys.add_commands(sub)
    return parser


def kid_as_operand(argv: Sequence[str]) -> list[str]:
    """`idp keys revoke KID`: a kid is a base64url thumbprint (RFC 7638) and starts with '-' one
    time in 64; argparse would read it as an option, so mark it as an operand with `--`."""
    args = list(argv)
    if len(args) == 3 and args[:2] == ["keys", "revoke"]:
        kid = args[2]
        if kid.startswith("-") and kid not in ("-h", "--help", "--"):
            return [*args[:2], "--", kid]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(kid_as_operand(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings()
        args.func(settings, args)
    except (CommandError, SettingsError) as exc:
        print(f"idp: error: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"idp: error: database: {str(exc.orig).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
