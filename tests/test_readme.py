"""The README's "Connect your app" commands work as printed: every `idp` command in its shell
blocks runs and succeeds against a fresh database (after the README's own `users create`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.cli.test_main import PASSWORD, Cli, cli  # noqa: F401  (fixture)

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def idp_commands(markdown: str) -> list[list[str]]:
    """Each `.venv/bin/idp ...` command of the ```sh blocks: continuation lines joined, trailing
    comments dropped, split as the shell would."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == [".venv/bin/idp"]:
                commands.append(words[1:])
    return commands


def test_connect_your_app_commands_run(cli: Cli) -> None:  # noqa: F811  (the fixture)
    commands = idp_commands(section("Connect your app"))
    assert len(commands) >= 3, commands  # the web app, the service, the roles
    cli.ok("users", "create", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    for args in commands:
        result = cli.run(*args)
        assert result.returncode == 0, f"idp {shlex.join(args)}\n{result.stderr}"
    listed = cli.ok("users", "roles", "alice@example.com").stdout.strip()
    assert listed.startswith("auditor on-call (until "), listed  # the time-boxed one, too
