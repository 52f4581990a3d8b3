"""The audit trail's hash chain: every row gets the next sequence number and an HMAC-SHA256
over its canonical content and the previous row's MAC, as its transaction commits.

Sealing happens in a Session hook, so every way of writing an `AuditRecord` (a request, the
worker, the CLI) joins the chain, in the transaction that writes the row: no extra transaction,
and a rolled-back row takes no number. Appends are serialised by the database's write lock
(SQLite's, which a write transaction holds from BEGIN IMMEDIATE; a transaction-scoped advisory
lock on PostgreSQL, taken at commit after everything else is flushed, so no other lock is
taken while it is held and it cannot deadlock).

A session factory says which key seals its rows: `session.info[CHAIN_KEY]`, a callable
returning the key (idp.audit.chain.install). A session that writes an audit row without one
fails at commit, loudly: an unsealed row would read as tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import delete, event, func, inspect, select, text
from sqlalchemy.orm import Session, SessionTransaction

from idp.store.audit import AuditRecord
from idp.store.base import now

log = logging.getLogger("idp.audit.chain")

# session.info keys: the sealing key's provider, and (while a KEK is replaced) the next key.
CHAIN_KEY = "idp.audit_chain_key"
NEXT_CHAIN_KEY = "idp.audit_chain_next_key"
_PENDING = "idp.audit_pending"
_HEAD = "idp.audit_head"

# The event of a checkpoint row (idp.audit.events.AuditEvent.AUDIT_CHECKPOINT, the same).
CHECKPOINT = "audit.checkpoint"
# Why a checkpoint was written: rows up to `through_seq` were pruned, or were sealed under the
# key-encryption key that `idp keys rewrap` replaced.
RETENTION = "retention"
REKEY = "rekey"
# The MAC before the first row.
GENESIS = "0" * 64
# Any fixed number: the advisory lock that orders chain appends on PostgreSQL.
_LOCK_ID = 0x1D9A0D17

KeyProvider = Callable[[], bytes]


class ChainKeyMissing(RuntimeError):
    """An audit row was written through a session factory with no chain key installed."""


@dataclass(frozen=True)
class Head:
    seq: int
    mac: str


def canonical(row: AuditRecord) -> bytes:
    """What a row's MAC covers: every column but the row id (which PostgreSQL assigns at
    insert, before the row has its place in the chain) and the MAC itself."""
    return json.dumps(
        [row.seq, row.at, row.event, row.user_id, row.client_id, row.ip, row.actor, row.detail],
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def mac_of(key: bytes, previous: str, row: AuditRecord) -> str:
    return hmac.new(key, previous.encode() + b"\n" + canonical(row), hashlib.sha256).hexdigest()


def lock_chain(db: Session) -> None:
    """Wait for this transaction's turn to append (held until it ends). On SQLite a write
    transaction already holds the database's one write lock."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})


def head(db: Session) -> Head | None:
    row = db.execute(
        select(AuditRecord.seq, AuditRecord.mac)
        .where(AuditRecord.seq.is_not(None))
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    seq, mac = row
    return Head(seq or 0, mac or "")


def seal(rows: Iterable[AuditRecord], top: Head | None, key: bytes, next_key: bytes | None) -> Head:
    """Give each row its place after `top` and its MAC. A rekey checkpoint records where the
    old key's part of the chain ends, and it and every later row are sealed under `next_key`."""
    seq, previous = (0, GENESIS) if top is None else (top.seq, top.mac)
    for row in rows:
        detail = dict(row.detail or {})
        if (
            row.event == CHECKPOINT
            and detail.get("reason") == REKEY
            and "through_seq" not in detail
        ):
            if next_key is None:
                raise ChainKeyMissing("a rekey checkpoint needs the next chain key")
            detail.update(through_seq=seq, through_mac=previous)
            key, next_key = next_key, None
        seq += 1
        row.seq, row.detail = seq, detail
        row.mac = previous = mac_of(key, previous, row)
    return Head(seq, previous)


# --- the Session hooks ---------------------------------------------------------------------------


@event.listens_for(Session, "after_attach")
def _on_attach(session: Session, instance: object) -> None:
    # New rows only: a row read back (one slipped in around the chain, say) is never sealed.
    if not isinstance(instance, AuditRecord) or instance.seq is not None:
        return
    if inspect(instance).key is None:
        session.info.setdefault(_PENDING, []).append(instance)


@event.listens_for(Session, "before_commit")
def _on_commit(session: Session) -> None:
    # Fired for the outer transaction and for each savepoint released on the way, in an order
    # that depends on how the commit was asked for: rows are sealed at the first, under a lock
    # held to the end of the transaction, and later ones continue from them.
    # Rows of a rolled-back savepoint were expunged, and a row is sealed once.
    pending = dict.fromkeys(session.info.pop(_PENDING, []))
    rows = [r for r in pending if r in session and r.seq is None]
    if not rows:
        return
    key = _key_of(session)
    next_key: bytes | None = session.info.pop(NEXT_CHAIN_KEY, None)
    with session.no_autoflush:
        # Rows not yet inserted wait outside the session while everything else is flushed:
        # they are then inserted once, already sealed, instead of inserted and updated.
        unflushed = [r for r in rows if r in session.new]
        for r in unflushed:
            session.expunge(r)
        session.flush()
        lock_chain(session)
        top = seal(rows, head(session), key, next_key)
        session.add_all(unflushed)
    session.info[_HEAD] = top


@event.listens_for(Session, "after_commit")
def _on_committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint: the head is logged when the transaction commits
    top: Head | None = session.info.pop(_HEAD, None)
    if top is not None:
        # The head in the log: rows cut off the end of the table are still evident (verify
        # --head checks the trail against the newest line).
        log.info("audit.head", extra={"fields": {"seq": top.seq, "mac": top.mac}})


@event.listens_for(Session, "after_soft_rollback")
def _on_rollback(session: Session, previous: SessionTransaction) -> None:
    session.info.pop(_HEAD, None)  # what was sealed may be undone: the next append logs one


@event.listens_for(Session, "after_transaction_end")
def _on_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_HEAD, None)


