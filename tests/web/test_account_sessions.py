"""/account: the person's live sessions (device, address, times) and recent activity, and
signing out one session or every other one (OIDC Back-Channel Logout 1.0 §2.5: every session
that ends is told to its relying parties)."""

from __future__ import annotations

import json
import re

from starlette.testclient import TestClient

from idp.web.user_agents import Device, parse
from tests.helpers import PASSWORD, Harness, form_fields
from tests.token_helpers import ISSUER, audit_events, sql

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
BACKCHANNEL_URI = "https://rp.example.invalid/backchannel-logout"


def browser(idp: Harness, user_agent: str) -> tuple[TestClient, Harness]:
    """Another browser, signed in (outside `with`: the app's lifespan already runs)."""
    other = TestClient(
        idp.app, base_url=ISSUER, follow_redirects=False, headers={"User-Agent": user_agent}
    )
    harness = Harness(idp.app, other)
    harness.login()
    return other, harness


def sids(idp: Harness, user_id: str) -> list[str]:
    return [row[0] for row in sql(idp, "SELECT sid FROM sessions WHERE user_id = :u", u=user_id)]


def sid_of(idp: Harness, user_agent: str) -> str:
    rows = sql(idp, "SELECT sid FROM sessions WHERE user_agent = :a", a=user_agent)
    assert len(rows) == 1
    return str(rows[0][0])


def test_user_agents_in_words() -> None:
    """The common browsers and systems are named, the more specific token first (Edge and
    Chrome on Android also say Safari and Chrome)."""
    assert parse(FIREFOX_LINUX) == Device("Firefox", "Linux")
    assert (parse(SAFARI_IPHONE).browser, parse(SAFARI_IPHONE).system) == ("Safari", "iPhone")
    assert (parse(EDGE_WINDOWS).browser, parse(EDGE_WINDOWS).system) == ("Edge", "Windows")
    assert (parse(CHROME_ANDROID).browser, parse(CHROME_ANDROID).system) == ("Chrome", "Android")
    assert (parse(None).browser, parse("something/1.0").system) == (None, None)


def test_a_session_records_its_address_and_user_agent(idp: Harness) -> None:
    """A sign-in stores where it came from on the session row (cut to the column's size)."""
    user_id = idp.user()
    browser(idp, "x" * 300 + " Firefox/1")
    row = sql(idp, "SELECT ip, user_agent FROM sessions WHERE user_id = :u", u=user_id)[0]
    assert row[0] == "testclient" and len(row[1]) == 256


def test_sessions_are_listed_with_device_address_and_this_browser(idp: Harness) -> None:
    """Every live session of the person is listed with its device in words, its address and
    its times; this browser's is marked and has no sign-out button of its own."""
    idp.user()
    idp.http.headers["User-Agent"] = SAFARI_IPHONE
    idp.login()
    browser(idp, FIREFOX_LINUX)
    page = idp.http.get("/account")
    assert page.status_code == 200
    assert "signed in on 2 browsers." in page.text
    assert "Firefox on Linux" in page.text
    assert "Safari on iPhone" in page.text
    assert "(this browser)" in page.text
    assert "testclient" in page.text  # the address
    assert "UTC" in page.text  # the times
    # One "sign out" form, for the other browser only.
    assert page.text.count('action="/account/sessions/end"') == 1
    assert f'value="{sid_of(idp, FIREFOX_LINUX)}"' in page.text
    assert f'value="{sid_of(idp, SAFARI_IPHONE)}"' not in page.text


def test_sessions_are_listed_in_german(idp: Harness) -> None:
    """The device and the times are in the reader's language (Accept-Language)."""
    idp.user()
    idp.login()
    browser(idp, FIREFOX_LINUX)
    page = idp.http.get("/account", headers={"Accept-Language": "de"})
    assert "Firefox auf Linux" in page.text
    assert re.search(r"\d\d\.\d\d\.\d{4}", page.text)  # a German date


