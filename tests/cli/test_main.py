"""The `idp` command line: migrate, users, clients, keys (the issue's "Command line").

Each command runs as `python -m idp ARGS` would (its own environment, working directory, input
and exit status), in this process to save an interpreter start per command (tests/cli_runner.py);
`--help` runs as a real process. Bad input exits non-zero with one line on standard error and
writes nothing; a password never appears in argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, text

from idp.db.engine import make_engine, make_sessionmaker
from idp.runtime import build_runtime
from idp.settings import Settings
from tests.cli_runner import run_cli
from tests.conftest import make_settings, migrate
from tests.images import SVG, png
from tests.slow_host import serve_slow

PASSWORD = "a long and unusual passphrase"
REDIRECT = "https://rp.example/callback"


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path
    engine: Engine
    settings: Settings

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(args, self.env, self.cwd, stdin=stdin if stdin is not None else "")

    def ok(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608

    def counts(self) -> dict[str, int]:
        return {t: self.count(t) for t in ("users", "clients", "client_logos", "audit_events")}


def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_DATABASE_URL=database_url,
        IDP_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "kek"),
        # The cheapest argon2id profile: these tests check behaviour, not cost.
        IDP_PASSWORD_HASH_TIME_COST="1",
        IDP_PASSWORD_HASH_MEMORY_KIB="8",
        IDP_PASSWORD_HASH_PARALLELISM="1",
    )
    return env


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    settings = make_settings(database_url, tmp_path, key_encryption_key=None)
    migrate(settings)  # in process: `idp migrate` itself is tested below
    engine = make_engine(settings)
    tool = Cli(cli_env(database_url, tmp_path), tmp_path, engine, settings)
    yield tool
    engine.dispose()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr, and printed nothing on stdout."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].strip()
    assert result.stdout == ""
    return lines[0]


# --- help and migrate ---------------------------------------------------------------------------


def test_help(tmp_path: Path) -> None:
    """`python -m idp --help` describes the command and its subcommands, and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "idp", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "users", "clients", "keys"):
        assert command in result.stdout


def test_migrate_is_idempotent(cli: Cli) -> None:
    """`idp migrate` brings the database to the latest schema; running it again does nothing."""
    again = cli.ok("migrate")
    assert again.stdout == ""
    assert cli.count("users") == 0


# --- users --------------------------------------------------------------------------------------


def test_users_create_reads_the_password_from_stdin(cli: Cli) -> None:
    """The password comes on standard input; one trailing newline (as `echo` adds) is stripped,
    and the stored value is an argon2id hash of exactly the password."""
    result = cli.ok(
        "users",
        "create",
        "Ann@Example.com",
        "--name",
        "Ann",
        "--password-stdin",
        "--json",
        stdin=PASSWORD + "\n",
    )
    out = json.loads(result.stdout)
    assert out["email"] == "ann@example.com"
    assert out["name"] == "Ann"
    assert PASSWORD not in result.stdout + result.stderr
    with cli.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :i"), {"i": out["id"]}
        ).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, PASSWORD)
    with pytest.raises(Exception, match="does not match"):
        PasswordHasher().verify(stored, PASSWORD + "\n")


def test_users_create_keeps_inner_whitespace(cli: Cli) -> None:
    """Only one trailing newline is stripped: spaces inside or around the password are its own."""
    out = json.loads(
        cli.ok(
            "users",
            "create",
            "bo@example.com",
            "--password-stdin",
            "--json",
            stdin=f" {PASSWORD} \n",
        ).stdout
    )
    with cli.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :i"), {"i": out["id"]}
        ).scalar_one()
    assert PasswordHasher().verify(stored, f" {PASSWORD} ")


def test_password_option_does_not_exist(cli: Cli) -> None:
    """A password on the command line would land in shell history and `ps`: there is no
    --password option, and argparse rejects it with exit status 2."""
    result = cli.run("users", "create", "x@y.z", "--password", "foo-bar-baz-qux")
    assert result.returncode == 2
    one_line_error(result)
    assert cli.count("users") == 0


def test_users_create_requires_password_stdin(cli: Cli) -> None:
    """Without --password-stdin there is no way to give a password: refused, nothing written."""
    before = cli.counts()
    one_line_error(cli.run("users", "create", "x@y.z", stdin=PASSWORD + "\n"))
    assert cli.counts() == before


