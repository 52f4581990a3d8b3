"""The background work of each server process: key maintenance, pruning, the delivery of
back-channel logout tokens, and the security webhook."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from idp.audit.events import close_minutes, minutes_to_close
from idp.audit.webhook import Webhook
from idp.protocol.backchannel import Claimed, claim_due, send
from idp.runtime import Runtime
from idp.store import expiry
from idp.store.base import now

log = logging.getLogger("idp.worker")

BATCH = 1000
DELIVERY_THREADS = 4
DELIVERY_RETRY_SECONDS = 2
# How often the webhook thread looks for new security events (one read when there are none).
WEBHOOK_POLL_SECONDS = 1.0


def prune(
    factory: sessionmaker[Session],
    batch: int = BATCH,
    idle_timeout: int | None = None,
    audit_retention_days: int = expiry.AUDIT_RETENTION_DAYS,
) -> dict[str, int]:
    """Delete expired rows table by table, `batch` rows per transaction; returns the counts.
    Sessions idle longer than `idle_timeout` count as expired; every session pruned queues its
    back-channel logout tokens.

    Safe while servers run: each batch is its own short transaction and deletes only rows that
    can no longer be used (expired, or used and past any retry window)."""
    counts: dict[str, int] = {"failure minutes audited": close_failure_minutes(factory, batch)}
    ts = now()
    for name in expiry.TABLES:
        total = 0
        while True:
            with factory.begin() as db:
                deleted = expiry.delete_batch(
                    db, name, ts, batch, idle_timeout, audit_retention_days
                )
            total += deleted
            if deleted < batch:
                break
        counts[name] = total
    return counts


def close_failure_minutes(
    factory: sessionmaker[Session],
    batch: int = BATCH,
    reads: sessionmaker[Session] | None = None,
) -> int:
    """Audit the failure tallies of every closed minute, `batch` per transaction. Given a
    read-only factory, it looks first, so a quiet server takes no write lock for it."""
    if reads is not None:
        with reads.begin() as db:
            if not minutes_to_close(db):
                return 0
    total = 0
    while True:
        with factory.begin() as db:
            closed = close_minutes(db, limit=batch)
        total += closed
        if closed < batch:
            return total


class Worker:
    """A server process's background work, on two threads of its own and a delivery pool.

    The maintenance thread runs the key schedule and picks up key changes every
    IDP_KEY_REFRESH_SECONDS (so requests never wait for key maintenance or read keys from the
    database), audits the failure tallies of closed minutes as often, and prunes every
    IDP_PRUNE_INTERVAL_SECONDS. The delivery thread claims due
    back-channel logout deliveries and sends them from a bounded pool: an attempt has an overall
    deadline, and a relying party that never answers holds one pool thread for that long, never
    the maintenance thread nor the other relying parties' deliveries beyond the pool's size.

    With IDP_SECURITY_WEBHOOK_URL set, a third thread sends the security events
    (idp.audit.webhook): a receiver that hangs holds that thread for one deadline at a time,
    never the other two.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="idp-delivery")
        self._slots = threading.Semaphore(DELIVERY_THREADS)
        self._threads = [
            threading.Thread(target=self._maintain, name="idp-maintenance", daemon=True),
            threading.Thread(target=self._deliver, name="idp-deliveries", daemon=True),
        ]
        self._webhook = Webhook.from_runtime(runtime)
        if self._webhook is not None:
            self._threads.append(
                threading.Thread(target=self._notify, name="idp-webhook", daemon=True)
            )

    def start(self) -> None:
        if self._webhook is not None:
            self._webhook.begin()  # events from this start on are sent, none before
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for thread in self._threads:
            thread.join(timeout=10)
        # In-flight deliveries end by their own deadline; their claims lapse if cut short.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def kick(self) -> None:
        """Send what is due now (after a logout) instead of at the next retry tick."""
        self._kick.set()

    def _maintain(self) -> None:
        settings = self._runtime.settings
        prune_every = settings.prune_interval_seconds
        next_prune = time.monotonic() + prune_every
        while not self._stop.wait(settings.key_refresh_seconds):
            try:
                for action in self._runtime.keys.tick():
                    log.info("signing keys: %s", action)
            except Exception:  # the next tick tries again; never let the thread die
                log.exception("signing key maintenance failed")
            try:
                close_failure_minutes(self._runtime.sessions, reads=self._runtime.reads)
            except Exception:
                log.exception("auditing the failure tallies failed")
            if prune_every and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + prune_every
                try:
                    pruned = prune(
                        self._runtime.sessions,
                        idle_timeout=settings.session_idle_timeout_seconds,
                        audit_retention_days=settings.audit_retention_days,
                    )
                    log.info("pruned: %s", pruned)
                except Exception:
                    log.exception("pruning failed")

    def _deliver(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(DELIVERY_RETRY_SECONDS)
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                self._dispatch()
            except Exception:
                log.exception("back-channel logout delivery failed")

    def _notify(self) -> None:
        webhook = self._webhook
        assert webhook is not None
        stopping = self._stop.is_set
        try:
            webhook.check()
        except Exception:
            log.exception("checking the security webhook's URL failed")
        while not self._stop.wait(WEBHOOK_POLL_SECONDS):
            try:
                while not stopping() and webhook.due() and webhook.deliver(stopping):
                    pass  # a full batch went: more may wait
            except Exception:  # the next poll tries again; never let the thread die
                log.exception("security webhook delivery failed")

    def _dispatch(self) -> None:
        free = 0
        while self._slots.acquire(blocking=False):
            free += 1
        claimed = claim_due(self._runtime, free) if free else []
        for _ in range(free - len(claimed)):
            self._slots.release()
        for delivery in claimed:
            self._pool.submit(self._send, delivery)

    def _send(self, delivery: Claimed) -> None:
        try:
            send(self._runtime, delivery)
        except Exception:
            log.exception("back-channel logout delivery failed")
        finally:
            self._slots.release()
            self._kick.set()  # a slot is free: more may be waiting
