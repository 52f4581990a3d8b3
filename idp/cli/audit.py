"""`idp audit export|tail|verify`: the audit trail as JSON lines, one event per line, for a
SIEM; and the check of its hash chain (idp.audit.chain).

Each line is one JSON object with exactly the keys `id`, `time` (RFC 3339, UTC, `Z`), `event`,
`actor`, `subject` ({"user_id", "client_id"}), `client`, `address` and `details`. JSON escapes
every control character, so no value (a newline in a user agent, say) can start a line of its
own. Rows are read in keyset pages by id, so a large trail never sits in memory.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

from sqlalchemy.orm import Session

from idp.audit.export import as_json_line
from idp.cli.base import CommandError, emit
from idp.settings import Settings
from idp.store.audit import AuditQuery, AuditRecord
from idp.store.audit_chain import Head

# Rows per query; tests make it small to cross page boundaries.
PAGE_SIZE = 1000
# How long `tail` looks for an id it skipped over (a transaction still open when a later one
# committed), and for how many such ids at most.
LATE_COMMIT_SECONDS = 120.0
MAX_MISSING = 1000

_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

TALLY_NOTE = (
    "Failures any stranger can cause (login.failed, client_auth.failed, csrf.rejected, "
    "webauthn.failed) are counted per minute and join the trail as one event with its count "
    "once the minute has closed: those of the current minute are not shown yet."
)
TIME_HELP = (
    "an RFC 3339 time with its zone (2026-12-01T10:00:00Z), Unix seconds, or a duration ago "
    "(30m, 24h, 7d)"
)


def parse_time(text: str, now: int, option: str) -> int:
    """TIME as Unix seconds: RFC 3339 / ISO 8601 with a zone or Z, Unix seconds, or `30m`,
    `24h`, `7d` (that long before `now`). A fraction of a second rounds up, so `--since` keeps
    and `--until` drops the events of the second it names."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return now - int(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: {text!r} is not a time: give {TIME_HELP}") from None
    if parsed.tzinfo is None:
        raise CommandError(
            f"{option}: {text!r} has no time zone: add Z or an offset such as +02:00"
        )
    return math.ceil(parsed.timestamp())


def query_of(args: argparse.Namespace, now: int) -> AuditQuery:
    """The filters of the command line, checked before anything is read: an unknown event (the
    list is closed: idp.audit.events.AuditEvent) or a bad time is a CommandError."""
    from idp.admin.audit import EVENT_NAMES

    events: list[str] | None = args.event or None
    for event in events or []:
        if event not in EVENT_NAMES:
            raise CommandError(
                f"--event: {event!r} is not an audit event (see idp.audit.events.AuditEvent)"
            )
    since = parse_time(args.since, now, "--since") if args.since is not None else None
    until = getattr(args, "until", None)
    return AuditQuery(
        events=events,
        since=since,
        until=parse_time(until, now, "--until") if until is not None else None,
    )


@contextmanager
def reader(settings: Settings) -> Iterator[Callable[[], Session]]:
    """Short read-only transactions on one engine: one per page, none held while writing out
    or sleeping."""
    from idp.db.engine import make_engine, make_sessionmaker, read_only

    engine = make_engine(settings)
    try:
        yield make_sessionmaker(read_only(engine))
    finally:
        engine.dispose()


def write(rows: Iterable[AuditRecord]) -> None:
    """The rows as lines on stdout, flushed: a SIEM reading a pipe gets each batch at once."""
    text = "".join(as_json_line(r) + "\n" for r in rows)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def write_after(
    sessions: Callable[[], Session],
    query: AuditQuery,
    after_id: int,
    up_to_id: int,
    only: Container[int] | None = None,
) -> None:
    """Every event matching the query with an id in (after_id, up_to_id] (and in `only`, when
    given), oldest first, a page at a time; stdout is flushed after each page."""
    from idp.store import audit

    while True:
        with sessions() as db:
            rows = audit.search_after(db, query, after_id, PAGE_SIZE, up_to_id)
        write(r for r in rows if only is None or r.id in only)
        if len(rows) < PAGE_SIZE:
            return
        after_id = rows[-1].id


def cmd_audit_export(settings: Settings, args: argparse.Namespace) -> None:
    from idp.store import audit
    from idp.store.base import now

    query = query_of(args, now())
    with reader(settings) as sessions:
        # The trail as it stands now: events written while exporting wait for the next run
        # (or `idp audit tail`), so an export of a busy trail ends.
        with sessions() as db:
            up_to = audit.last_id(db)
        write_after(sessions, query, 0, up_to)


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> None:
    from sqlalchemy.orm import Session as OrmSession

    from idp.audit import chain
    from idp.db.engine import make_engine, read_only

    expect = _head_of(args.head) if args.head else None
    key = chain.key_from_settings(settings)()
    engine = make_engine(settings)
    try:
        reads = read_only(engine)
        if engine.dialect.name == "postgresql":
            # One snapshot for the whole walk: a prune committing meanwhile is not a gap.
            reads = reads.execution_options(isolation_level="REPEATABLE READ")
        with OrmSession(reads) as db, db.begin():
            verdict = chain.verify(db, key, expect)
    finally:
        engine.dispose()
    if not verdict.intact:
        raise CommandError(f"the audit trail is broken: {verdict.broken}")
    text = (
        f"intact: {verdict.checked} rows checked"
        + (f" (seq {verdict.first_seq} to {verdict.last_seq})" if verdict.checked else "")
        + (f"; head {verdict.last_seq}:{verdict.head_mac}" if verdict.checked else "")
        + (
            f"; {verdict.not_checked} older rows before the starting checkpoint not checked"
            if verdict.not_checked
            else ""
        )
        + "".join(f"; {note}" for note in verdict.notes)
    )
    data = {
        "intact": True,
        "checked": verdict.checked,
        "first_seq": verdict.first_seq,
        "last_seq": verdict.last_seq,
        "head_mac": verdict.head_mac,
        "not_checked": verdict.not_checked,
        "notes": verdict.notes,
    }
    emit(data, args.json, text)


