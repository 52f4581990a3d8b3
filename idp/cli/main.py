"""The `idp` command line (also `python -m idp`): serve, migrate, users, clients, approvals,
keys, audit.

Bad input exits non-zero with one line on stderr and writes nothing: every command that writes
does so in one transaction, after validating everything.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import io
import ipaddress
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from idp.cli import approvals, audit, clients, keys, users
from idp.cli.base import CommandError, Parser, emit
from idp.settings import Settings, SettingsError, load_settings

# --- migrate and serve ---------------------------------------------------------------------------


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> None:
    from idp.db.engine import make_engine
    from idp.db.migrate import upgrade

    engine = make_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    print("database is at the latest schema", file=sys.stderr)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (also as [::1] or ::ffff:127.x.y.z): only this machine."""
    name = host.strip().removeprefix("[").removesuffix("]")
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # another host name, or "" (every interface)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def development_refusal(settings: Settings, host: str) -> str | None:
    """Why development mode must not listen on `host` (None if it may): a plain-http issuer
    sends cookies without `Secure` over plain http, and a generated KEK lives only in this
    checkout (no secrets manager, no backup, no other node); both are for one machine."""
    from idp.keys.kek import is_development_kek

    if is_loopback(host):
        return None
    where = f"--host {host or '(every interface)'} is not a loopback address"
    if settings.is_development:
        return (
            f"{where}, but IDP_ISSUER {settings.issuer} is a plain-http development issuer: "
            "set IDP_ISSUER to the https URL clients use, or serve on --host 127.0.0.1"
        )
    if is_development_kek(settings):
        return (
            f"{where}, but the key-encryption key {settings.key_encryption_key_file} was "
            "generated for development: set IDP_KEY_ENCRYPTION_KEY or IDP_KEY_ENCRYPTION_KEY_FILE "
            "to a key of your own (`idp keys new-kek`; `idp keys rewrap` moves the stored keys "
            "to it), or serve on --host 127.0.0.1"
        )
    return None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from idp.ops import logs
    from idp.ops.metrics import MULTIPROC_ENV
    from idp.web import branding

    refusal = development_refusal(settings, args.host)
    if refusal:  # before anything is migrated, generated or bound
        raise CommandError(refusal)
    cap_malloc_arenas()
    # Each worker builds its app (and its Settings) from the environment.
    if args.forwarded_allow_ips is not None:
        os.environ["IDP_FORWARDED_ALLOW_IPS"] = args.forwarded_allow_ips
    if args.access_log:
        os.environ["IDP_ACCESS_LOG"] = "true"
    if args.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # Before any worker imports prometheus-client: each writes its values here, and a
        # scrape of any of them adds up all (idp.ops.metrics). Fresh per start: files a
        # previous run left would count again.
        folder = tempfile.mkdtemp(prefix="idp-metrics-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ[MULTIPROC_ENV] = folder
    branding.load(settings)  # a bad logo or colour: one line, before anything starts
    cmd_migrate(settings, args)
    empty = _first_start(settings)  # fails here, with one line, on a wrong KEK
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
        # create_app applies IDP_FORWARDED_ALLOW_IPS itself (set above from the flag).
        proxy_headers=False,
        server_header=False,
        # Nothing here speaks WebSocket: "auto" would load a WebSocket library into every
        # worker for a protocol the IdP refuses anyway.
        ws="none",
        date_header=True,
        log_level=settings.log_level,
        # JSON (or text) lines on stdout, applied by uvicorn in every worker (idp.ops.logs).
        log_config=logs.config(settings.log_format, settings.log_level),
        # uvicorn has no header or body read timeout: the TLS proxy sets those (README).
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        limit_concurrency=settings.limit_concurrency,
        # The IdP writes its own request lines (with route, duration and request id) when
        # --access-log or IDP_ACCESS_LOG asks for them; uvicorn's would say less, twice.
        access_log=False,
        # The listen backlog stays uvicorn's 2048 (capped by the kernel's somaxconn): uvicorn
        # accepts at once, so it fills only while the event loop is stalled.
    )


# glibc's default is up to 8 malloc arenas per core, one for each thread that allocates while
# another holds an arena, and an arena keeps what it once held. The page threads and argon2's
# made a server 27 % larger after 60 s of sign-ins; with 2 arenas, 15 % (bench/README.md).
MALLOC_ARENAS = "2"
M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h


def cap_malloc_arenas() -> None:
    """Two malloc arenas, unless MALLOC_ARENA_MAX says otherwise: set for this process (glibc
    read the variable when it started) and, through the environment, for the workers."""
    arenas = os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENAS)
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt  # glibc (and musl, where it does nothing); not macOS
    except (OSError, AttributeError):
        return
    if arenas.isdigit() and int(arenas) > 0:
        mallopt(M_ARENA_MAX, int(arenas))


def _first_start(settings: Settings) -> bool:
    """Whether the store has no user or no client yet. Builds a runtime once, so a wrong KEK
    fails before uvicorn starts; the runtime is gone when this returns, not kept resident
    beside the one each worker builds."""
    from idp.runtime import build_runtime
    from idp.store import clients as store_clients, users as store_users

    services = build_runtime(settings)
    try:
        with services.sessions() as db:
            return not store_users.any_user(db) or not store_clients.all_clients(db)
    finally:
        services.engine.dispose()


FIRST_STEPS = """
First steps (in another terminal):
  printf '%s\\n' 'a long passphrase' | .venv/bin/idp users create you@example.com --name You \\
      --password-stdin
  .venv/bin/idp clients create --name "My app" --redirect-uri http://localhost:3000/callback \\
      --grant-type authorization_code --scope openid --scope profile --scope email --json
Discovery: {issuer}/.well-known/openid-configuration
""".rstrip()


def cmd_prune(settings: Settings, args: argparse.Namespace) -> None:
    from idp.audit.chain import write_sessions
    from idp.db.engine import make_engine
    from idp.worker import prune

    engine = make_engine(settings)
    try:
        counts = prune(
            write_sessions(engine, settings),
            batch=args.batch,
            idle_timeout=settings.session_idle_timeout_seconds,
            audit_retention_days=settings.audit_retention_days,
        )
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
        help="proxies whose X-Forwarded-* headers are trusted (sets IDP_FORWARDED_ALLOW_IPS)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    users.add_commands(sub)
    prune_cmd = sub.add_parser("prune", help="delete expired codes, tokens and sessions")
    prune_cmd.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    prune_cmd.add_argument("--json", action="store_true")
    prune_cmd.set_defaults(func=cmd_prune)

    clients.add_commands(sub)
    approvals.add_commands(sub)
    keys.add_commands(sub)
    audit.add_commands(sub)
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
    except BrokenPipeError:
        # The reader went away (`idp audit export | head`): what it read is what it wanted.
        _quiet_stdout()
        return 0
    return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file (a test's capture): nothing will flush to a closed pipe
