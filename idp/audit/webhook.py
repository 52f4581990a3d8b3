"""The security webhook (IDP_SECURITY_WEBHOOK_URL): every security event of the audit trail
(SECURITY_EVENTS) POSTed as one JSON object, signed with HMAC-SHA256.

The body is the event in the shape of `idp audit export` (idp.audit.export). The header
`X-IdP-Signature: t=<Unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` lets a
receiver check who sent it and refuse old timestamps (a replay). Delivery is at least once: an
event can arrive twice (a receiver that answered after the deadline, a worker stopped between
the answer and writing it down), so receivers drop an `id` they have already seen.

No request and no transaction waits for a receiver. Each server's worker reads the trail after
a cursor every server shares (store.webhook_cursor) and sends from a thread of its own: the
worker that takes the cursor's lease (one conditional UPDATE) sends the next events in id
order, one at a time, each with an overall deadline, and writes the cursor down after each.
An event that fails (a network error, the deadline, any answer but 2xx) stops the batch and is
tried again after a delay that doubles from IDP_SECURITY_WEBHOOK_RETRY_SECONDS; after
IDP_SECURITY_WEBHOOK_MAX_ATTEMPTS it is given up on, `webhook.gave_up` is audited (not a
security event: it is never sent), and the next event goes.

On PostgreSQL an id is taken at insert, not at commit, so a lower id can commit after a higher
one was sent: ids passed over are looked for again for LATE_COMMIT_SECONDS (as `idp audit
tail` does) and sent when they appear, after events with higher ids. Failures of the kinds any
stranger can cause are counted per minute (idp.audit.events.TALLIED) and sent as one event
with its count once the minute has closed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from idp import outbound
from idp.audit.events import SECURITY_EVENTS, AuditEvent, record
from idp.audit.export import as_json_line
from idp.ops import metrics
from idp.security.secrets import new_id
from idp.store import audit, webhook_cursor
from idp.store.audit import AuditQuery, AuditRecord
from idp.store.base import now

if TYPE_CHECKING:
    from idp.runtime import Runtime

log = logging.getLogger("idp.webhook")

SIGNATURE_HEADER = "X-IdP-Signature"
DEADLINE_SECONDS = outbound.WEBHOOK_DEADLINE  # the whole attempt, not each read
# The lease outlives one attempt's whole deadline, and is renewed at each write of the cursor.
LEASE_SECONDS = int(DEADLINE_SECONDS * 2) + 1
BATCH = 100  # audit ids read per lease
MAX_RETRY_DELAY_SECONDS = 3600
LATE_COMMIT_SECONDS = 120
MAX_MISSING = 1000
_SECURITY = AuditQuery(events=sorted(SECURITY_EVENTS))


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-IdP-Signature value: t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class _Position:
    """The cursor as this lease holder sees it."""

    last_id: int
    missing: dict[str, int] = field(default_factory=dict)  # str(id) -> when first missed
    failing_id: int | None = None
    attempts: int = 0


@dataclass
class Webhook:
    """Sends the security events after the shared cursor; `deliver` does one lease's work."""

    url: str
    secret: bytes = field(repr=False)
    policy: outbound.OutboundPolicy
    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]
    max_attempts: int = 5
    retry_seconds: float = 10  # the first delay; tests make it 0
    deadline: float = DEADLINE_SECONDS

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Webhook | None:
        """The runtime's webhook; None when IDP_SECURITY_WEBHOOK_URL is unset."""
        settings = runtime.settings
        if settings.security_webhook_url is None or settings.security_webhook_secret is None:
            return None
        return cls(
            url=settings.security_webhook_url,
            secret=settings.security_webhook_secret.get_secret_value().encode(),
            policy=runtime.outbound,
            sessions=runtime.sessions,
            reads=runtime.reads,
            max_attempts=settings.security_webhook_max_attempts,
            retry_seconds=settings.security_webhook_retry_seconds,
        )

    def post(self, event: AuditRecord) -> str | None:
        """Send one event; None when the receiver answered 2xx, else a short reason (no URL,
        no secret: it is logged and audited)."""
        body = as_json_line(event).encode()
        signed = signature(self.secret, int(time.time()), body)
        headers = [(SIGNATURE_HEADER, signed)]
        try:
            response = outbound.post_json(
                self.url, body, self.policy, headers=headers, deadline=self.deadline
            )
        except outbound.OutboundError as exc:
            return str(exc)
        return None if 200 <= response.status < 300 else f"HTTP {response.status}"

    def check(self) -> None:
        """Log a warning when the outbound policy refuses the URL now (its scheme, or the
        addresses its name resolves to): every event would be given up on."""
        try:
            outbound.check_target(self.url, self.policy, deadline=self.deadline)
        except outbound.OutboundError as exc:
            log.warning("security webhook: IDP_SECURITY_WEBHOOK_URL cannot be reached: %s", exc)

    def begin(self) -> None:
        """Start the cursor at the end of the trail unless it exists (the worker's start): the
        first server started with a webhook sends every security event written from then on."""
        with self.reads.begin() as db:
            if webhook_cursor.get(db) is not None:
                return
        with self.sessions.begin() as db:
            webhook_cursor.start(db, audit.last_id(db))

    def due(self) -> bool:
        """Whether there may be something to send: one read, no write lock (the worker asks
        before every `deliver`). True when the cursor does not exist yet."""
        with self.reads.begin() as db:
            cursor = webhook_cursor.get(db)
            if cursor is None:
                return True
            ts = now()
            if cursor.lease_until > ts or cursor.next_attempt_at > ts:
                return False
            return bool(cursor.missing) or audit.last_id(db) > cursor.last_id

    def deliver(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Take the lease and send what follows the cursor, up to BATCH ids, until `stopping`
        says so; True when a full batch went and more may wait. Nothing is sent without the
        lease."""
        lease = new_id()
        with self.sessions.begin() as db:
            if webhook_cursor.get(db) is None:  # begin() had not run: from the trail's end
                webhook_cursor.start(db, audit.last_id(db))
            cursor = webhook_cursor.claim(db, lease, LEASE_SECONDS)
            if cursor is None:
                return False  # another worker sends, or a retry waits
            missing = {str(i): int(str(t)) for i, t in cursor.missing.items()}
            at = _Position(cursor.last_id, missing, cursor.failing_id, cursor.attempts)
        with self.reads.begin() as db:
            ids = audit.ids_after(db, at.last_id, BATCH)
            arrived = set(audit.ids_among(db, [int(i) for i in at.missing]))
            events = audit.search_among(db, _SECURITY, [*arrived, *ids])
        ts = now()
        for gone in [i for i, since in at.missing.items() if int(i) in arrived]:
            del at.missing[gone]
        for gone in [i for i, t in at.missing.items() if ts - t > LATE_COMMIT_SECONDS]:
            del at.missing[gone]
        gaps = _gaps(at.last_id, ids)
        for event in events:
            if stopping() or not self._one(lease, at, event, gaps):
                return False  # stopping: the lease lapses, and the next holder goes on
        if ids:
            _advance(at, ids[-1], gaps)
        with self.sessions.begin() as db:
            webhook_cursor.save(db, lease, last_id=at.last_id, missing=dict(at.missing))
        return len(ids) == BATCH

    def _one(self, lease: str, at: _Position, event: AuditRecord, gaps: list[int]) -> bool:
        """Send one event and write down its outcome; False when the batch ends here (a retry
        waits, or the lease was lost)."""
        error = self.post(event)
        failing = at.failing_id == event.id
        attempts = at.attempts + 1 if failing else 1
        if error is not None and attempts < self.max_attempts:
            metrics.webhook_delivery("failed")
            log.warning(
                "security webhook: event %s not delivered (attempt %s of %s): %s",
                event.id,
                attempts,
                self.max_attempts,
                error,
            )
            delay = min(self.retry_seconds * 2 ** (attempts - 1), MAX_RETRY_DELAY_SECONDS)
            retry_at = now() + int(delay)
            with self.sessions.begin() as db:
                webhook_cursor.save(
                    db,
                    lease,
                    last_id=at.last_id,
                    missing=dict(at.missing),
                    failing_id=event.id,
                    attempts=attempts,
                    last_error=error,
                    retry_at=retry_at,
                )
            return False
        if event.id > at.last_id:
            _advance(at, event.id, gaps)
        else:
            at.missing.pop(str(event.id), None)  # a late commit, sent now
        at.failing_id, at.attempts = None, 0
        with self.sessions.begin() as db:
            held = webhook_cursor.save(
                db, lease, last_id=at.last_id, missing=dict(at.missing), renew=LEASE_SECONDS
            )
            if held and error is not None:  # with the cursor: audited once, by the holder
                _gave_up(db, event, attempts, error)
        metrics.webhook_delivery("delivered" if error is None else "gave_up")
        if not held:
            log.warning("security webhook: the lease lapsed and another worker took it")
        return held


def _gaps(last_id: int, ids: list[int]) -> list[int]:
    """The ids after last_id, up to the last of `ids`, that are not committed (yet)."""
    if not ids:
        return []
    present = set(ids)
    start = max(last_id + 1, ids[-1] - len(ids) - MAX_MISSING)
    return [i for i in range(start, ids[-1] + 1) if i not in present]


def _advance(at: _Position, to: int, gaps: list[int]) -> None:
    """Move past `to`: the gaps below it are missed from now on."""
    ts = now()
    for gap in gaps:
        if at.last_id < gap < to:
            at.missing.setdefault(str(gap), ts)
    at.last_id = to
    while len(at.missing) > MAX_MISSING:
        del at.missing[min(at.missing, key=int)]


def _gave_up(db: Session, event: AuditRecord, attempts: int, error: str) -> None:
    log.warning("security webhook: gave up on event %s after %s attempts", event.id, attempts)
    record(
        db,
        AuditEvent.WEBHOOK_GAVE_UP,
        user_id=event.user_id,
        client_id=event.client_id,
        event_id=event.id,
        event_type=event.event,
        attempts=attempts,
        reason=error[:200],
    )


def deliver_all(webhook: Webhook, rounds: int = 100) -> None:
    """Deliver until nothing is left or a retry waits (for tests and commands; servers deliver
    from their worker's webhook thread)."""
    for _ in range(rounds):
        if not (webhook.due() and webhook.deliver()):
            return
