"""Migration 0016 (RFC 8707 resource indicators): a client's one access_token_audience becomes
the first and only entry of its audiences, and a downgrade keeps the first entry."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from tests.conftest import make_settings
from tests.db.test_migration_0011 import _to

INSERT = (
    "INSERT INTO clients (client_id, name, is_public, auth_method, redirect_uris,"
    " post_logout_redirect_uris, grant_types, scopes, require_pkce, trusted, can_introspect,"
    " created_at, {column}) VALUES (:id, 'App', false, 'none', '[]', '[]', '[]', '[]', true,"
    " false, false, 0, :value)"
)


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def test_the_audience_becomes_the_list_of_audiences_and_back(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        _to(engine, "0015")
        with engine.begin() as conn:
            for client_id, audience in (("api", "https://api.example"), ("plain", None)):
                conn.execute(
                    text(INSERT.format(column="access_token_audience")),
                    {"id": client_id, "value": audience},
                )
        _to(engine, "0016", up=True)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT client_id, audiences FROM clients ORDER BY 1"))
            assert [(c, _json(a)) for c, a in rows] == [
                ("api", ["https://api.example"]),
                ("plain", None),
            ]
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE clients SET audiences = :a WHERE client_id = 'plain'"),
                {"a": json.dumps(["urn:example:first", "urn:example:second"])},
            )
        _to(engine, "0015")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT client_id, access_token_audience FROM clients ORDER BY 1")
            )
            assert list(map(tuple, rows)) == [
                ("api", "https://api.example"),
                ("plain", "urn:example:first"),
            ]
    finally:
        engine.dispose()
