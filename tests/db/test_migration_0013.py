"""Migration 0013: the actor of audit events moves from their detail to a column of its own
(so a search by actor finds events written before it), and back on a downgrade."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from tests.conftest import make_settings
from tests.db.test_migration_0011 import _to


def _detail(value: object) -> dict[str, object]:
    return json.loads(value) if isinstance(value, str) else dict(value)  # type: ignore[arg-type]


def test_actor_moves_to_its_column_and_back(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        _to(engine, "0012")
        with engine.begin() as conn:
            for event, detail in (
                ("user.disabled", {"actor": "cli", "reason": "left"}),
                ("login.succeeded", {"acr": "aal1"}),
            ):
                conn.execute(
                    text("INSERT INTO audit_events (at, event, detail) VALUES (1, :e, :d)"),
                    {"e": event, "d": json.dumps(detail)},
                )
        _to(engine, "0013", up=True)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT event, actor, detail FROM audit_events ORDER BY id"))
            moved = [(e, a, _detail(d)) for e, a, d in rows]
        assert moved == [
            ("user.disabled", "cli", {"reason": "left"}),
            ("login.succeeded", None, {"acr": "aal1"}),
        ]
        _to(engine, "0012")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT detail FROM audit_events ORDER BY id"))
            restored = [_detail(d) for (d,) in rows]
        assert restored == [{"reason": "left", "actor": "cli"}, {"acr": "aal1"}]
    finally:
        engine.dispose()
