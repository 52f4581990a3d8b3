"""`idp clients update CLIENT_ID`: the flags of `clients create`, only those given change;
errors name the RFC 7591 §2 field; `--json` prints the client as `clients show` does."""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.cli.test_main import Cli, cli, create_client, one_line_error  # noqa: F401

REDIRECT = "https://rp.example/cb"


def test_update_round_trip(cli: Cli) -> None:  # noqa: F811 (the fixture)
    """RFC 7591 §2: name, redirect_uris (replaced, not appended), scope and the PKCE, trust
    and MFA switches change; everything else stays; one client.updated event names the CLI."""
    created = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code", "--scope", "openid"
    )
    client_id = str(created["client_id"])
    out = json.loads(
        cli.ok(
            "clients", "update", client_id, "--name", "Renamed",
            "--redirect-uri", "https://rp.example/a", "--redirect-uri", "https://rp.example/b",
            "--scope", "openid", "--scope", "email", "--no-pkce", "--trusted", "--require-mfa",
            "--client-uri", "https://rp.example/", "--json",
        ).stdout
    )  # fmt: skip
    shown = json.loads(cli.ok("clients", "show", client_id).stdout)
    assert shown.pop("lint")  # --no-pkce is a finding
    assert out == shown
    changed = {
        "client_name": "Renamed",
        "redirect_uris": ["https://rp.example/a", "https://rp.example/b"],
        "scope": "openid email",
        "require_pkce": False,
        "trusted": True,
        "require_mfa": True,
        "client_uri": "https://rp.example/",
    }
    assert {k: shown[k] for k in changed} == changed
    created.pop("client_secret")
    assert {k: v for k, v in shown.items() if k not in changed} == {
        k: v for k, v in created.items() if k not in changed
    }
    with cli.engine.connect() as conn:
        detail, actor = conn.execute(
            text("SELECT detail, actor FROM audit_events WHERE event = 'client.updated'")
        ).one()
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert actor == "cli"
    assert detail["changes"]["trusted"] == {"before": False, "after": True}
    # the switches back, and a URL cleared with ""
    cli.ok("clients", "update", client_id, "--require-pkce", "--not-trusted", "--client-uri", "")
    again = json.loads(cli.ok("clients", "show", client_id).stdout)
    assert (again["require_pkce"], again["trusted"], again["client_uri"]) == (True, False, None)


def test_a_bad_update_names_the_field_and_writes_nothing(cli: Cli) -> None:  # noqa: F811 (the fixture)
    """RFC 7591 §3.2.2: the one error line names the field (not the flag); nothing is written."""
    created = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code", "--scope", "openid"
    )
    before = cli.counts()
    result = cli.run(
        "clients", "update", str(created["client_id"]),
        "--redirect-uri", REDIRECT, "--redirect-uri", "http://rp.example/cb",
    )  # fmt: skip
    assert one_line_error(result) == (
        "idp: error: redirect_uris[1]: redirect URI 'http://rp.example/cb' uses http for a "
        "non-loopback host; use https"
    )
    assert cli.counts() == before
    shown = json.loads(cli.ok("clients", "show", str(created["client_id"])).stdout)
    assert {k: v for k, v in shown.items() if k != "lint"} == {
        k: v for k, v in created.items() if k != "client_secret"
    }


def test_an_unknown_client_is_an_error(cli: Cli) -> None:  # noqa: F811 (the fixture)
    """Updating a client that does not exist fails in one line."""
    assert "no client nope" in one_line_error(cli.run("clients", "update", "nope", "--trusted"))
