"""The sign-in throttle (issue 11): failed password attempts per account and address, per
address and per account, counted in the database for every worker; exponential backoff; 429
with Retry-After (RFC 6585 §4) and no password hashed when throttled; known devices (OWASP
device cookies) exempt from the budgets strangers share; `idp users unlock`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from idp.authn import throttle
from idp.cli.main import main
from idp.settings import Settings
from idp.store.expiry import delete_batch
from tests.conftest import TEST_KEK, make_settings
from tests.helpers import PASSWORD, Harness, form_fields
from tests.token_helpers import ISSUER, audit_events, close_open_minutes, sql

WRONG = "not the password at all"
LIMITS = {
    "throttle_account_address_limit": 3,
    "throttle_address_limit": 8,
    "throttle_account_limit": 6,
    "throttle_device_limit": 4,
    "throttle_backoff_seconds": 30,
    "throttle_max_backoff_seconds": 100,
    # TestClient's peer is "testclient": trusted as the proxy, X-Forwarded-For names the client.
    "forwarded_allow_ips": "testclient",
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, **LIMITS)


class Clock:
    """The throttle's clock, moved by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ts = 1_900_000_000
        monkeypatch.setattr(throttle, "now", lambda: self.ts)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def hashes(idp: Harness) -> Iterator[list[str]]:
    """Every password check the server computes (the password it checked)."""
    passwords = idp.runtime.passwords
    checked: list[str] = []
    verify: Callable[..., bool] = passwords._verify

    def counting(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    passwords._verify = counting  # type: ignore[method-assign]
    yield checked
    passwords._verify = verify  # type: ignore[method-assign]


def json_of(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def sign_in(
    http: TestClient,
    email: str = "alice@example.com",
    password: str = WRONG,
    ip: str = "203.0.113.7",
) -> httpx.Response:
    headers = {"X-Forwarded-For": ip}
    fields = form_fields(http.get("/login", headers=headers).text)
    fields.update(email=email, password=password)
    return http.post("/login", data=fields, headers=headers)


def browser(app: FastAPI) -> TestClient:
    """Another browser (its own cookies); the app's lifespan is already running."""
    return TestClient(app, base_url=ISSUER, follow_redirects=False)


def test_failed_attempts_then_429_with_retry_after_and_no_hash(
    idp: Harness, clock: Clock, hashes: list[str]
) -> None:
    """RFC 6585 §4: past the budget of one account from one address the answer is 429 with
    Retry-After, a plain message, and no password is hashed, not even the right one."""
    idp.user()
    for _ in range(3):
        assert sign_in(idp.http).status_code == 400
    assert len(hashes) == 3
    for password in (WRONG, PASSWORD):
        refused = sign_in(idp.http, password=password)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert "Too many failed attempts. Wait 30 seconds" in refused.text
        assert 'role="alert"' in refused.text
    assert len(hashes) == 3  # the throttled attempts hashed nothing
    assert len(audit_events(idp, "throttle.started")) == 1
    # Another address still has its own budget for this account.
    assert sign_in(idp.http, password=PASSWORD, ip="198.51.100.1").status_code == 303


def test_backoff_doubles_and_one_attempt_per_block(idp: Harness, clock: Clock) -> None:
    """Each block after the first is twice as long (30, 60, 100 = the maximum), and after a
    block ends one attempt is judged before the next block."""
    idp.user()
    for _ in range(3):
        sign_in(idp.http)
    waits = []
    for _ in range(3):
        refused = sign_in(idp.http)
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        waits.append(wait)
        clock.ts += wait
        assert sign_in(idp.http).status_code == 400  # judged: the one attempt of this round
    assert waits == [30, 60, 100]
    assert sign_in(idp.http).status_code == 429
    clock.ts += 100
    assert sign_in(idp.http, password=PASSWORD).status_code == 303  # a success ends it
    assert sign_in(idp.http).status_code == 400


def test_an_unknown_account_is_throttled_the_same_way(idp: Harness, clock: Clock) -> None:
    """Counters are keyed on the identifier as submitted: an account that does not exist gets
    the same answers in the same order, so throttling reveals no account."""
    idp.user()
    answers = {}
    for email in ("alice@example.com", "nobody@example.com"):
        answers[email] = [
            (r.status_code, r.headers.get("retry-after"))
            for r in (sign_in(idp.http, email) for _ in range(5))
        ]
    assert answers["alice@example.com"] == answers["nobody@example.com"]
    assert answers["nobody@example.com"][-1] == (429, "30")


def test_the_address_budget_stops_stuffing_across_accounts(idp: Harness, clock: Clock) -> None:
    """Per address: one wrong guess each for many accounts from one address (credential
    stuffing) runs into the address's budget; another address is not affected."""
    statuses = [sign_in(idp.http, f"user{n}@example.com").status_code for n in range(10)]
    assert statuses == [400] * 8 + [429] * 2
    assert sign_in(idp.http, "user9@example.com", ip="198.51.100.2").status_code == 400


def test_an_attack_from_many_addresses_does_not_lock_out_a_known_device(
    idp: Harness, app: FastAPI, clock: Clock
) -> None:
    """OWASP device cookies: guesses from many addresses use up the account's budget for
    unknown devices, so a new browser is throttled, but the browser the user signed in with
    before still signs in."""
    idp.user()
    users_browser = browser(app)
    assert sign_in(users_browser, password=PASSWORD, ip="192.0.2.10").status_code == 303
    assert "idp_device" in "".join(users_browser.cookies.keys())
    attacker = browser(app)
    statuses = [sign_in(attacker, ip=f"198.51.100.{n}").status_code for n in range(1, 10)]
    assert statuses == [400] * 6 + [429] * 3  # the account-wide budget (6)
    assert sign_in(browser(app), password=PASSWORD, ip="192.0.2.10").status_code == 429
    again = sign_in(users_browser, password=PASSWORD, ip="192.0.2.10")
    assert again.status_code == 303, again.text


def test_a_stolen_device_cookie_has_a_cap_of_its_own(
    idp: Harness, app: FastAPI, clock: Clock
) -> None:
    """A known device is exempt from the shared budgets, not unlimited: its own cap (4)."""
    idp.user()
    known = browser(app)
    assert sign_in(known, password=PASSWORD).status_code == 303
    statuses = [sign_in(known, ip=f"198.51.100.{n}").status_code for n in range(6)]
    assert statuses == [400] * 4 + [429] * 2


def test_a_forged_device_cookie_is_an_unknown_device(
    idp: Harness, app: FastAPI, clock: Clock
) -> None:
    """The cookie is signed: one the server did not make counts for nothing."""
    idp.user()
    forger = browser(app)
    assert sign_in(forger, password=PASSWORD).status_code == 303
    name = next(k for k in forger.cookies if "idp_device" in k)
    value = forger.cookies[name]
    forger.cookies.clear()  # only the altered cookie is sent
    forger.cookies.set(name, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    statuses = [sign_in(forger).status_code for _ in range(4)]
    assert statuses == [400] * 3 + [429]  # the account+address budget applies again


def test_unlock_clears_an_accounts_budgets_and_is_audited(
    idp: Harness,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`idp users unlock EMAIL` ends a lockout by strangers, with an audit event."""
    user_id = idp.user()
    for _ in range(4):
        sign_in(idp.http)
    assert sign_in(idp.http, password=PASSWORD).status_code == 429
    monkeypatch.setenv("IDP_ISSUER", ISSUER)
    monkeypatch.setenv("IDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY", TEST_KEK)
    assert main(["users", "unlock", "Alice@Example.com"]) == 0
    assert "cleared 2 sign-in throttle budgets" in capsys.readouterr().out
    cleared = sql(idp, "SELECT user_id, actor FROM audit_events WHERE event = 'throttle.cleared'")
    assert [tuple(r) for r in cleared] == [(user_id, "cli")]
    assert sign_in(idp.http, password=PASSWORD).status_code == 303
    assert main(["users", "unlock", "nobody@example.com"]) == 1


def test_expired_counters_are_pruned(idp: Harness, clock: Clock) -> None:
    """A budget untouched for the window after its block is deleted by `idp prune`."""
    sign_in(idp.http)
    assert sql(idp, "SELECT count(*) FROM throttle_counters")[0][0] == 3
    with idp.runtime.sessions.begin() as db:
        assert delete_batch(db, "throttle counters", clock.ts + 3599, 100) == 0
        assert delete_batch(db, "throttle counters", clock.ts + 3601, 100) == 3


def test_counters_hold_no_email_address(idp: Harness) -> None:
    """The buckets are SHA-256 keys: the table names no account and no address."""
    sign_in(idp.http, "carol@example.com", ip="203.0.113.99")
    dumped = repr(sql(idp, "SELECT * FROM throttle_counters"))
    assert "carol" not in dumped and "203.0.113" not in dumped


# --- parallel guessing -----------------------------------------------------------------------


def _parallel(app: FastAPI, attempts: list[tuple[str, str]], password: str = WRONG) -> list[int]:
    """Every (email, address) attempt at once, each from its own browser, on one event loop
    (the database work of each runs in the shared thread pool, in parallel)."""

    async def one(email: str, ip: str) -> int:
        transport = httpx.ASGITransport(app=app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            headers = {"X-Forwarded-For": ip}
            fields = form_fields((await http.get("/login", headers=headers)).text)
            fields.update(email=email, password=password)
            return (await http.post("/login", data=fields, headers=headers)).status_code

    async def everyone() -> list[int]:
        return list(await asyncio.gather(*(one(e, ip) for e, ip in attempts)))

    # Its own thread: the session may already run an event loop in this one (Playwright).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, everyone()).result()


def _judged(hashes: list[str]) -> int:
    return sum(1 for p in hashes if p == WRONG)


def test_fifty_parallel_guesses_at_one_account_get_three_judged(
    idp: Harness, app: FastAPI, hashes: list[str]
) -> None:
    """Atomic: the reservation counts and decides in one statement, so fifty guesses at once
    (one account, one address) get exactly the budget's three judged attempts."""
    idp.user()
    statuses = _parallel(app, [("alice@example.com", "203.0.113.5")] * 50)
    assert sorted(set(statuses)) == [400, 429]
    assert statuses.count(400) == 3 and _judged(hashes) == 3


def test_parallel_sign_ins_that_succeed_wait_for_a_slot_instead_of_429(
    idp: Harness, app: FastAPI
) -> None:
    """Slots held by attempts still being judged are busy, not blocked: twelve correct sign-ins
    at once to one account from one address (a budget of three) all succeed."""
    idp.user()
    statuses = _parallel(app, [("alice@example.com", "203.0.113.6")] * 12, password=PASSWORD)
    assert statuses == [303] * 12


def test_fifty_parallel_guesses_from_many_addresses_share_the_account_budget(
    idp: Harness, app: FastAPI, hashes: list[str]
) -> None:
    """One account from fifty addresses: the account-wide budget (6) is all they get."""
    idp.user()
    statuses = _parallel(app, [("alice@example.com", f"198.51.100.{n}") for n in range(50)])
    assert statuses.count(400) == 6 and _judged(hashes) == 6


def test_fifty_parallel_guesses_at_many_accounts_share_the_address_budget(
    idp: Harness, app: FastAPI, hashes: list[str]
) -> None:
    """Fifty accounts from one address: the address's budget (8) is all they get."""
    statuses = _parallel(app, [(f"user{n}@example.com", "203.0.113.9") for n in range(50)])
    assert statuses.count(400) == 8 and _judged(hashes) == 8


def test_ipv6_addresses_share_their_64(idp: Harness, clock: Clock) -> None:
    """An IPv6 host holds a whole /64: addresses in one /64 share one budget."""
    idp.user()
    statuses = [sign_in(idp.http, ip=f"2001:db8:1:2::{n:x}").status_code for n in range(1, 5)]
    assert statuses == [400, 400, 400, 429]


def test_network_of() -> None:
    """The address part of a budget."""
    assert throttle.network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert throttle.network("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle.network("192.0.2.1") == "192.0.2.1"
    assert throttle.network(None) == "-"
    assert throttle.network("testclient") == "testclient"


@pytest.mark.parametrize(("trusted", "seen"), [("testclient", "192.0.2.44"), ("", "testclient")])
def test_the_address_is_the_trusted_proxys_x_forwarded_for(
    database_url: str, tmp_path: Path, trusted: str, seen: str
) -> None:
    """IDP_FORWARDED_ALLOW_IPS, applied by create_app: X-Forwarded-For names the client only
    when the peer is a trusted proxy; from anyone else it is ignored."""
    from tests.conftest import migrated_app

    app = migrated_app(make_settings(database_url, tmp_path, forwarded_allow_ips=trusted))
    try:
        with TestClient(app, base_url=ISSUER) as http:
            sign_in(http, ip="192.0.2.44")
            harness = Harness(app, http)
            close_open_minutes(harness)
            failed = sql(harness, "SELECT ip FROM audit_events WHERE event = 'login.failed'")
            assert failed == [(seen,)]
    finally:
        app.state.runtime.engine.dispose()
