"""Password spraying (issue 15, "Bursts of failed sign-ins across many accounts from one
address"): a few wrong passwords for each of many accounts stay under every per-account
budget, so the address is watched across accounts and the burst becomes the security event
login.spray, once per window, counted in the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from idp.audit.events import SECURITY_EVENTS, AuditEvent
from idp.authn import throttle
from idp.settings import Settings
from idp.store.expiry import delete_batch
from tests.authn.test_throttle import LIMITS, Clock, json_of, sign_in
from tests.conftest import make_settings, migrated_app
from tests.helpers import Harness
from tests.token_helpers import ISSUER, audit_events

SPRAY = {**LIMITS, "throttle_address_limit": 100, "login_spray_accounts": 4}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, **SPRAY)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(monkeypatch)
    clock.ts -= clock.ts % 600  # the start of a window
    return clock


def sprayed(idp: Harness, accounts: range, ip: str = "203.0.113.7") -> None:
    for i in accounts:
        assert sign_in(idp.http, email=f"user{i}@example.com", ip=ip).status_code == 400


def test_failures_across_many_accounts_from_one_address_are_one_event(
    idp: Harness, clock: Clock
) -> None:
    """The fourth account failing from one address records login.spray with the address, its
    network and the count; more accounts in the same window add no event."""
    sprayed(idp, range(3))
    assert audit_events(idp, "login.spray") == []
    sprayed(idp, range(3, 9))
    [event] = audit_events(idp, "login.spray")
    detail = json_of(event.detail)
    assert detail["accounts"] == 4 and detail["network"] == "203.0.113.7"
    assert detail["window_seconds"] == 600 and detail["window_start"] == clock.ts


def test_many_failures_of_one_account_are_not_spraying(idp: Harness, clock: Clock) -> None:
    """Guessing one account (the per-account budgets' business) is not a spray, however often."""
    idp.user()
    for _ in range(3):
        sign_in(idp.http)
    sign_in(idp.http, email="ALICE@example.com")  # the same account, as sign-in normalises it
    assert audit_events(idp, "login.spray") == []


def test_accounts_from_other_addresses_do_not_add_up(idp: Harness, clock: Clock) -> None:
    for i, ip in enumerate(("203.0.113.7", "203.0.113.8", "198.51.100.1", "192.0.2.1")):
        sprayed(idp, range(i, i + 1), ip=ip)
    assert audit_events(idp, "login.spray") == []


def test_an_ipv6_attacker_is_one_network(idp: Harness, clock: Clock) -> None:
    """Addresses of one IPv6 /64 (one subscriber's prefix) count as one address."""
    for i in range(4):
        sprayed(idp, range(i, i + 1), ip=f"2001:db8:1:2::{i + 1}")
    [event] = audit_events(idp, "login.spray")
    assert json_of(event.detail)["network"] == "2001:db8:1:2::/64"


def test_the_next_window_reports_again(idp: Harness, clock: Clock) -> None:
    """A spray that goes on is recorded once per window, not once for ever."""
    sprayed(idp, range(4))
    clock.ts += 600
    sprayed(idp, range(3))
    assert len(audit_events(idp, "login.spray")) == 1
    sprayed(idp, range(3, 4))
    assert len(audit_events(idp, "login.spray")) == 2


def test_the_watch_can_be_turned_off(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(database_url, tmp_path, **{**SPRAY, "login_spray_accounts": 0})
    Clock(monkeypatch)
    app = migrated_app(settings)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        h = Harness(app, http)
        sprayed(h, range(6))
        assert audit_events(h, "login.spray") == []


def test_the_marks_are_pruned(idp: Harness, clock: Clock) -> None:
    sprayed(idp, range(2))
    with idp.runtime.sessions.begin() as db:
        assert delete_batch(db, "sign-in spray marks", clock.ts + 1199, 100) == 0
    with idp.runtime.sessions.begin() as db:
        assert delete_batch(db, "sign-in spray marks", clock.ts + 1201, 100) == 2


def test_spraying_is_a_security_event() -> None:
    assert AuditEvent.LOGIN_SPRAY in SECURITY_EVENTS
    assert throttle.network("::ffff:192.0.2.1") == "192.0.2.1"
