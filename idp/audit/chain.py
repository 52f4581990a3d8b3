"""The audit trail's tamper evidence: which key seals the chain, and verifying it.

Each row carries an HMAC-SHA256 over its content and the previous row's MAC (sealed as its
transaction commits, idp.store.audit_chain) under a key derived from the key-encryption key.
Someone who can edit the database but holds no KEK cannot recompute the chain, so an edited,
deleted or inserted row breaks it; rows cut off its end are caught against the head that every
append writes to the log (`verify --head`). Pruning appends a checkpoint that names the last
row it deleted, and verification starts from the newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp.security.secrets import derive_key
from idp.settings import Settings
from idp.store import audit_chain as store
from idp.store.audit import AuditRecord
from idp.store.base import now

PAGE = 1000


def chain_key(kek: bytes) -> bytes:
    return derive_key(kek, "idp audit chain v1")


def install(factory: sessionmaker[Session], key: Callable[[], bytes]) -> None:
    """Seal the audit rows of this factory's sessions under `key()` (called at each commit
    that writes one, so a command that writes none need not open the KEK)."""
    factory.configure(info={store.CHAIN_KEY: key})


def key_from_settings(settings: Settings) -> Callable[[], bytes]:
    """The chain key of the configured KEK, loaded on first use."""
    from idp.keys.kek import load_key_encryption_key

    @cache
    def key() -> bytes:
        return chain_key(load_key_encryption_key(settings))

    return key


def rekey(db: Session, next_key: bytes) -> None:
    """Seal the rest of this transaction's rows under `next_key`, after a checkpoint that
    names where the current key's part of the chain ends (a KEK replaced by `idp keys
    rewrap`). Verification under the new KEK starts there."""
    db.info[store.NEXT_CHAIN_KEY] = next_key
    db.add(AuditRecord(at=now(), event=store.CHECKPOINT, detail={"reason": store.REKEY}))


def write_sessions(engine: Engine, settings: Settings) -> sessionmaker[Session]:
    """A read-write session factory for a command or a test: its audit rows join the chain
    under the configured KEK's key."""
    from idp.db.engine import make_sessionmaker

    factory = make_sessionmaker(engine)
    install(factory, key_from_settings(settings))
    return factory


def seal_legacy(factory: sessionmaker[Session]) -> int:
    """Chain the rows written before the chain existed, once (at a server's start)."""
    with factory() as db:
        if not store.unchained(db):
            return 0  # the usual case: a read, and no write lock taken
    with factory.begin() as db:
        return store.seal_legacy(db)


@dataclass
class Verdict:
    """What `verify` found. `broken` names the first broken row; None when the trail is
    intact from `first_seq` to `last_seq`."""

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_mac: str | None = None
    # Rows before the starting checkpoint: pruned ones are gone, and rows sealed under a
    # KEK that `idp keys rewrap` replaced can no longer be checked.
    not_checked: int = 0
    broken: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify(db: Session, key: bytes, expect_head: store.Head | None = None) -> Verdict:
    """Walk the chain from its newest checkpoint (or its first row) to its end."""
    verdict = Verdict()
    start, previous = _start(db, verdict)
    if verdict.broken:
        return verdict
    verdict.not_checked = store.count_before(db, start)
    expected = start
    while True:
        page = store.rows_from(db, expected, PAGE)
        for row in page:
            if row.seq != expected:
                verdict.broken = (
                    f"seq {expected} is missing before row id {row.id} (seq {row.seq}): "
                    "a row was deleted"
                )
                return verdict
            if store.mac_of(key, previous, row) != row.mac:
                verdict.broken = (
                    f"row id {row.id} (seq {row.seq}, {row.event}) does not match its MAC: "
                    "it was edited or inserted"
                )
                return verdict
            previous = row.mac or ""
            verdict.checked += 1
            verdict.first_seq = verdict.first_seq or row.seq
            verdict.last_seq, verdict.head_mac = row.seq, row.mac
            expected += 1
        if len(page) < PAGE:
            break
    outside = store.unchained(db)
    if outside:
        row = outside[0]
        verdict.broken = f"row id {row.id} ({row.event}) is outside the chain: it was inserted"
        return verdict
    if expect_head is not None:
        _check_head(db, verdict, expect_head, start)
    return verdict


def _start(db: Session, verdict: Verdict) -> tuple[int, str]:
    """Where to start: after the checkpoint that reaches furthest (it is itself checked on
    the way, so a forged one breaks the walk), else at the first row."""
    best: tuple[int, str] | None = None
    for row in store.checkpoints(db):
        through = row.detail.get("through_seq")
        mac = row.detail.get("through_mac")
        if not isinstance(through, int) or not isinstance(mac, str) or through >= (row.seq or 0):
            verdict.broken = f"checkpoint row id {row.id} (seq {row.seq}) is malformed"
            return 0, ""
        if best is None or through > best[0]:
            best = (through, mac)
    if best is None:
        return 1, store.GENESIS
    return best[0] + 1, best[1]


def _check_head(db: Session, verdict: Verdict, expect: store.Head, start: int) -> None:
    if expect.seq < start:
        verdict.notes.append(f"the head seq {expect.seq} is before the starting checkpoint")
        return
    row = store.row_at(db, expect.seq)
    if row is None:
        verdict.broken = (
            f"the trail ends at seq {verdict.last_seq or start - 1}, before the logged head "
            f"seq {expect.seq}: rows were deleted from its end"
        )
    elif row.mac != expect.mac:
        verdict.broken = f"row id {row.id} (seq {row.seq}) is not the logged head: it was replaced"
