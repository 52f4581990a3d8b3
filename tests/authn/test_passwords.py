"""Passwords: NIST SP 800-63B-4 §3.1.1.2 (password verifiers) and RFC 9106 (argon2id)."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from idp.authn.passwords import (
    MAX_LENGTH,
    PasswordRejected,
    Passwords,
    check_policy,
    min_password_length,
)
from idp.settings import Settings
from tests.conftest import make_settings

PASSPHRASE = "correct horse battery staple"


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(f"sqlite:///{tmp_path}/unused.db", tmp_path, **overrides)


@pytest.fixture
def passwords(tmp_path: Path) -> Passwords:
    return Passwords(settings_for(tmp_path))


# --- the policy ---------------------------------------------------------------------------------


def test_a_password_alone_is_at_least_fifteen_characters(tmp_path: Path) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: if passwords are used as a single-factor authenticator, they
    SHALL be a minimum of 15 characters in length; the default floor for an account without a
    second factor is 15."""
    assert Settings.model_fields["password_min_length"].default == 15
    floor = min_password_length(settings_for(tmp_path), has_second_factor=False)
    assert floor == 15
    with pytest.raises(PasswordRejected, match="at least 15"):
        check_policy("zq7Kx9pWm3vR2t", floor)  # 14 characters
    check_policy("zq7Kx9pWm3vR2tL", floor)  # 15 characters


def test_a_password_with_a_second_factor_is_at_least_eight_characters(tmp_path: Path) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: if they are used only as part of multi-factor authentication,
    they SHALL be a minimum of 8 characters; IDP_PASSWORD_MIN_LENGTH_WITH_MFA (8) applies once
    the account has a second factor."""
    assert Settings.model_fields["password_min_length_with_mfa"].default == 8
    floor = min_password_length(settings_for(tmp_path), has_second_factor=True)
    assert floor == 8
    with pytest.raises(PasswordRejected, match="at least 8"):
        check_policy("zq7Kx9p", floor)  # 7 characters
    check_policy("zq7Kx9pW", floor)  # 8 characters


def test_minimum_lengths_are_configurable(tmp_path: Path) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: IDP_PASSWORD_MIN_LENGTH and IDP_PASSWORD_MIN_LENGTH_WITH_MFA
    raise the floors, which the policy applies by whether the account has a second factor."""
    settings = settings_for(tmp_path, password_min_length=20, password_min_length_with_mfa=12)
    assert min_password_length(settings, has_second_factor=False) == 20
    assert min_password_length(settings, has_second_factor=True) == 12
    with pytest.raises(PasswordRejected, match="at least 20"):
        check_policy("zq7Kx9pWm3vR2tLq8Ns", 20)  # 19 characters


