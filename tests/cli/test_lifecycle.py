"""`idp users disable|enable|revoke-sessions` and `idp clients disable|enable|rotate-secret|delete`
(idp/admin/revocation.py): each command's effect seen at the endpoints of an app on the same
database, as an administrator's command reaches every worker."""

from __future__ import annotations

import json

from tests.admin.test_revocation import cc_token, is_dead_at_userinfo, secret_works
from tests.cli.test_main import Cli, cli, one_line_error  # noqa: F401  (the fixture)
from tests.helpers import RP, Harness
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspected,
    offline_client,
    refresh,
    resource_server,
)
from tests.token_helpers import audit_events, error_of, sql


def service_of(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])


def test_revoke_sessions_kills_access_tokens_too(
    idp: Harness,
    cli: Cli,  # noqa: F811
) -> None:
    """`users revoke-sessions` ends the sessions and refresh tokens, and now also the access
    tokens already issued (they used to live on until they expired)."""
    idp.user()
    api = resource_server(idp)
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    plain = idp.tokens(idp.client(), scope="openid")["access_token"]  # no family to revoke it
    out = cli.ok("users", "revoke-sessions", "alice@example.com").stdout
    assert "ended 1 sessions and 1 refresh-token grants" in out
    assert is_dead_at_userinfo(idp, plain)
    assert introspected(idp, api, plain) == {"active": False}
    assert introspected(idp, api, tokens["access_token"]) == {"active": False}
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"


def test_users_disable_and_enable(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """`users disable` refuses the user's tokens at once; `users enable` clears the flag only."""
    idp.user()
    access = idp.tokens(idp.client(), scope="openid")["access_token"]
    out = json.loads(cli.ok("users", "disable", "alice@example.com", "--json").stdout)
    assert out["disabled"] is True and out["sessions"] == 1
    assert is_dead_at_userinfo(idp, access)
    enabled = json.loads(cli.ok("users", "enable", "alice@example.com", "--json").stdout)
    assert enabled["was_disabled"] is True
    assert is_dead_at_userinfo(idp, access)
    assert sql(idp, "SELECT actor FROM audit_events WHERE event = 'user.disabled'") == [("cli",)]
    one_line_error(cli.run("users", "disable", "nobody@example.com"))


def test_clients_disable_and_enable(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """`clients disable` makes /token answer invalid_client; `clients enable` lets it back in,
    and the token it held before stays inactive."""
    api, service = resource_server(idp), service_of(idp)
    old = cc_token(idp, service)
    cli.ok("clients", "disable", service.client_id, "--reason", "compromised")
    assert error_of(idp.client_credentials(service)) == "invalid_client"
    assert introspected(idp, api, old) == {"active": False}
    out = json.loads(cli.ok("clients", "enable", service.client_id, "--json").stdout)
    assert out["was_disabled"] is True
    assert idp.client_credentials(service).status_code == 200
    assert introspected(idp, api, old) == {"active": False}
    one_line_error(cli.run("clients", "disable", "no-such-client"))


def test_clients_rotate_secret(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """`clients rotate-secret` prints the new secret once; the old one works for the overlap,
    and not at all with --overlap-hours 0."""
    service = service_of(idp)
    assert service.secret is not None
    out = json.loads(cli.ok("clients", "rotate-secret", service.client_id, "--json").stdout)
    assert out["overlap_seconds"] == 86400
    assert secret_works(idp, service, service.secret)
    assert secret_works(idp, service, out["client_secret"])
    text = cli.ok("clients", "rotate-secret", service.client_id, "--overlap-hours", "0").stdout
    newest = text.splitlines()[0].removeprefix("client_secret: ")
    assert "no longer works" in text
    assert not secret_works(idp, service, out["client_secret"])
    assert secret_works(idp, service, newest)
    public = idp.client(public=True)
    assert "not a secret" in one_line_error(cli.run("clients", "rotate-secret", public.client_id))


def test_clients_delete_revokes_its_tokens(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """`clients delete` revokes the client's tokens first; a token naming the deleted client
    is inactive at introspection."""
    api, service = resource_server(idp), service_of(idp)
    access = cc_token(idp, service)
    cli.ok("clients", "delete", service.client_id)
    assert introspected(idp, api, access) == {"active": False}
    assert len(audit_events(idp, "client.tokens_revoked")) == 1
