"""Least-privilege client flags: `--roles-visible ROLE` (the roles a client's access tokens may
list) and `--resource URI` (the audiences an introspecting resource server serves), set at
`clients create` and replaced (or cleared with "") by `clients update`; bad values are refused
by field."""

from __future__ import annotations

import json

from tests.cli.test_main import Cli, cli, create_client  # noqa: F401  (the fixture)


def test_roles_visible_is_set_replaced_and_cleared(cli: Cli) -> None:  # noqa: F811
    made = create_client(
        cli, "--grant-type", "client_credentials", "--scope", "api",
        "--roles-visible", "auditor", "--roles-visible", "reports.viewer",
    )  # fmt: skip
    assert made["roles_visible"] == ["auditor", "reports.viewer"]
    client_id = str(made["client_id"])
    cli.ok("clients", "update", client_id, "--roles-visible", "auditor")
    shown = json.loads(cli.ok("clients", "show", client_id).stdout)
    assert shown["roles_visible"] == ["auditor"]
    cli.ok("clients", "update", client_id, "--roles-visible", "")
    assert json.loads(cli.ok("clients", "show", client_id).stdout)["roles_visible"] is None


def test_a_bad_role_name_names_the_field(cli: Cli) -> None:  # noqa: F811
    result = cli.run(
        "clients", "create", "--name", "App", "--grant-type", "client_credentials",
        "--scope", "api", "--roles-visible", "ok", "--roles-visible", "Not OK",
    )  # fmt: skip
    assert result.returncode == 1 and "roles_visible[1]" in result.stderr
    assert cli.count("clients") == 0


def test_resource_is_set_replaced_and_needs_introspect(cli: Cli) -> None:  # noqa: F811
    made = create_client(
        cli, "--grant-type", "client_credentials", "--scope", "api", "--introspect",
        "--resource", "https://notes.example", "--resource", "https://billing.example",
    )  # fmt: skip
    assert made["resources"] == ["https://notes.example", "https://billing.example"]
    client_id = str(made["client_id"])
    cli.ok("clients", "update", client_id, "--resource", "https://notes.example")
    assert json.loads(cli.ok("clients", "show", client_id).stdout)["resources"] == [
        "https://notes.example"
    ]
    refused = cli.run(
        "clients", "create", "--name", "App", "--grant-type", "client_credentials",
        "--scope", "api", "--resource", "https://notes.example",
    )  # fmt: skip
    assert refused.returncode == 1 and "resources" in refused.stderr