def test_ending_one_session_signs_out_that_browser_only(idp: Harness) -> None:
    """§2.5: the ended session's relying party is sent a logout token (queued); that browser
    is signed out, this one is not; the event is audited."""
    user_id = idp.user()
    rp = idp.client(backchannel_logout_uri=BACKCHANNEL_URI)
    idp.login()
    laptop, laptop_idp = browser(idp, FIREFOX_LINUX)
    laptop_idp.tokens(rp)  # the laptop's session signed in to the relying party
    page = idp.http.get("/account")
    done = idp.http.post(
        "/account/sessions/end",
        data={
            "csrf_token": form_fields(page.text)["csrf_token"],
            "sid": sid_of(idp, FIREFOX_LINUX),
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/account?notice=session_ended"
    assert laptop.get("/account").status_code == 302  # signed out there
    after = idp.http.get(done.headers["location"])
    assert after.status_code == 200 and "That browser was signed out." in after.text
    assert len(sids(idp, user_id)) == 1
    assert sql(idp, "SELECT count(*) FROM logout_deliveries")[0][0] == 1
    assert audit_events(idp, "session.ended_by_user")


def test_ending_another_persons_session_does_nothing(idp: Harness) -> None:
    """Only the person's own sessions can be ended: a sid of someone else's session answers
    as an unknown one would (404), and that session lives on."""
    idp.user()
    bob_id = idp.user(email="bob@example.com")
    idp.login()
    bob = TestClient(idp.app, base_url=ISSUER, follow_redirects=False)
    Harness(idp.app, bob).login(email="bob@example.com", password=PASSWORD)
    [bob_sid] = sids(idp, bob_id)
    page = idp.http.get("/account")
    csrf = form_fields(page.text)["csrf_token"]
    refused = idp.http.post("/account/sessions/end", data={"csrf_token": csrf, "sid": bob_sid})
    assert refused.status_code == 404
    assert sids(idp, bob_id) == [bob_sid]
    assert bob.get("/account").status_code == 200
    unknown = idp.http.post("/account/sessions/end", data={"csrf_token": csrf, "sid": "nope"})
    assert unknown.status_code == 404


def test_ending_every_other_session_keeps_this_one(idp: Harness) -> None:
    """Every other browser is signed out (their relying parties told), this one stays."""
    user_id = idp.user()
    rp = idp.client(backchannel_logout_uri=BACKCHANNEL_URI)
    idp.login()
    laptop, laptop_idp = browser(idp, FIREFOX_LINUX)
    phone, _ = browser(idp, CHROME_ANDROID)
    laptop_idp.tokens(rp)
    page = idp.http.get("/account")
    assert "signed in on 3 browsers." in page.text
    done = idp.http.post(
        "/account/sessions/end-others", data={"csrf_token": form_fields(page.text)["csrf_token"]}
    )
    assert done.status_code == 303 and done.headers["location"] == "/account?notice=others_ended"
    assert laptop.get("/account").status_code == 302
    assert phone.get("/account").status_code == 302
    assert "signed in on 1 browser." in idp.http.get("/account").text
    assert len(sids(idp, user_id)) == 1
    assert sql(idp, "SELECT count(*) FROM logout_deliveries")[0][0] == 1
    [(_, _, detail)] = audit_events(idp, "session.ended_by_user")
    assert (json.loads(detail) if isinstance(detail, str) else detail)["sessions"] == 2


def test_session_forms_need_the_form_token(idp: Harness) -> None:
    """Both forms are refused (403) without this browser's CSRF token, and nothing ends."""
    user_id = idp.user()
    idp.login()
    browser(idp, FIREFOX_LINUX)
    sid = sid_of(idp, FIREFOX_LINUX)
    forged = {"csrf_token": "forged", "sid": sid}
    assert idp.http.post("/account/sessions/end", data=forged).status_code == 403
    assert idp.http.post("/account/sessions/end-others", data=forged).status_code == 403
    assert len(sids(idp, user_id)) == 2


def test_recent_activity_shows_sign_ins_with_address(idp: Harness) -> None:
    """The person's own sign-ins, failed ones (as tallied per minute) and sign-outs of other
    browsers are listed with their time and address; another person's events are not."""
    idp.user()
    idp.user(email="bob@example.com")
    failed = idp.login(password="wrong password, surely")
    assert failed.status_code == 400
    idp.login()
    Harness(idp.app, TestClient(idp.app, base_url=ISSUER, follow_redirects=False)).login(
        email="bob@example.com"
    )
    audit_events(idp, "login.failed")  # closes the open minute of failure tallies
    page = idp.http.get("/account")
    activity = page.text.split("Recent activity", 1)[1]
    assert "Signed in" in activity
    assert "Sign-in failed" in activity
    assert "testclient" in activity
    assert activity.count("Signed in") == 1  # Bob's sign-in is not Alice's activity
