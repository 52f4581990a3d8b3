"""`idp clients lint [CLIENT_ID] [--json]` and the `lint` list of `idp clients show`: the
linter's findings (RFC 9700 practices registration allows), reported with exit status 0."""

from __future__ import annotations

import json

from tests.cli.test_main import Cli, cli, create_client  # noqa: F401

REDIRECT = "https://rp.example/cb"


def test_lint_reports_findings_and_exits_0(cli: Cli) -> None:  # noqa: F811 (the fixture)
    """RFC 9700 §2.1.1 and §2.4: a client without PKCE that may ask for an admin scope is
    reported, most severe first, in text and JSON; a clean one has none; exit 0 both times."""
    risky = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code",
        "--scope", "openid", "--scope", "idp:admin", "--no-pkce",
    )  # fmt: skip
    clean = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code", "--scope", "openid"
    )
    report = json.loads(cli.ok("clients", "lint", "--json").stdout)
    by_id = {entry["client_id"]: entry["findings"] for entry in report}
    assert [f["code"] for f in by_id[risky["client_id"]]] == ["admin-scope", "pkce-not-required"]
    assert by_id[clean["client_id"]] == []
    text = cli.ok("clients", "lint", str(risky["client_id"])).stdout
    assert "[high] admin-scope" in text and "fix: idp clients update" in text
    shown = json.loads(cli.ok("clients", "show", str(risky["client_id"]), "--json").stdout)
    assert shown["lint"] == by_id[risky["client_id"]]
