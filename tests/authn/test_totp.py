"""TOTP as the second step of a sign-in (issue 12): RFC 6238 codes from pyotp, a window of one
time step either side, the replay guard of §5.2 (a step is accepted once, and never one older
than the newest accepted, even by two parallel sign-ins), five wrong codes end the interaction,
recovery codes (each once; new ones void the old set), and the amr/acr the tokens carry
(RFC 8176; aal2)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from idp.authn import mfa
from idp.security.secrets import DecryptionError
from idp.settings import Settings
from idp.store.factors import TotpFactor
from tests.conftest import make_settings
from tests.helpers import PASSWORD, Harness, form_fields, query_of
from tests.mfa_helpers import answer_factor, enrol_totp, last_step, recovery_codes, totp_code
from tests.token_helpers import ISSUER, audit_events, audited_count, json_of


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Wrong codes in these tests must meet the interaction's limit before the throttle's.
    return make_settings(database_url, tmp_path, throttle_account_address_limit=20)


def _password_step(idp: Harness, http: TestClient | None = None) -> httpx.Response:
    """Start a sign-in at an RP and send the right password: the redirect to the factor page."""
    http = http or idp.http
    rp = idp.client(trusted=True)
    started = http.get("/authorize", params=rp.authorize_params())
    page = http.get(started.headers["location"])
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    return http.post("/login", data=fields)


def test_a_password_alone_does_not_sign_in_a_user_with_totp(idp: Harness) -> None:
    """Once a user has a confirmed factor, every sign-in asks for it: the right password leads
    to the code page (one input, autocomplete=one-time-code, inputmode=numeric) and no session
    cookie is set yet."""
    user_id = idp.user()
    enrol_totp(idp, user_id)
    answered = _password_step(idp)
    assert answered.status_code == 303
    assert answered.headers["location"].startswith("/login/factor?interaction=")
    assert "idp_session" not in answered.headers.get("set-cookie", "")
    page = idp.http.get(answered.headers["location"])
    assert page.status_code == 200
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    assert page.text.count('<input class="input"') == 1


def test_a_right_code_signs_in_with_amr_pwd_otp_mfa_and_acr_aal2(idp: Harness) -> None:
    """RFC 8176 §2: pwd and otp, and mfa for two factors; the acr reached is aal2."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    rp = idp.client(trusted=True)
    answered = idp.follow_local(idp.http.get("/authorize", params=rp.authorize_params()))
    page = idp.http.get(answered.headers["location"])
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    factor = idp.http.post("/login", data=fields)
    done = idp.follow_local(answer_factor(idp, factor, totp_code(secret)))
    assert done.headers["location"].startswith(rp.redirect_uri)
    code = query_of(done.headers["location"])["code"]
    tokens = idp.exchange(rp, code).json()
    claims = idp.decode(tokens["id_token"]).claims
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "aal2"
    assert [e for e in audit_events(idp, "login.succeeded") if e[1] == user_id]


def test_the_window_is_one_step_either_side(idp: Harness) -> None:
    """RFC 6238 §5.2 allows a small window for clock drift: ±1 step here, not ±2."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    runtime = idp.runtime
    for steps, accepted in ((-2, False), (2, False), (-1, True), (1, True)):
        with runtime.sessions.begin() as db:
            db.execute(update(TotpFactor).values(last_step=-1))  # no replay guard in the way
            ok = mfa.check_totp(db, runtime.sealer, user_id, totp_code(secret, steps))
        assert ok is accepted, steps


def test_a_code_is_accepted_once_and_never_an_older_step(idp: Harness) -> None:
    """RFC 6238 §5.2: the verifier must not accept the second attempt of the same OTP; and a
    step older than the newest accepted is refused too."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    runtime = idp.runtime
    with runtime.sessions.begin() as db:
        assert mfa.check_totp(db, runtime.sealer, user_id, totp_code(secret, 1))
    with runtime.sessions.begin() as db:
        assert not mfa.check_totp(db, runtime.sealer, user_id, totp_code(secret, 1))
        assert not mfa.check_totp(db, runtime.sealer, user_id, totp_code(secret, 0))
    answered = _password_step(idp)
    refused = answer_factor(idp, answered, totp_code(secret, 1))
    assert refused.status_code == 400 and "not right" in refused.text