def test_duplicate_email_is_refused(cli: Cli) -> None:
    """An email names one account: a second user with the same email (in any case) is refused."""
    cli.ok("users", "create", "dup@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    before = cli.counts()
    result = cli.run(
        "users", "create", "DUP@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert "already exists" in one_line_error(result)
    assert cli.counts() == before


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        ("123456789987654321\n", "common"),
        ("1qaz2wsx3edc4rfv\n", "common"),
        ("zq7Kx9pWm3vR2t\n", "at least 15"),
        ("\n", "no password"),
        ("", "no password"),
    ],
    ids=["common", "keyboard-walk", "too-short", "empty-line", "nothing"],
)
def test_weak_password_is_refused(cli: Cli, stdin: str, reason: str) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: a common or too-short password (under 15 characters: a new
    account has no second factor) is refused, one line, nothing written."""
    before = cli.counts()
    result = cli.run("users", "create", "weak@example.com", "--password-stdin", stdin=stdin)
    assert reason in one_line_error(result)
    assert cli.counts() == before


def test_min_length_setting_applies(cli: Cli) -> None:
    """IDP_PASSWORD_MIN_LENGTH raises the floor for `idp users create`."""
    cli.env["IDP_PASSWORD_MIN_LENGTH"] = "40"
    before = cli.counts()
    result = cli.run(
        "users", "create", "len@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert "at least 40" in one_line_error(result)
    assert cli.counts() == before


# --- clients ------------------------------------------------------------------------------------


def create_client(cli: Cli, *args: str) -> dict[str, object]:
    result = cli.ok("clients", "create", "--name", "App", *args, "--json")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_confidential_client_gets_a_secret_shown_once(cli: Cli) -> None:
    """RFC 6749 §2.3.1: a confidential client gets a secret; it is printed once and stored only as
    its SHA-256."""
    out = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code", "--scope", "openid"
    )
    client_id, secret = out["client_id"], out["client_secret"]
    assert isinstance(client_id, str) and client_id
    assert isinstance(secret, str) and len(secret) >= 43
    assert out["token_endpoint_auth_method"] == "client_secret_basic"
    with cli.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM clients")).mappings().one()
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(v) for v in row.values()]
    shown = json.loads(cli.ok("clients", "show", client_id).stdout)
    assert "client_secret" not in shown
    assert secret not in json.dumps(shown)


def test_public_client_has_no_secret(cli: Cli) -> None:
    """RFC 6749 §2.1 / RFC 8252 §8.4: a public client cannot keep a secret, so none is issued."""
    out = create_client(
        cli,
        "--public",
        "--redirect-uri",
        "http://127.0.0.1:8765/cb",
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid",
    )
    assert "client_secret" not in out
    assert out["public"] is True
    assert out["token_endpoint_auth_method"] == "none"
    assert out["require_pkce"] is True


def test_clients_list_show_delete(cli: Cli) -> None:
    """`clients list --json` lists every client, `clients show ID` shows one, `clients delete ID`
    removes it, after which `show` fails with exit status 1."""
    a = create_client(cli, "--grant-type", "client_credentials", "--scope", "api")
    b = create_client(
        cli, "--redirect-uri", REDIRECT, "--grant-type", "authorization_code", "--scope", "openid"
    )
    listed = json.loads(cli.ok("clients", "list", "--json").stdout)
    assert sorted(c["client_id"] for c in listed) == sorted([a["client_id"], b["client_id"]])
    assert all("client_secret" not in c and "secret_hash" not in c for c in listed)
    shown = json.loads(cli.ok("clients", "show", str(a["client_id"])).stdout)
    assert shown["client_id"] == a["client_id"]
    assert shown["grant_types"] == ["client_credentials"]
    cli.ok("clients", "delete", str(a["client_id"]))
    gone = cli.run("clients", "show", str(a["client_id"]))
    assert gone.returncode == 1
    one_line_error(gone)
    again = cli.run("clients", "delete", str(a["client_id"]))
    assert again.returncode == 1
    one_line_error(again)
    listed = json.loads(cli.ok("clients", "list", "--json").stdout)
    assert [c["client_id"] for c in listed] == [b["client_id"]]


def test_client_audience_is_registered(cli: Cli) -> None:
    """RFC 9068 §3 / RFC 8707 §2: `--audience` names the API (an absolute URI) the client's
    access tokens are for; `clients show` reports it, and it defaults to none (server-wide)."""
    api = create_client(
        cli, "--grant-type", "client_credentials", "--scope", "notes.read",
        "--audience", "https://api.example/notes",
    )  # fmt: skip
    plain = create_client(cli, "--grant-type", "client_credentials", "--scope", "api")
    shown = json.loads(cli.ok("clients", "show", str(api["client_id"])).stdout)
    assert shown["audiences"] == ["https://api.example/notes"]
    assert plain["audiences"] is None
    both = create_client(
        cli, "--grant-type", "client_credentials", "--audience", "urn:example:notes",
        "--audience", "https://api.example/reports",
    )  # fmt: skip
    assert both["audiences"] == ["urn:example:notes", "https://api.example/reports"]


BAD_CLIENTS = {
    "unknown-grant": ["--grant-type", "implicit", "--redirect-uri", REDIRECT],
    "password-grant": ["--grant-type", "password"],
    "fragment": ["--grant-type", "authorization_code", "--redirect-uri", REDIRECT + "#frag"],
    "wildcard": ["--grant-type", "authorization_code", "--redirect-uri", "https://*.rp.example/cb"],
    "http-non-loopback": [
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        "http://rp.example/callback",
    ],
    "relative-uri": ["--grant-type", "authorization_code", "--redirect-uri", "/callback"],
    "no-redirect-uri": ["--grant-type", "authorization_code"],
    "one-bad-of-two": [
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        REDIRECT,
        "--redirect-uri",
        "http://rp.example/cb",
    ],
    "public-client-credentials": ["--public", "--grant-type", "client_credentials"],
    "public-no-pkce": [
        "--public",
        "--no-pkce",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        REDIRECT,
    ],
    "private-key-jwt-without-keys": [
        "--auth-method",
        "private_key_jwt",
        "--grant-type",
        "client_credentials",
    ],
    "unknown-auth-method": ["--auth-method", "magic", "--grant-type", "client_credentials"],
    "no-grant": ["--redirect-uri", REDIRECT],
    "relative-audience": ["--grant-type", "client_credentials", "--audience", "/notes"],
    "audience-fragment": [
        "--grant-type",
        "client_credentials",
        "--audience",
        "https://api.example/#x",
    ],
    "audience-with-space": ["--grant-type", "client_credentials", "--audience", "https://a b"],
    "logo-javascript": ["--grant-type", "client_credentials", "--logo-uri", "javascript:alert(1)"],
    "logo-data": ["--grant-type", "client_credentials", "--logo-uri", "data:image/png;base64,AA"],
    "logo-ftp": ["--grant-type", "client_credentials", "--logo-uri", "ftp://rp.example/l.png"],
    "logo-http": ["--grant-type", "client_credentials", "--logo-uri", "http://rp.example/l.png"],
    "client-uri-userinfo": [
        "--grant-type",
        "client_credentials",
        "--client-uri",
        "https://me:pw@rp.example/",
    ],
    "policy-uri-fragment": [
        "--grant-type",
        "client_credentials",
        "--policy-uri",
        "https://rp.example/privacy#top",
    ],
    "tos-uri-space": ["--grant-type", "client_credentials", "--tos-uri", "https://rp.example/t c"],
}


@pytest.mark.parametrize("args", list(BAD_CLIENTS.values()), ids=list(BAD_CLIENTS))
def test_bad_client_registration_is_refused(cli: Cli, args: list[str]) -> None:
    """RFC 6749 §3.1.2, RFC 9700 §2.1 and §4.1.3, RFC 8252 §7.3: exact https (or loopback http)
    redirect URIs, no fragments, no wildcards; a public client uses PKCE and no
    client_credentials; OIDC Registration §2 logo_uri, client_uri, policy_uri and tos_uri are
    https URLs without userinfo or fragment. Anything else exits non-zero with one line, and
    nothing is written."""
    before = cli.counts()
    one_line_error(cli.run("clients", "create", "--name", "Bad", "--scope", "openid", *args))
    assert cli.counts() == before


def test_a_logo_uri_that_is_not_https_is_refused_by_name(cli: Cli) -> None:
    """OIDC Registration §2 logo_uri: the one line names the field and what it must be."""
    result = cli.run(
        "clients", "create", "--name", "Bad", "--grant-type", "client_credentials",
        "--logo-uri", "javascript:alert(1)",
    )  # fmt: skip
    assert one_line_error(result) == (
        "idp: error: logo_uri: 'javascript:alert(1)' must be https (or http on a loopback host)"
    )


METADATA = {
    "client_uri": "https://rp.example/",
    "policy_uri": "https://rp.example/privacy",
    "tos_uri": "https://rp.example/terms",
}


def test_a_client_logo_is_fetched_once_and_shown(cli: Cli) -> None:
    """OIDC Registration §2: `--logo-uri` is fetched at registration and stored; `clients
    create`, `show` and `list` report the four URIs and the logo's type, digest and size, never
    its bytes."""
    with serve_slow("ok", body=png(), content_type="image/png") as host:
        created = create_client(
            cli, "--grant-type", "client_credentials", "--logo-uri", host.url + "logo.png",
            "--client-uri", METADATA["client_uri"], "--policy-uri", METADATA["policy_uri"],
            "--tos-uri", METADATA["tos_uri"],
        )  # fmt: skip
    assert host.count == 1
    digest = hashlib.sha256(png()).hexdigest()
    logo = {"content_type": "image/png", "sha256": digest, "bytes": len(png())}
    expected = {**METADATA, "logo_uri": host.url + "logo.png", "logo": logo}
    shown = json.loads(cli.ok("clients", "show", str(created["client_id"])).stdout)
    (listed,) = json.loads(cli.ok("clients", "list", "--json").stdout)
    for described in (created, shown, listed):
        assert {k: described[k] for k in expected} == expected
    with cli.engine.connect() as conn:
        stored = conn.execute(text("SELECT content_type, image FROM client_logos")).one()
    assert (stored[0], bytes(stored[1])) == ("image/png", png())


def test_without_metadata_the_uris_and_logo_are_null(cli: Cli) -> None:
    """The four URIs are optional; without them `clients show` reports null."""
    created = create_client(cli, "--grant-type", "client_credentials")
    for key in (*METADATA, "logo_uri", "logo"):
        assert created[key] is None


@pytest.mark.parametrize(
    ("behaviour", "settings", "reason"),
    [
        ("status", {"status": 404}, "HTTP 404"),
        ("ok", {"body": SVG, "content_type": "image/svg+xml"}, "not a PNG, JPEG or WebP image"),
    ],
    ids=["404", "svg"],
)
def test_a_logo_that_cannot_be_fetched_writes_nothing(
    cli: Cli, behaviour: str, settings: dict[str, object], reason: str
) -> None:
    """A logo_uri whose image cannot be had refuses the whole registration: one line saying
    why, exit 1, and no client row."""
    before = cli.counts()
    with serve_slow(behaviour, **settings) as host:
        result = cli.run(
            "clients", "create", "--name", "App", "--grant-type", "client_credentials",
            "--logo-uri", host.url,
        )  # fmt: skip
    assert result.returncode == 1
    assert one_line_error(result) == f"idp: error: logo_uri: could not fetch the logo ({reason})"
    assert host.count == 1
    assert cli.counts() == before


# --- roles ---------------------------------------------------------------------------------------


def roles_of(cli: Cli, email: str) -> list[str]:
    result = cli.ok("users", "roles", email, "--json")
    return json.loads(result.stdout)["roles"]  # type: ignore[no-any-return]


def test_users_roles_are_granted_listed_and_revoked(cli: Cli) -> None:
    """`users create --role`, `users roles EMAIL [--add R] [--remove R]`: each change is one
    audited permission change (role.granted / role.revoked), and the listing is sorted."""
    created = json.loads(
        cli.ok(
            "users", "create", "rita@example.com", "--role", "reader", "--role", "auditor",
            "--password-stdin", "--json", stdin=PASSWORD + "\n",
        ).stdout
    )  # fmt: skip
    assert created["roles"] == ["auditor", "reader"]
    assert roles_of(cli, "rita@example.com") == ["auditor", "reader"]
    changed = cli.ok(
        "users", "roles", "Rita@Example.com", "--add", "writer", "--remove", "reader", "--json"
    )
    assert json.loads(changed.stdout) == {
        "email": "rita@example.com",
        "roles": ["auditor", "writer"],
        "role_grants": [
            {"role": "auditor", "expires_at": None},
            {"role": "writer", "expires_at": None},
        ],
    }
    plain = cli.ok("users", "roles", "rita@example.com")
    assert plain.stdout.strip() == "auditor writer"
    with cli.engine.connect() as conn:
        events = [
            r[0]
            for r in conn.execute(
                text("SELECT event FROM audit_events WHERE event LIKE 'role.%' ORDER BY id")
            )
        ]
    assert events == ["role.granted", "role.granted", "role.granted", "role.revoked"]


@pytest.mark.parametrize(
    "args",
    [["--add", "Bad Role"], ["--add", "ok", "--add", "UPPER"], ["--remove", "ok", "--add", ""]],
    ids=["space", "second-bad", "empty"],
)
def test_bad_role_change_writes_nothing(cli: Cli, args: list[str]) -> None:
    """A bad role name anywhere in the command: one line on stderr, exit 1, and no change at all
    (the good parts of the same command are not applied either)."""
    cli.ok(
        "users", "create", "sam@example.com", "--role", "ok", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    before = cli.counts()
    one_line_error(cli.run("users", "roles", "sam@example.com", *args))
    assert cli.counts() == before
    assert roles_of(cli, "sam@example.com") == ["ok"]


def test_roles_of_an_unknown_user_fail(cli: Cli) -> None:
    one_line_error(cli.run("users", "roles", "nobody@example.com", "--add", "x"))


def test_user_with_a_bad_role_is_not_created(cli: Cli) -> None:
    before = cli.counts()
    one_line_error(
        cli.run(
            "users", "create", "tom@example.com", "--role", "Nope!", "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    )  # fmt: skip
    assert cli.counts() == before


# --- keys ---------------------------------------------------------------------------------------


def test_keys_list(cli: Cli, database_url: str, tmp_path: Path) -> None:
    """`idp keys list --json` shows the signing keys the server created on its first start,
    public facts only."""
    assert json.loads(cli.ok("keys", "list", "--json").stdout) == []
    services = build_runtime(make_settings(database_url, tmp_path))
    try:
        kid, _ = services.keys.signing_key()
    finally:
        services.engine.dispose()
    listed = json.loads(cli.ok("keys", "list", "--json").stdout)
    assert len(listed) == 1
    assert listed[0]["kid"] == kid
    assert listed[0]["alg"] == "RS256"
    assert listed[0]["state"] == "active"
    assert set(listed[0]) == {
        "kid",
        "alg",
        "state",
        "created_at",
        "activates_at",
        "activated_at",
        "retired_at",
        "remove_after",
        "revoked_at",
    }


def test_keys_new_kek(tmp_path: Path) -> None:
    """`idp keys new-kek` prints a fresh 32-byte key-encryption key, base64url, each time new."""
    import base64

    def new_kek() -> str:
        result = run_cli(["keys", "new-kek"], os.environ, tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first, second = new_kek(), new_kek()
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))) == 32


def test_prune_applies_the_audit_retention_setting(cli: Cli) -> None:
    """`idp prune` deletes audit events older than IDP_AUDIT_RETENTION_DAYS."""
    import time

    from idp.audit import chain
    from idp.store.audit import AuditRecord

    (cli.cwd / "kek").write_text(cli.ok("keys", "new-kek").stdout)  # the KEK the CLI reads
    factory = make_sessionmaker(cli.engine)
    chain.install(factory, chain.key_from_settings(cli.settings))
    for age_days in (11, 9):
        with factory.begin() as db:
            db.add(AuditRecord(at=int(time.time()) - age_days * 86400, event="test.aged"))
    cli.env["IDP_AUDIT_RETENTION_DAYS"] = "10"
    result = cli.ok("prune", "--json")
    assert json.loads(result.stdout)["audit events"] == 1
    with cli.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM audit_events WHERE event = 'test.aged'"))
        assert left.scalar_one() == 1
