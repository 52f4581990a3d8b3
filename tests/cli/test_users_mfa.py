"""`idp users mfa`, `idp users reset-mfa` and `idp keys rewrap` for TOTP seeds (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
from sqlalchemy import text

from idp.authn import mfa
from idp.keys.kek import new_key_encryption_key, read_kek_file
from idp.runtime import build_runtime
from idp.security.secrets import Sealer
from idp.store import users
from tests.cli.test_main import PASSWORD, Cli, cli  # noqa: F401  (the fixture)
from tests.conftest import make_settings


def _enrol(database_url: str, tmp_path: Path, email: str) -> str:
    """An authenticator app for the user, set up as /account/mfa does; returns the seed."""
    kek = tmp_path / "kek"  # the CLI's KEK file (cli_env)
    if not kek.exists():
        kek.write_text(new_key_encryption_key() + "\n")
    runtime = build_runtime(make_settings(database_url, tmp_path, key_encryption_key=None))
    try:
        with runtime.sessions.begin() as db:
            user = users.by_email(db, email)
            assert user is not None
            enrolment = mfa.start_totp(db, runtime.sealer, user, "Test")
            assert mfa.confirm_totp(
                db, runtime.sealer, user, pyotp.TOTP(enrolment.secret).now(), None
            )
            mfa.new_recovery_codes(db, user.id, None)
        return enrolment.secret
    finally:
        runtime.engine.dispose()


def test_mfa_lists_and_reset_mfa_removes_the_factors(
    cli: Cli,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    """An admin (created with --admin: the reserved role) must use MFA; `users mfa` lists the
    factors; `users reset-mfa` removes them all, audited."""
    created = cli.ok(
        "users",
        "create",
        "ann@example.com",
        "--admin",
        "--password-stdin",
        "--json",
        stdin=PASSWORD,
    )
    assert json.loads(created.stdout)["roles"] == ["admin"]
    before = json.loads(cli.ok("users", "mfa", "ann@example.com", "--json").stdout)
    assert before["required"] is True and before["authenticator_app"] is None
    _enrol(database_url, tmp_path, "ann@example.com")
    listed = json.loads(cli.ok("users", "mfa", "ann@example.com", "--json").stdout)
    assert listed["authenticator_app"]["confirmed"] is True
    assert listed["recovery_codes_left"] == 10
    assert "authenticator app (confirmed)" in cli.ok("users", "mfa", "ann@example.com").stdout
    reset = cli.ok("users", "reset-mfa", "ann@example.com")
    assert "the next sign-in sets up a new one" in reset.stdout
    assert (cli.count("totp_factors"), cli.count("recovery_codes")) == (0, 0)
    with cli.engine.connect() as conn:
        events = conn.execute(text("SELECT event FROM audit_events")).scalars().all()
    assert "mfa.reset" in events
    assert cli.run("users", "reset-mfa", "nobody@example.com").returncode != 0


def test_rewrap_reseals_the_totp_seeds(
    cli: Cli,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    """`idp keys rewrap` re-encrypts TOTP seeds with the signing keys: afterwards the new KEK
    opens them, and the old one does not."""
    cli.ok("users", "create", "ann@example.com", "--password-stdin", stdin=PASSWORD)
    secret = _enrol(database_url, tmp_path, "ann@example.com")
    new_kek = tmp_path / "new-kek"
    new_kek.write_text(new_key_encryption_key() + "\n")
    result = cli.ok("keys", "rewrap", "--new-kek-file", str(new_kek))
    assert "1 authenticator-app seeds" in result.stdout
    with cli.engine.connect() as conn:
        user_id, sealed = conn.execute(text("SELECT user_id, sealed_seed FROM totp_factors")).one()
    aad = f"totp:{user_id}".encode()
    assert Sealer(read_kek_file(new_kek)).open(sealed, aad) == secret.encode()