# --- retention -----------------------------------------------------------------------------------


def prune_before(db: Session, cutoff: int, batch: int) -> int:
    """Delete up to `batch` of the oldest rows, in chain order, while they are older than
    `cutoff`, and append a checkpoint that names the last one deleted: verification starts
    there. Returns how many rows went."""
    lock_chain(db)  # a prune and an append never interleave
    oldest = db.execute(
        select(AuditRecord.seq, AuditRecord.at)
        .where(AuditRecord.seq.is_not(None))
        .order_by(AuditRecord.seq)
        .limit(batch)
    ).all()
    last = None
    for seq, at in oldest:
        if at >= cutoff:
            break
        last = seq
    if last is None:
        return 0
    gone = db.execute(
        delete(AuditRecord)
        .where(AuditRecord.seq <= last)
        .returning(AuditRecord.seq, AuditRecord.mac),
        execution_options={"synchronize_session": False},
    ).all()
    if not gone:
        return 0
    through_seq, through_mac = max(gone)
    db.add(
        AuditRecord(
            at=now(),
            event=CHECKPOINT,
            detail={
                "reason": RETENTION,
                "through_seq": through_seq,
                "through_mac": through_mac,
                "pruned": len(gone),
            },
        )
    )
    return len(gone)


# --- reads for verification ----------------------------------------------------------------------


def checkpoints(db: Session, limit: int = 50) -> list[AuditRecord]:
    """The newest checkpoint rows, newest first."""
    return list(
        db.scalars(
            select(AuditRecord)
            .where(AuditRecord.event == CHECKPOINT, AuditRecord.seq.is_not(None))
            .order_by(AuditRecord.seq.desc())
            .limit(limit)
        )
    )


def rows_from(db: Session, seq: int, limit: int) -> list[AuditRecord]:
    """Up to `limit` chained rows from `seq` on, in chain order."""
    return list(
        db.scalars(
            select(AuditRecord).where(AuditRecord.seq >= seq).order_by(AuditRecord.seq).limit(limit)
        )
    )


def unchained(db: Session, limit: int = 1) -> list[AuditRecord]:
    """Rows that are not in the chain, oldest first: none exist unless written around it."""
    return list(
        db.scalars(
            select(AuditRecord)
            .where(AuditRecord.seq.is_(None))
            .order_by(AuditRecord.id)
            .limit(limit)
        )
    )


def count_before(db: Session, seq: int) -> int:
    return db.scalar(select(func.count()).where(AuditRecord.seq < seq)) or 0


def row_at(db: Session, seq: int) -> AuditRecord | None:
    return db.scalar(select(AuditRecord).where(AuditRecord.seq == seq))


# --- rows from before the chain ------------------------------------------------------------------


def seal_legacy(db: Session, batch: int = 1000) -> int:
    """Seal the rows written before the chain existed (migration 0018), in id order, once:
    only while no row is chained yet, so a row slipped in later is never legitimised."""
    lock_chain(db)
    if head(db) is not None:
        return 0
    total = 0
    after = 0
    top: Head | None = None
    while True:
        rows = list(
            db.scalars(
                select(AuditRecord)
                .where(AuditRecord.seq.is_(None), AuditRecord.id > after)
                .order_by(AuditRecord.id)
                .limit(batch)
            )
        )
        if not rows:
            break
        top = seal(rows, top, _key_of(db), None)
        db.flush()
        after = rows[-1].id
        total += len(rows)
    if top is not None:
        db.info[_HEAD] = top
    return total


def _key_of(db: Session) -> bytes:
    provider: KeyProvider | None = db.info.get(CHAIN_KEY)
    if provider is None:
        raise ChainKeyMissing("no audit chain key on this session factory (idp.audit.chain)")
    return provider()
