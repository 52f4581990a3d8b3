"""A password too short for the account as it is now (NIST SP 800-63B-4 §3.1.1.2: 15
characters for a password alone, 8 with a second factor) is flagged when it is used to sign
in, for example after `idp users reset-mfa` took the factor away: the sign-in goes on only
after a new password, and no relying party gets a code before."""

from __future__ import annotations

from tests.helpers import Harness, form_fields, query_of
from tests.token_helpers import sql

SHORT = "ten chars!"
NEW = "a much longer passphrase than before"


def test_a_short_password_must_be_changed_before_the_code(idp: Harness) -> None:
    user_id = idp.user()
    short_hash = idp.runtime.passwords.hash(SHORT)
    sql(idp, "UPDATE users SET password_hash = :h WHERE id = :u", h=short_hash, u=user_id)
    rp = idp.client(trusted=True)
    started = idp.http.get("/authorize", params=rp.authorize_params())
    fields = form_fields(idp.http.get(started.headers["location"]).text)
    fields.update(email="alice@example.com", password=SHORT)
    signed_in = idp.http.post("/login", data=fields)
    resumed = idp.http.get(signed_in.headers["location"])
    location = resumed.headers["location"]
    assert location.startswith("/account/password?interaction="), location
    page = idp.http.get(location)
    assert page.status_code == 200 and "too short" in page.text
    # Going round it does not help: the flow comes back here, with no code.
    again = idp.http.get("/authorize", params=rp.authorize_params())
    assert again.headers["location"].startswith("/account/password?")
    form = form_fields(page.text)
    form.update(current_password=SHORT, new_password=NEW, confirm_password=NEW)
    changed = idp.http.post("/account/password", data=form)
    assert changed.headers["location"].startswith("/authorize/resume?")
    done = idp.follow_local(changed)
    assert "code" in query_of(done.headers["location"])
    assert sql(idp, "SELECT password_change_required FROM users")[0][0] in (False, 0)
