"""One audit event as the world outside reads it: the shape of `idp audit export` lines and of
the security webhook's bodies (idp.audit.webhook)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from idp.store.audit import AuditRecord


def as_dict(record: AuditRecord) -> dict[str, Any]:
    """The keys `id`, `time` (RFC 3339, UTC, `Z`), `event`, `actor`, `subject`
    ({"user_id", "client_id"}), `client`, `address` and `details`, always all of them."""
    return {
        "id": record.id,
        "time": datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event": record.event,
        "actor": record.actor,
        "subject": {"user_id": record.user_id, "client_id": record.client_id},
        "client": record.client_id,
        "address": record.ip,
        "details": record.detail if record.detail is not None else {},
    }


def as_json_line(record: AuditRecord) -> str:
    """One event as a SIEM reads it: one line of JSON (every control character escaped)."""
    return json.dumps(as_dict(record), ensure_ascii=False, separators=(",", ":"))
