"""`idp keys ...`: list, rotate, revoke and rewrap signing keys; print a new KEK."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from idp.cli.base import CommandError, Parser, database, emit
from idp.settings import SUPPORTED_ALGS, Settings


def _checked_sealer(db: Session, settings: Settings) -> Any:
    """The KEK's sealer, after proving it opens every stored key: a key created under a wrong
    KEK would stop every server from starting."""
    from idp.keys.kek import load_key_encryption_key
    from idp.security.secrets import DecryptionError, Sealer
    from idp.store import keys

    sealer = Sealer(load_key_encryption_key(settings))
    for row in keys.all_keys(db):
        try:
            sealer.open(row.private_jwk_sealed, row.kid.encode())
        except DecryptionError:
            raise CommandError(
                f"the key-encryption key does not open key {row.kid}: wrong KEK"
            ) from None
    return sealer


def describe(key: Any) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "alg": key.alg,
        "state": key.state,
        "created_at": key.created_at,
        "activates_at": key.activates_at,
        "activated_at": key.activated_at,
        "retired_at": key.retired_at,
        "remove_after": key.remove_after,
        "revoked_at": key.revoked_at,
    }


def cmd_list(settings: Settings, args: argparse.Namespace) -> None:
    from idp.store import keys

    with database(settings) as db:
        rows = [describe(k) for k in keys.all_keys(db)]
    lines = [
        f"{r['kid']}  {r['alg']}  {r['state']:8}  created {r['created_at']}"
        + (f"  activates {r['activates_at']}" if r["state"] == "staged" else "")
        + (f"  retires {r['remove_after']}" if r["state"] == "retired" else "")
        for r in rows
    ]
    emit(rows, args.json, "\n".join(lines) or "no keys (they are created on first start)")


def cmd_rotate(settings: Settings, args: argparse.Namespace) -> None:
    from idp.keys.rotation import rotate

    if args.alg not in settings.enabled_algs:
        raise CommandError(f"{args.alg} is not enabled (IDP_SIGNING_ALGS)")
    with database(settings) as db:
        key = rotate(db, _checked_sealer(db, settings), settings, args.alg, args.now, actor="cli")
        out = describe(key)
    when = "now" if args.now else f"at {out['activates_at']}"
    emit(out, args.json, f"{out['kid']} ({out['alg']}) signs {when}")


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> None:
    from idp.keys.rotation import revoke

    with database(settings) as db:
        try:
            replacement = revoke(db, _checked_sealer(db, settings), settings, args.kid, actor="cli")
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        taken_over = replacement.kid if replacement else None
    print(f"revoked {args.kid}" + (f"; {taken_over} signs now" if taken_over else ""))
    print(
        "every worker stops publishing it within IDP_KEY_REFRESH_SECONDS "
        f"({settings.key_refresh_seconds} s)",
        file=sys.stderr,
    )


def cmd_rewrap(settings: Settings, args: argparse.Namespace) -> None:
    from idp.audit import chain
    from idp.audit.events import AuditEvent, record
    from idp.authn import mfa
    from idp.keys.kek import read_kek_file
    from idp.keys.rotation import rewrap
    from idp.security.secrets import Sealer

    path = Path(args.new_kek_file)
    try:
        new_kek = read_kek_file(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    new = Sealer(new_kek)
    with database(settings) as db:
        old = _checked_sealer(db, settings)
        count = rewrap(db, old, new)
        seeds = mfa.reseal(db, old, new)  # TOTP seeds are sealed under the KEK too
        record(db, AuditEvent.KEYS_REWRAPPED, keys=count, authenticator_apps=seeds)
        # The audit chain goes on under the new KEK's key, from a checkpoint.
        chain.rekey(db, chain.chain_key(new_kek))
    print(
        f"re-encrypted {count} keys and {seeds} authenticator-app seeds; restart every server "
        "with the new key-encryption key"
    )


def cmd_new_kek(settings: Settings, args: argparse.Namespace) -> None:
    from idp.keys.kek import new_key_encryption_key

    print(new_key_encryption_key())


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, parser_class=Parser
    )
    listing = keys.add_parser("list", help="list signing keys and their states")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    rotate = keys.add_parser(
        "rotate", help="stage a new key; it signs after the pre-publication window"
    )
    rotate.add_argument("--alg", default="RS256", choices=SUPPORTED_ALGS)
    rotate.add_argument("--now", action="store_true", help="emergency: sign with it at once")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_rotate)
    revoke = keys.add_parser("revoke", help="withdraw a key at once (emergency)")
    revoke.add_argument("kid")
    revoke.set_defaults(func=cmd_revoke)
    rewrap = keys.add_parser("rewrap", help="re-encrypt every key under a new KEK")
    rewrap.add_argument("--new-kek-file", required=True, metavar="FILE")
    rewrap.set_defaults(func=cmd_rewrap)
    keys.add_parser("new-kek", help="print a fresh key-encryption key").set_defaults(
        func=cmd_new_kek
    )