def test_two_parallel_sign_ins_with_one_code_exactly_one_wins(idp: Harness) -> None:
    """The replay guard is one conditional UPDATE: two browsers sending the same code at the
    same moment get one session between them."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    browsers = [TestClient(idp.app, base_url=ISSUER, follow_redirects=False) for _ in range(2)]
    # One code for both, read once: read per browser, a time step that ends between the two
    # reads gives two different codes, and each rightly wins once.
    code = totp_code(secret)
    forms = []
    for http in browsers:
        answered = _password_step(idp, http)
        fields = form_fields(http.get(answered.headers["location"]).text)
        fields["code"] = code
        forms.append(fields)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda pair: pair[0].post("/login/factor", data=pair[1]),
                zip(browsers, forms, strict=True),
            )
        )
    assert sorted(r.status_code for r in results) == [303, 400]
    assert last_step(idp, user_id) >= 0


def test_a_wrong_code_stays_on_the_page_and_five_end_the_interaction(idp: Harness) -> None:
    """A wrong code: the page again with a plain error; the fifth ends the interaction, so
    even the right code then opens nothing."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    answered = _password_step(idp)
    location = answered.headers["location"]
    fields = form_fields(idp.http.get(location).text)
    for attempt in range(1, mfa.MAX_FACTOR_FAILURES + 1):
        wrong = idp.http.post("/login/factor", data={**fields, "code": "000000"})
        assert wrong.status_code == 400
        if attempt < mfa.MAX_FACTOR_FAILURES:
            assert 'role="alert"' in wrong.text and "not right" in wrong.text
    assert "Too many wrong codes" in wrong.text
    late = idp.http.post("/login/factor", data={**fields, "code": totp_code(secret)})
    assert late.status_code == 400 and "expired" in late.text
    assert audited_count(idp, "mfa.failed") == mfa.MAX_FACTOR_FAILURES


def test_second_factor_attempts_draw_on_the_sign_in_throttle(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 11's throttle counts wrong codes like wrong passwords: after the account+address
    budget, a code is answered 429 with Retry-After, and not checked."""
    from idp.app import create_app
    from idp.db.engine import make_engine
    from idp.db.migrate import upgrade

    settings = make_settings(database_url, tmp_path, throttle_account_address_limit=3)
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    with TestClient(create_app(settings), base_url=ISSUER, follow_redirects=False) as http:
        idp = Harness(http.app, http)  # type: ignore[arg-type]
        secret = enrol_totp(idp, idp.user())
        answered = _password_step(idp)  # the right password: the budget starts afresh
        fields = form_fields(http.get(answered.headers["location"]).text)
        statuses = [
            http.post("/login/factor", data={**fields, "code": "000000"}).status_code
            for _ in range(3)
        ]
        throttled = http.post("/login/factor", data={**fields, "code": totp_code(secret)})
    assert statuses == [400, 400, 400]
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0


def test_a_recovery_code_signs_in_once_and_counts_as_a_second_factor(idp: Harness) -> None:
    """Each code is single use; using one is audited with how many remain; the tokens say
    mfa (a recovery code is the second factor)."""
    user_id = idp.user()
    enrol_totp(idp, user_id)
    codes = recovery_codes(idp, user_id)
    assert len(codes) == 10 and len(set(codes)) == 10
    rp = idp.client(trusted=True)
    started = idp.http.get("/authorize", params=rp.authorize_params())
    fields = form_fields(idp.http.get(started.headers["location"]).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    factor = idp.http.post("/login", data=fields)
    done = idp.follow_local(answer_factor(idp, factor, codes[0].upper(), method="recovery"))
    tokens = idp.exchange(rp, query_of(done.headers["location"])["code"]).json()
    assert idp.decode(tokens["id_token"]).claims["amr"] == ["pwd", "mfa"]
    [(_, _, detail)] = audit_events(idp, "recovery_code.used")
    assert json_of(detail)["remaining"] == 9
    other = Harness(idp.app, TestClient(idp.app, base_url=ISSUER, follow_redirects=False))
    again = answer_factor(other, _password_step(other), codes[0], method="recovery")
    assert again.status_code == 400


def test_new_recovery_codes_void_the_old_set(idp: Harness) -> None:
    user_id = idp.user()
    enrol_totp(idp, user_id)
    old = recovery_codes(idp, user_id)
    new = recovery_codes(idp, user_id)
    runtime = idp.runtime
    with runtime.sessions.begin() as db:
        assert not mfa.use_recovery_code(db, user_id, old[0], None)
        assert mfa.use_recovery_code(db, user_id, new[0].replace("-", " "), None)
        assert not mfa.use_recovery_code(db, user_id, new[0], None)


def test_a_sign_in_to_the_idp_itself_asks_for_the_code_too(idp: Harness) -> None:
    """Without a relying party, /login gets an interaction of its own for the second step,
    and lands on the home page with a two-factor session."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    answered = idp.login()
    assert answered.headers["location"].startswith("/login/factor?")
    done = idp.follow_local(answer_factor(idp, answered, totp_code(secret)))
    assert done.status_code == 200 or done.headers.get("location") == "/"
    account = idp.http.get("/account")
    assert account.status_code == 200 and "One-time code" in account.text


def test_the_seed_is_sealed_at_rest(idp: Harness) -> None:
    """The seed is stored encrypted (AES-GCM under the KEK), bound to its user."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    with idp.runtime.reads.begin() as db:
        row = db.get(TotpFactor, user_id)
        assert row is not None and secret.encode() not in row.sealed_seed
    assert idp.runtime.sealer.open(row.sealed_seed, f"totp:{user_id}".encode()) == secret.encode()
    with pytest.raises(DecryptionError):  # copied to another user's row, it opens not
        idp.runtime.sealer.open(row.sealed_seed, b"totp:someone-else")
