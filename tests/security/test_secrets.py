"""Random identifiers and secrets."""

from __future__ import annotations

import secrets

import pytest

from idp.security import secrets as idp_secrets


def test_an_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client id is typed as a CLI argument (`idp clients show ID`); a leading "-" would read
    as an option, so such a draw is replaced."""
    draws = iter(["-leading", "_fine"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(draws))
    assert idp_secrets.new_id() == "_fine"


def test_ids_are_distinct_and_url_safe() -> None:
    ids = {idp_secrets.new_id(18) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(not i.startswith("-") and len(i) == 24 for i in ids)