def _head_of(value: str) -> Head:
    seq, _, mac = value.partition(":")
    if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", mac):
        raise CommandError("--head must be SEQ:MAC, as the newest audit.head log line gives them")
    return Head(int(seq), mac)


class _Stopped(Exception):
    """SIGTERM, raised in the main thread: tail ends as Ctrl-C ends it."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def cmd_audit_tail(settings: Settings, args: argparse.Namespace) -> None:
    from idp.store.base import now

    if args.interval <= 0:
        raise CommandError("--interval must be more than 0 seconds")
    if args.lines < 0:
        raise CommandError("--lines must be 0 or more")
    if args.max_seconds is not None and args.max_seconds < 0:
        raise CommandError("--max-seconds must be 0 or more")
    query = query_of(args, now())
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        follow(settings, query, args.lines, args.interval, args.max_seconds)
    except (KeyboardInterrupt, _Stopped):
        pass  # interrupted: the lines so far are out, exit 0 quietly
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def follow(
    settings: Settings, query: AuditQuery, lines: int, interval: float, max_seconds: float | None
) -> None:
    """The last `lines` events matching the query, then each new one, polling by id every
    `interval` seconds, until interrupted or `max_seconds` have passed.

    On PostgreSQL an id is taken when a row is inserted, not when it commits: a request's
    transaction can commit id 10 after another's 11 was shown. So the ids skipped over are
    looked for again at each poll, for LATE_COMMIT_SECONDS (a rolled-back insert leaves a gap
    for good), and shown when they appear: a line can come after one with a higher id."""
    from idp.store import audit

    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    missing: dict[int, float] = {}  # id skipped over -> when it was first missed
    with reader(settings) as sessions:
        with sessions() as db:
            last = audit.last_id(db)
            newest = audit.search(db, query, last + 1, lines) if lines else []
        write(reversed(newest))
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            time.sleep(interval if left is None else min(interval, left))
            with sessions() as db:
                top = audit.last_id(db)
                arrived = set(audit.ids_among(db, list(missing)))
                late = audit.search_among(db, query, arrived)
                present = set(audit.ids_between(db, last, top)) if top > last else set()
            write(late)
            for found in arrived:
                del missing[found]
            clock = time.monotonic()
            for gone in [i for i, since in missing.items() if clock - since > LATE_COMMIT_SECONDS]:
                del missing[gone]
            if top > last:
                # Up to the newest id, matching or not: a rare --event is not looked for again
                # among the rows already passed. Only the ids seen committed above are shown
                # now: one committed since is still missing, and comes next time.
                gaps = [i for i in range(last + 1, top + 1) if i not in present]
                missing.update((i, clock) for i in gaps[-MAX_MISSING:])
                while len(missing) > MAX_MISSING:
                    del missing[min(missing)]
                write_after(sessions, query, last, top, only=present)
                last = top


def add_commands(sub: Any) -> None:
    from idp.cli.base import Parser

    audit = sub.add_parser(
        "audit",
        help="export or follow the audit trail as JSON lines (for a SIEM)",
        description=(
            "The audit trail as JSON lines, oldest first, one event per line with the keys id, "
            "time, event, actor, subject, client, address and details. " + TALLY_NOTE
        ),
    )
    commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=Parser)

    export = commands.add_parser(
        "export",
        help="print the audit trail as JSON lines, oldest first",
        description="Print the audit trail as JSON lines, oldest first. " + TALLY_NOTE,
    )
    export.add_argument("--since", metavar="TIME", help=f"events at or after TIME: {TIME_HELP}")
    export.add_argument("--until", metavar="TIME", help="events before TIME (same forms)")
    export.add_argument(
        "--event", metavar="TYPE", action="append", help="only events of this type (repeatable)"
    )
    export.set_defaults(func=cmd_audit_export)

    tail = commands.add_parser(
        "tail",
        help="print the last events, then follow new ones until interrupted",
        description=(
            "Print the last --lines events as JSON lines, then each new one as it is committed, "
            "until Ctrl-C or SIGTERM (exit status 0). " + TALLY_NOTE
        ),
    )
    tail.add_argument(
        "--event", metavar="TYPE", action="append", help="only events of this type (repeatable)"
    )
    tail.add_argument("--since", metavar="TIME", help=f"events at or after TIME: {TIME_HELP}")
    tail.add_argument("--lines", type=int, default=10, metavar="N", help="events shown first")
    tail.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="seconds between polls"
    )
    tail.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: follow until interrupted)",
    )
    tail.set_defaults(func=cmd_audit_tail)

    verify = commands.add_parser(
        "verify",
        help="check the audit trail's hash chain (needs the key-encryption key)",
        description=(
            "Check every row's MAC and place in the chain, from the newest checkpoint on. Exit "
            "status 0 when intact; 1, naming the first broken row, when a row was edited, "
            "deleted or inserted. --head checks the end against the newest `audit.head` log "
            "line, so rows cut off the end are found too."
        ),
    )
    verify.add_argument(
        "--head", metavar="SEQ:MAC", help="the head from the newest audit.head log line"
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_audit_verify)
