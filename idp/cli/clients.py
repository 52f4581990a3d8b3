"""`idp clients ...`: register, list, show, delete, disable and enable clients; rotate secrets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from idp.cli.approvals import pending_line
from idp.cli.base import CommandError, Parser, database, emit
from idp.settings import Settings


def cmd_clients_create(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.clients import (
        ClientSpec,
        InvalidRegistration,
        describe,
        fetch_logo,
        load_jwks_file,
        register,
    )
    from idp.outbound import OutboundPolicy

    try:
        spec = ClientSpec(
            name=args.name,
            grant_types=args.grant_type or [],
            scopes=args.scope or [],
            redirect_uris=args.redirect_uri or [],
            post_logout_redirect_uris=args.post_logout_redirect_uri or [],
            public=args.public,
            auth_method=args.auth_method,
            jwks_uri=args.jwks_uri,
            jwks=load_jwks_file(Path(args.jwks_file)) if args.jwks_file else None,
            access_token_ttl=args.access_token_ttl,
            require_pkce=not args.no_pkce,
            trusted=args.trusted,
            require_mfa=args.require_mfa,
            id_token_signed_response_alg=args.id_token_alg,
            refresh_token_idle_ttl=args.refresh_token_idle_ttl,
            refresh_token_absolute_ttl=args.refresh_token_absolute_ttl,
            can_introspect=args.introspect,
            backchannel_logout_uri=args.backchannel_logout_uri,
            audiences=args.audience,
            roles_visible=args.roles_visible,
            resources=args.resource,
            logo_uri=args.logo_uri,
            client_uri=args.client_uri,
            policy_uri=args.policy_uri,
            tos_uri=args.tos_uri,
        )
        if args.id_token_alg and args.id_token_alg not in settings.enabled_algs:
            reason = f"{args.id_token_alg} is not enabled (IDP_SIGNING_ALGS)"
            raise InvalidRegistration(fields={"id_token_signed_response_alg": reason})
        policy = OutboundPolicy.from_settings(settings)
        logo = fetch_logo(spec, policy)  # before the transaction: it waits on other hosts
        with database(settings) as db:
            registered = register(db, spec, logo, policy=policy, actor="cli")
            out = describe(registered.client, logo=logo.facts if logo else None)
    except InvalidRegistration as exc:
        raise CommandError(str(exc)) from None
    if registered.client_secret:
        out = {"client_id": out["client_id"], "client_secret": registered.client_secret, **out}
    text = f"client_id: {out['client_id']}"
    if registered.client_secret:
        text += f"\nclient_secret: {registered.client_secret}\n(shown this once; store it now)"
    if registered.pending is not None:
        from idp.admin.approvals import describe as describe_change

        out["pending_change"] = describe_change(registered.pending)
        text += "\n" + pending_line(registered.pending)
    emit(out, args.json, text)


def cmd_clients_list(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.clients import describe_all
    from idp.store import clients

    with database(settings) as db:
        rows = describe_all(db, clients.all_clients(db))
    lines = [f"{r['client_id']}  {r['client_name']}  {','.join(r['grant_types'])}" for r in rows]  # type: ignore[arg-type]
    emit(rows, args.json, "\n".join(lines) or "no clients")


def cmd_clients_show(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.clients import describe_all
    from idp.admin.lint import findings
    from idp.store import clients

    with database(settings) as db:
        client = clients.get(db, args.client_id)
        if client is None:
            raise CommandError(f"no client {args.client_id}")
        (out,) = describe_all(db, [client])
        out["lint"] = [f.as_json() for f in findings(client, settings, clients.today())]
    print(json.dumps(out, indent=2))


def cmd_clients_delete(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import NoSuchClient, delete_client

    # Its tokens are revoked first: refresh families and their access tokens by jti, and any
    # other access token because its client no longer exists (idp.protocol.epochs).
    try:
        with database(settings) as db:
            delete_client(db, args.client_id, actor="cli")
    except NoSuchClient:
        raise CommandError(f"no client {args.client_id}") from None
    print(f"deleted client {args.client_id}", file=sys.stderr)


# `clients update` flag -> the RFC 7591 §2 field it sets (argparse dest: flag with "_").
_UPDATE_FLAGS = {
    "name": "client_name",
    "redirect_uri": "redirect_uris",
    "post_logout_redirect_uri": "post_logout_redirect_uris",
    "grant_type": "grant_types",
    "auth_method": "token_endpoint_auth_method",
    "jwks_uri": "jwks_uri",
    "access_token_ttl": "access_token_ttl",
    "require_pkce": "require_pkce",
    "trusted": "trusted",
    "require_mfa": "require_mfa",
    "id_token_alg": "id_token_signed_response_alg",
    "refresh_token_idle_ttl": "refresh_token_idle_ttl",
    "refresh_token_absolute_ttl": "refresh_token_absolute_ttl",
    "introspect": "can_introspect",
    "backchannel_logout_uri": "backchannel_logout_uri",
    "logo_uri": "logo_uri",
    "client_uri": "client_uri",
    "policy_uri": "policy_uri",
    "tos_uri": "tos_uri",
}
# Flags that take a URL or value and may be given as "" to clear the field.
_CLEARABLE = frozenset(
    {
        "jwks_uri",
        "backchannel_logout_uri",
        "logo_uri",
        "client_uri",
        "policy_uri",
        "tos_uri",
        "id_token_signed_response_alg",
    }
)


def update_changes(args: argparse.Namespace) -> dict[str, object]:
    """The fields the given flags change, by their RFC 7591 §2 names; flags not given change
    nothing."""
    from idp.admin.clients import load_jwks_file

    changes: dict[str, object] = {}
    for dest, name in _UPDATE_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        changes[name] = None if value == "" and name in _CLEARABLE else value
    if args.scope is not None:
        changes["scope"] = " ".join(args.scope)
    if args.resource is not None:
        changes["resources"] = [r for r in args.resource if r] or None
    if args.audience is not None:
        # `--audience ""` alone: the server-wide audience again
        changes["audiences"] = [a for a in args.audience if a] or None
    if args.roles_visible is not None:
        # `--roles-visible ""` alone: every role again
        changes["roles_visible"] = [r for r in args.roles_visible if r] or None
    if args.jwks_file:
        changes["jwks"] = load_jwks_file(Path(args.jwks_file))
        changes["jwks_uri"] = None  # the two are exclusive: a file replaces the URL
    elif changes.get("jwks_uri"):
        changes["jwks"] = None  # and a URL replaces the keys
    return changes


def cmd_clients_update(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.clients import InvalidClient, change_client, describe_all, fetch_for_update
    from idp.outbound import OutboundPolicy
    from idp.store import clients

    policy = OutboundPolicy.from_settings(settings)
    try:
        changes = update_changes(args)
        alg = changes.get("id_token_signed_response_alg")
        if isinstance(alg, str) and alg not in settings.enabled_algs:
            reason = f"{alg} is not enabled (IDP_SIGNING_ALGS)"
            raise InvalidClient(fields={"id_token_signed_response_alg": reason})
        with database(settings) as db:
            current = clients.get(db, args.client_id)
        if current is None:
            raise CommandError(f"no client {args.client_id}")
        # Outside any transaction: it waits on other hosts (the logo, the jwks_uri's address).
        logo = fetch_for_update(current, changes, policy)
        with database(settings) as db:
            try:
                updated = change_client(
                    db, args.client_id, changes, "cli", policy=policy, logo=logo
                )
            except LookupError:
                raise CommandError(f"no client {args.client_id}") from None
            (out,) = describe_all(db, [updated.client])
    except InvalidClient as exc:
        raise CommandError(str(exc)) from None
    text = f"updated client {args.client_id}"
    if updated.pending is not None:
        from idp.admin.approvals import describe as describe_change

        out["pending_change"] = describe_change(updated.pending)
        text += "\n" + pending_line(updated.pending)
    emit(out, args.json, text)


def _add_update_parser(clients: Any) -> None:
    """`clients update CLIENT_ID`: the flags of `clients create`; only those given change."""
    update = clients.add_parser("update", help="change a client's registration")
    update.add_argument("client_id")
    update.add_argument("--name")
    update.add_argument(
        "--redirect-uri", action="append", metavar="URI", help="repeatable; replaces the list"
    )
    update.add_argument(
        "--post-logout-redirect-uri", action="append", metavar="URI", help="replaces the list"
    )
    update.add_argument("--grant-type", action="append", metavar="GRANT", help="replaces the list")
    update.add_argument("--scope", action="append", metavar="SCOPE", help="replaces the list")
    update.add_argument(
        "--resource",
        action="append",
        metavar="URI",
        help='replaces the list; "" alone: the server-wide audience',
    )
    update.add_argument(
        "--roles-visible",
        action="append",
        metavar="ROLE",
        help='replaces the list; "" alone lets the client see every role',
    )
    update.add_argument("--auth-method", metavar="METHOD")
    keys_source = update.add_mutually_exclusive_group()
    keys_source.add_argument("--jwks-uri", metavar="URL")
    keys_source.add_argument("--jwks-file", metavar="FILE")
    update.add_argument("--access-token-ttl", type=int, metavar="SECONDS")
    for flag, off, dest in (
        ("--require-pkce", "--no-pkce", "require_pkce"),
        ("--trusted", "--not-trusted", "trusted"),
        ("--require-mfa", "--no-require-mfa", "require_mfa"),
        ("--introspect", "--no-introspect", "introspect"),
    ):
        pair = update.add_mutually_exclusive_group()
        pair.add_argument(flag, dest=dest, action="store_const", const=True, default=None)
        pair.add_argument(off, dest=dest, action="store_const", const=False)
    update.add_argument("--id-token-alg", metavar="ALG")
    update.add_argument("--refresh-token-idle-ttl", type=int, metavar="SECONDS")
    update.add_argument("--refresh-token-absolute-ttl", type=int, metavar="SECONDS")
    update.add_argument("--backchannel-logout-uri", metavar="URL", help='"" removes it')
    update.add_argument(
        "--audience",
        action="append",
        metavar="URI",
        help='replaces the list (the first is the default); "" alone: the server-wide audience',
    )
    update.add_argument("--logo-uri", metavar="URL", help='fetched now; "" removes the logo')
    update.add_argument("--client-uri", metavar="URL")
    update.add_argument("--policy-uri", metavar="URL")
    update.add_argument("--tos-uri", metavar="URL")
    update.add_argument("--json", action="store_true", help="print the client as `show` does")
    update.set_defaults(func=cmd_clients_update)


def cmd_clients_lint(settings: Settings, args: argparse.Namespace) -> None:
    """Findings per client; exit 0 whatever is found (a report, not a gate)."""
    from idp.admin.lint import findings
    from idp.store import clients

    with database(settings) as db:
        if args.client_id:
            one = clients.get(db, args.client_id)
            if one is None:
                raise CommandError(f"no client {args.client_id}")
            rows = [one]
        else:
            rows = clients.all_clients(db)
        day = clients.today()
        report = [
            {
                "client_id": c.client_id,
                "client_name": c.name,
                "findings": [f.as_json() for f in findings(c, settings, day)],
            }
            for c in rows
        ]
    lines = []
    for entry in report:
        found: list[dict[str, str]] = entry["findings"]  # type: ignore[assignment]
        lines.append(f"{entry['client_id']}  {entry['client_name']}: {len(found) or 'no'} findings")
        for f in found:
            lines.append(f"  [{f['severity']}] {f['code']}: {f['message']}\n    fix: {f['fix']}")
    emit(report, args.json, "\n".join(lines) or "no clients")


def _add_lint_parser(clients: Any) -> None:
    lint = clients.add_parser("lint", help="review clients' security settings")
    lint.add_argument("client_id", nargs="?", help="one client (default: all)")
    lint.add_argument("--json", action="store_true")
    lint.set_defaults(func=cmd_clients_lint)


def cmd_clients_disable(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import NoSuchClient, disable_client

    try:
        with database(settings) as db:
            revoked = disable_client(db, args.client_id, actor="cli", reason=args.reason)
    except NoSuchClient:
        raise CommandError(f"no client {args.client_id}") from None
    out = {"client_id": args.client_id, "disabled": True, "families": revoked.families}
    emit(
        out,
        args.json,
        f"disabled client {args.client_id}: revoked {revoked.families} refresh-token grants; "
        "access tokens issued before now are refused",
    )


def cmd_clients_enable(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import NoSuchClient, enable_client

    try:
        with database(settings) as db:
            was_disabled = enable_client(db, args.client_id, actor="cli")
    except NoSuchClient:
        raise CommandError(f"no client {args.client_id}") from None
    text = f"enabled client {args.client_id}" if was_disabled else "the client was not disabled"
    out = {"client_id": args.client_id, "disabled": False, "was_disabled": was_disabled}
    emit(out, args.json, text)


def cmd_clients_rotate_secret(settings: Settings, args: argparse.Namespace) -> None:
    from idp.admin.revocation import NoSuchClient, NotASecretClient, rotate_secret

    if args.overlap_hours < 0:
        raise CommandError("--overlap-hours cannot be negative")
    overlap = int(args.overlap_hours * 3600)
    try:
        with database(settings) as db:
            secret = rotate_secret(db, args.client_id, actor="cli", overlap_seconds=overlap)
    except NoSuchClient:
        raise CommandError(f"no client {args.client_id}") from None
    except NotASecretClient as exc:
        raise CommandError(str(exc)) from None
    out = {"client_id": args.client_id, "client_secret": secret, "overlap_seconds": overlap}
    old = "the old secret no longer works"
    if overlap:
        old = f"the old secret works for {args.overlap_hours:g} more hours"
    emit(out, args.json, f"client_secret: {secret}\n(shown this once; store it now; {old})")


def add_commands(sub: Any) -> None:
    clients = sub.add_parser("clients", help="manage clients").add_subparsers(
        dest="clients_command", required=True, parser_class=Parser
    )
    create = clients.add_parser("create", help="register a client")
    create.add_argument("--name", required=True)
    create.add_argument("--redirect-uri", action="append", metavar="URI")
    create.add_argument("--post-logout-redirect-uri", action="append", metavar="URI")
    create.add_argument(
        "--grant-type",
        action="append",
        metavar="GRANT",
        help="authorization_code, refresh_token or client_credentials",
    )
    create.add_argument("--scope", action="append", metavar="SCOPE")
    create.add_argument(
        "--resource",
        action="append",
        metavar="URI",
        help="with --introspect: an audience it serves (repeat; default: the server-wide one)",
    )
    create.add_argument(
        "--roles-visible",
        action="append",
        metavar="ROLE",
        help="a role its access tokens may list (repeat; default: every role the user holds)",
    )
    create.add_argument("--public", action="store_true", help="no secret; PKCE required")
    create.add_argument(
        "--auth-method",
        metavar="METHOD",
        help="client_secret_basic, client_secret_post, private_key_jwt or none",
    )
    keys_source = create.add_mutually_exclusive_group()
    keys_source.add_argument("--jwks-uri", metavar="URL")
    keys_source.add_argument("--jwks-file", metavar="FILE")
    create.add_argument("--access-token-ttl", type=int, metavar="SECONDS")
    create.add_argument(
        "--no-pkce", action="store_true", help="let a legacy confidential client omit PKCE"
    )
    create.add_argument("--trusted", action="store_true", help="first-party: skip consent")
    create.add_argument(
        "--require-mfa",
        action="store_true",
        help="sign-ins for this client need two factors (users without one must set one up)",
    )
    create.add_argument("--id-token-alg", metavar="ALG", help="ID token algorithm (RS256)")
    create.add_argument("--refresh-token-idle-ttl", type=int, metavar="SECONDS")
    create.add_argument("--refresh-token-absolute-ttl", type=int, metavar="SECONDS")
    create.add_argument(
        "--introspect", action="store_true", help="a resource server that may introspect tokens"
    )
    create.add_argument("--backchannel-logout-uri", metavar="URL")
    create.add_argument(
        "--audience",
        action="append",
        metavar="URI",
        help="an API its access tokens may be for (`aud`, asked for with RFC 8707 `resource`;"
        " repeat; the first is the default; none: the server-wide audience)",
    )
    create.add_argument(
        "--logo-uri",
        metavar="URL",
        help="its logo (PNG, JPEG or WebP, up to 256 KiB), fetched now and served by the IdP",
    )
    create.add_argument("--client-uri", metavar="URL", help="its home page")
    create.add_argument("--policy-uri", metavar="URL", help="its privacy policy")
    create.add_argument("--tos-uri", metavar="URL", help="its terms of service")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_clients_create)
    listing = clients.add_parser("list", help="list clients")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_clients_list)
    show = clients.add_parser("show", help="show one client as JSON")
    show.add_argument("client_id")
    show.add_argument("--json", action="store_true", help="the default (kept for symmetry)")
    show.set_defaults(func=cmd_clients_show)
    delete = clients.add_parser("delete", help="delete a client")
    delete.add_argument("client_id")
    delete.set_defaults(func=cmd_clients_delete)
    _add_update_parser(clients)
    _add_lint_parser(clients)

    disable = clients.add_parser(
        "disable",
        help="refuse a client's authentication and sign-ins, and revoke its tokens (audited)",
    )
    disable.add_argument("client_id")
    disable.add_argument(
        "--reason", default="disabled", help="for the audit trail (default: %(default)s)"
    )
    disable.add_argument("--json", action="store_true")
    disable.set_defaults(func=cmd_clients_disable)

    enable = clients.add_parser(
        "enable", help="let a disabled client in again; revoked tokens stay revoked (audited)"
    )
    enable.add_argument("client_id")
    enable.add_argument("--json", action="store_true")
    enable.set_defaults(func=cmd_clients_enable)

    rotate = clients.add_parser(
        "rotate-secret",
        help="a new client secret, shown once; the old one works for --overlap-hours (audited)",
    )
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--overlap-hours",
        type=float,
        default=24.0,
        metavar="N",
        help="how long the old secret keeps working (default: %(default)g; 0: not at all)",
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_clients_rotate_secret)
