"""Throttled guessing without account lockout: which buckets an attempt draws on, and the
decisions (store.throttle holds the counters, one statement per decision).

A sign-in attempt (a password, later a second factor) reserves a slot in each of its buckets
before anything is hashed; it is refused, with the seconds to wait, when one has none:
- unknown devices: the account from this address, the address, and the account from anywhere
  (credential stuffing from many addresses shares that one stricter budget);
- a known device (OWASP's device cookie: this browser signed in to this account before): its
  own bucket only, so an attack from elsewhere can neither lock the real user out nor use the
  address budget of the network the user shares; the cap stops a stolen cookie guessing freely.

Accounts are keyed on the identifier as submitted, whether or not it exists: the answers are
the same either way, so throttling reveals no account.

Client authentication is throttled on the failure path only (the client_credentials hot path
stays one read): each failed authentication of a client from an address is counted, and once
the bucket is used up a failure is answered 429 instead of 401. A correct credential is never
refused, so guessing from the real client's network cannot lock the client out; client secrets
are 256 random bits, so what the throttle takes away is the attacker's rate, not a real risk of
a hit.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.settings import Settings
from idp.store import throttle as store
from idp.store.base import now
from idp.store.throttle import Backoff, Bucket
from idp.store.users import normalize_email


class Throttled(Exception):
    """No attempt now: wait `retry_after` seconds (RFC 6585 §4, Retry-After). `busy` when the
    budget is not blocked but every slot is taken by attempts still being judged: a moment's
    wait is enough."""

    def __init__(self, retry_after: int, busy: bool = False) -> None:
        super().__init__(f"throttled for {retry_after} s")
        self.retry_after = retry_after
        self.busy = busy


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def account_key(identifier: str) -> str:
    """The account part of a bucket: the identifier as submitted, normalised as sign-in does."""
    return _digest("account", normalize_email(identifier))


def network(ip: str | None) -> str:
    """The address a budget belongs to: an IPv6 host's whole /64 (one subscriber's prefix, which
    an attacker holds whole), an IPv4 address as it is."""
    if not ip:
        return "-"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def backoff(settings: Settings) -> Backoff:
    return Backoff(
        settings.throttle_backoff_seconds,
        settings.throttle_max_backoff_seconds,
        settings.throttle_window_seconds,
    )


@dataclass(frozen=True)
class Budget:
    """One bucket an attempt draws on, and what it is (for the audit trail)."""

    kind: str  # "device", "account+address", "address" or "account"
    bucket: Bucket

    @property
    def personal(self) -> bool:
        """Whether a success starts it afresh: it belongs to this account (from one place)."""
        return self.kind in ("device", "account+address")


@dataclass(frozen=True)
class Attempt:
    """The budgets one sign-in attempt draws on."""

    budgets: tuple[Budget, ...]


def _budget(kind: str, account: str | None, limit: int, *parts: str) -> Budget:
    return Budget(kind, Bucket(_digest(kind, *parts), account, limit))


def sign_in_attempt(
    settings: Settings, identifier: str, ip: str | None, device: str | None
) -> Attempt:
    """The budgets of an attempt to sign in as `identifier` from `ip`; `device` is the id of a
    device cookie this account signed in with before (None: an unknown device)."""
    account = account_key(identifier)
    if device is not None:
        budgets: tuple[Budget, ...] = (
            _budget("device", account, settings.throttle_device_limit, device, account),
        )
    else:
        where = network(ip)
        budgets = (
            _budget(
                "account+address", account, settings.throttle_account_address_limit, account, where
            ),
            _budget("address", None, settings.throttle_address_limit, where),
            _budget("account", account, settings.throttle_account_limit, account),
        )
    # One order for every worker: two attempts never wait on each other's rows in a cycle.
    return Attempt(tuple(sorted(budgets, key=lambda b: b.bucket.key)))


def reserve(db: Session, settings: Settings, attempt: Attempt) -> None:
    """Take a slot in each bucket, or raise Throttled after giving back the slots already
    taken (so the caller's transaction may commit either way)."""
    ts, rules = now(), backoff(settings)
    taken: list[Budget] = []
    for budget in attempt.budgets:
        if not store.reserve(db, budget.bucket, ts, rules):
            for earlier in taken:
                store.release(db, earlier.bucket.key)
            wait = store.retry_after(db, budget.bucket.key, ts)
            raise Throttled(wait or 1, busy=not wait)
        taken.append(budget)


def failed(
    db: Session, settings: Settings, attempt: Attempt, ip: str | None, user_id: str | None
) -> None:
    """The attempt was judged and failed: its slots stay taken; a bucket it used up is blocked,
    and each block that starts is audited (one event per strike, so the trail grows with the
    doubling delays, not with the attacker's rate)."""
    ts, rules = now(), backoff(settings)
    for budget in attempt.budgets:
        strikes = store.fail(db, budget.bucket, ts, rules)
        if strikes is not None:
            record(
                db,
                AuditEvent.THROTTLE_STARTED,
                ip=ip,
                user_id=user_id if budget.kind != "address" else None,
                budget=budget.kind,
                strikes=strikes,
            )
    _watch_spraying(db, settings, attempt, ip, ts)


def _watch_spraying(
    db: Session, settings: Settings, attempt: Attempt, ip: str | None, ts: int
) -> None:
    """Password spraying: failures for many accounts from one network, few for each, stay
    under every per-account budget. Once IDP_LOGIN_SPRAY_ACCOUNTS accounts have failed from
    one network in one window of IDP_LOGIN_SPRAY_WINDOW_SECONDS, `login.spray` is recorded,
    once per window; a failure of an account already seen costs no write."""
    threshold, length = settings.login_spray_accounts, settings.login_spray_window_seconds
    account = next((b.bucket.account for b in attempt.budgets if b.bucket.account), None)
    if not threshold or account is None:
        return
    where = network(ip)
    key, window = _digest("spray", where), ts - ts % length
    expires = window + 2 * length
    if not store.mark_spray(db, key, window, account, expires):
        return
    accounts = store.spray_accounts(db, key, window)
    # The REPORTED row makes the event once per window, whichever worker sees the threshold.
    if accounts >= threshold and store.mark_spray(db, key, window, store.REPORTED, expires):
        record(
            db,
            AuditEvent.LOGIN_SPRAY,
            ip=ip,
            network=where,
            accounts=accounts,
            window_start=window,
            window_seconds=length,
        )


def succeeded(db: Session, attempt: Attempt) -> None:
    """The attempt proved the account: its personal budgets start afresh; the address's and
    the account-wide budget only get their slot back (others may be guessing there)."""
    for budget in attempt.budgets:
        if budget.personal:
            store.forget(db, budget.bucket.key)
        else:
            store.release(db, budget.bucket.key)


def not_judged(db: Session, attempt: Attempt) -> None:
    """The attempt was never judged (the hashing queue was full): give its slots back."""
    for budget in attempt.budgets:
        store.release(db, budget.bucket.key)


def unlock(db: Session, identifier: str, user_id: str | None, actor: str) -> int:
    """Clear every budget of an account (a lockout by strangers), audited; how many there were.
    The address budgets stay: they belong to the networks guessed from, not to the account."""
    cleared = store.forget_account(db, account_key(identifier))
    record(db, AuditEvent.THROTTLE_CLEARED, user_id=user_id, budgets=cleared, actor=actor)
    return cleared


# --- client authentication ------------------------------------------------------------------


def client_failed(
    db: Session, settings: Settings, client_id: str | None, ip: str | None
) -> int | None:
    """Count a failed client authentication; the seconds to wait when the client's budget at
    this address is used up (answer 429), else None (answer 401 as usual)."""
    ts, rules = now(), backoff(settings)
    bucket = Bucket(
        _digest("client", client_id or "", network(ip)), None, settings.throttle_client_limit
    )
    if not store.reserve(db, bucket, ts, rules):
        return store.retry_after(db, bucket.key, ts) or 1
    store.fail(db, bucket, ts, rules)
    return None