@pytest.mark.parametrize(
    "overrides",
    [
        {"password_min_length": 7},
        {"password_min_length_with_mfa": 7},
        {"password_min_length": 65},
        {"password_min_length": 12, "password_min_length_with_mfa": 13},
    ],
    ids=["alone-below-8", "with-mfa-below-8", "alone-above-64", "with-mfa-above-alone"],
)
def test_minimum_lengths_stay_within_what_nist_allows(
    tmp_path: Path, overrides: dict[str, int]
) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: no floor below the 8 characters required even with a second
    factor, none above the 64 verifiers SHOULD permit, and a second factor never asks for a
    longer password than the password alone: such settings refuse to load."""
    with pytest.raises(ValidationError):
        settings_for(tmp_path, **overrides)


@pytest.mark.parametrize("length", [64, 100, MAX_LENGTH])
def test_long_passwords_are_accepted(passwords: Passwords, length: int) -> None:
    """§3.1.1.2: verifiers SHOULD permit a maximum length of at least 64 characters; this one
    permits 256, and such a password hashes and verifies whole."""
    assert MAX_LENGTH >= 256
    pw = ("a long passphrase, " * 20)[:length]
    assert len(pw) == length
    check_policy(pw, 8)
    stored = passwords.hash(pw)
    assert passwords.verify(stored, pw)
    assert not passwords.verify(stored, pw[:-1] + "!")  # the last character counts too


def test_passwords_past_the_maximum_are_refused() -> None:
    """§3.1.1.2 allows a maximum; past 256 characters only a denial of service gains."""
    with pytest.raises(PasswordRejected, match="at most"):
        check_policy("x" * (MAX_LENGTH + 1) + "q", 8)


@pytest.mark.parametrize(
    "password",
    ["thequickbrownfoxjumpsoverthelazydog", "kettle lantern orchard", "82736451927364", "ZQXWVUTS"],
)
def test_no_composition_rules(password: str) -> None:
    """§3.1.1.2: verifiers SHALL NOT impose composition rules (no required mix of character
    types): lower-case only, digits only or upper-case only all pass."""
    check_policy(password, 8)


@pytest.mark.parametrize(
    "password", ["password", "123456789", "qwertyuiop", "Password", "PASSWORD1", "iloveyou"]
)
def test_common_passwords_are_refused(password: str) -> None:
    """§3.1.1.2: verifiers SHALL compare prospective passwords against a blocklist of commonly
    used, expected or compromised values, and refuse a match (case does not help)."""
    with pytest.raises(PasswordRejected, match="common"):
        check_policy(password, 8)


def test_email_as_password_is_refused() -> None:
    """§3.1.1.2: the blocklist includes context-specific words such as the user name."""
    with pytest.raises(PasswordRejected):
        check_policy("alice.liddell@example.com", 8, email="alice.liddell@example.com")
    with pytest.raises(PasswordRejected):
        check_policy("Alice.Liddell", 8, email="alice.liddell@example.com")


# --- hashing ------------------------------------------------------------------------------------


def test_hashes_are_argon2id(passwords: Passwords) -> None:
    """§3.1.1.2 and RFC 9106 §4: passwords are stored salted and hashed with a memory-hard KDF;
    this server uses argon2id, with a fresh salt each time."""
    first, second = passwords.hash(PASSPHRASE), passwords.hash(PASSPHRASE)
    assert first.startswith("$argon2id$")
    assert PASSPHRASE not in first
    assert first != second  # salted
    assert passwords.verify(first, PASSPHRASE)
    assert not passwords.verify(first, PASSPHRASE + " ")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ｃｏｒｒｅｃｔ ｈｏｒｓｅ ｂａｔｔｅｒｙ", "correct horse battery"),  # fullwidth forms
        ("ﬁsh and ﬂour ﬁlling", "fish and flour filling"),  # ligatures
        ("cafe\u0301 au lait please", "caf\u00e9 au lait please"),  # combining accent
        ("x² plus y² is r²", "x2 plus y2 is r2"),  # superscripts
    ],
)
def test_unicode_is_normalised_nfkc(passwords: Passwords, typed: str, stored: str) -> None:
    """§3.1.1.2: verifiers SHOULD apply NFKC (or NFKD) normalisation before hashing, so the same
    password typed with compatibility or decomposed forms still matches, either way round."""
    assert typed != stored
    assert passwords.verify(passwords.hash(stored), typed)
    assert passwords.verify(passwords.hash(typed), stored)


def test_unknown_user_is_false_and_still_costs_a_hash(
    passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§3.1.1.2 / OWASP Authentication: verify(None, …) is False, and runs argon2id against a dummy
    hash so an unknown account answers in the same time as a wrong password."""
    calls: list[str] = []
    real_verify = PasswordHasher.verify

    def counting_verify(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append(str(hash))
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    assert passwords.verify(None, PASSPHRASE) is False
    assert passwords.verify(None, "") is False
    assert len(calls) == 2
    assert all(h.startswith("$argon2id$") for h in calls)


def test_garbage_hash_is_false(passwords: Passwords) -> None:
    """A stored value that is not an argon2 hash never verifies (and never raises)."""
    assert passwords.verify("not-a-hash", PASSPHRASE) is False
    assert passwords.verify("", PASSPHRASE) is False


def test_needs_rehash_when_parameters_differ(tmp_path: Path) -> None:
    """OWASP Password Storage (Upgrading the work factor): a hash made with other argon2id
    parameters needs rehashing; one made with the current parameters does not."""
    cheap = Passwords(settings_for(tmp_path))
    slower = Passwords(settings_for(tmp_path, password_hash_time_cost=2))
    bigger = Passwords(settings_for(tmp_path, password_hash_memory_kib=16))
    stored = cheap.hash(PASSPHRASE)
    assert not cheap.needs_rehash(stored)
    assert slower.needs_rehash(stored)
    assert bigger.needs_rehash(stored)
    assert not slower.needs_rehash(slower.hash(PASSPHRASE))
    # A hash made with other parameters still verifies: rehashing happens after success.
    assert slower.verify(stored, PASSPHRASE)
