"""`idp audit verify` (issue 15, "CLI"): exit 0 on an intact trail; non-zero, naming the first
broken row, when a row was edited, deleted or inserted; the logged head catches a cut-off end;
and the chain carries on under a new KEK after `idp keys rewrap`."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from idp.keys.kek import new_key_encryption_key
from tests.cli.test_main import Cli, cli, one_line_error  # noqa: F401  (the fixture)

PASSWORD = "a long passphrase for tests\n"


def some_rows(tool: Cli) -> None:
    for name in ("ann", "bob", "cy"):
        tool.ok("users", "create", f"{name}@example.com", "--password-stdin", stdin=PASSWORD)


def chain_rows(tool: Cli) -> list[tuple[int, int, str]]:
    with tool.engine.connect() as conn:
        found = conn.execute(text("SELECT id, seq, mac FROM audit_events ORDER BY seq")).all()
    return [(r.id, r.seq, r.mac) for r in found]


def test_an_intact_trail_exits_0(cli: Cli) -> None:  # noqa: F811
    some_rows(cli)
    rows = chain_rows(cli)
    result = cli.ok("audit", "verify")
    _, last_seq, last_mac = rows[-1]
    assert result.stdout == (
        f"intact: {len(rows)} rows checked (seq 1 to {last_seq}); head {last_seq}:{last_mac}\n"
    )
    data = json.loads(cli.ok("audit", "verify", "--json").stdout)
    assert data["intact"] is True and data["checked"] == len(rows)
    assert cli.ok("audit", "verify", "--head", f"{last_seq}:{last_mac}").returncode == 0


def test_an_edited_row_exits_1_naming_it(cli: Cli) -> None:  # noqa: F811
    some_rows(cli)
    row_id, seq, _ = chain_rows(cli)[1]
    with cli.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET ip = '203.0.113.9' WHERE id = :i"), {"i": row_id}
        )
    line = one_line_error(cli.run("audit", "verify"))
    assert line.startswith("idp: error: the audit trail is broken: ")
    assert f"row id {row_id} (seq {seq}, " in line and "edited" in line


def test_a_deleted_row_exits_1_naming_the_gap(cli: Cli) -> None:  # noqa: F811
    some_rows(cli)
    (gone, seq, _), (after, _, _) = chain_rows(cli)[1:3]
    with cli.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": gone})
    line = one_line_error(cli.run("audit", "verify"))
    assert f"seq {seq} is missing before row id {after}" in line


def test_an_inserted_row_exits_1_naming_it(cli: Cli) -> None:  # noqa: F811
    some_rows(cli)
    with cli.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_events (at, event, detail) VALUES (1, 'logout', '{}')")
        )
        forged = conn.execute(text("SELECT id FROM audit_events WHERE seq IS NULL")).scalar_one()
    line = one_line_error(cli.run("audit", "verify"))
    assert f"row id {forged} (logout) is outside the chain" in line


def test_a_cut_off_end_is_found_against_the_logged_head(cli: Cli) -> None:  # noqa: F811
    some_rows(cli)
    _, seq, mac = chain_rows(cli)[-1]
    with cli.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": seq})
    assert cli.run("audit", "verify").returncode == 0
    line = one_line_error(cli.run("audit", "verify", "--head", f"{seq}:{mac}"))
    assert f"before the logged head seq {seq}: rows were deleted from its end" in line


def test_a_malformed_head_is_a_one_line_error(cli: Cli) -> None:  # noqa: F811
    for bad in ("12", "x:" + "0" * 64, "3:abc", "3:" + "G" * 64):
        line = one_line_error(cli.run("audit", "verify", "--head", bad))
        assert "--head must be SEQ:MAC" in line


def test_the_chain_goes_on_under_a_new_kek_after_rewrap(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    """`idp keys rewrap` appends a checkpoint sealed under the new KEK's key that names the
    old key's last row: with the new KEK the trail verifies from there, later rows too; with
    the old KEK it no longer does."""
    some_rows(cli)
    before = len(chain_rows(cli))
    new_kek = tmp_path / "new-kek"
    new_kek.write_text(new_key_encryption_key() + "\n")
    cli.ok("keys", "rewrap", "--new-kek-file", str(new_kek))
    old_env = dict(cli.env)
    cli.env["IDP_KEY_ENCRYPTION_KEY_FILE"] = str(new_kek)
    cli.ok("users", "create", "dee@example.com", "--password-stdin", stdin=PASSWORD)
    result = cli.ok("audit", "verify")
    # keys.rewrapped is the old key's last row; the checkpoint and dee's row are checked.
    assert result.stdout.startswith(f"intact: 2 rows checked (seq {before + 2} to {before + 3})")
    assert f"{before + 1} older rows before the starting checkpoint not checked" in result.stdout
    cli.env = old_env
    assert cli.run("audit", "verify").returncode == 1
