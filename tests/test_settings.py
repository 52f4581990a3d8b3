"""Settings: every IDP_* variable, and the issuer rules of OIDC Discovery §3 / OIDC Core §16.

The issuer is https; plain http is allowed only for a loopback issuer, for development.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from idp.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the IDP_* variables it sets itself."""
    for name in list(os.environ):
        if name.startswith("IDP_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "issuer",
    ["http://localhost:8000", "http://localhost", "http://127.0.0.1:8000", "http://[::1]:8000"],
)
def test_http_issuer_allowed_on_loopback(issuer: str) -> None:
    """OIDC Discovery §3 requires https; a loopback http issuer is the one development exception,
    and it turns on development mode (no Secure cookies)."""
    settings = Settings(issuer=issuer)
    assert settings.issuer == issuer
    assert settings.is_development


@pytest.mark.parametrize(
    "issuer",
    [
        "http://example.com",
        "http://idp.example.com:8000",
        "http://localhost.example.com",
        "http://127.0.0.2",
        "http://10.0.0.1",
    ],
)
def test_http_issuer_refused_elsewhere(issuer: str) -> None:
    """OIDC Discovery §3 / OIDC Core §16.17: an issuer on any other host must use https."""
    with pytest.raises(ValidationError, match="http"):
        Settings(issuer=issuer)
    with pytest.raises(SettingsError, match="http"):
        load_settings(issuer=issuer)


def test_https_issuer_is_not_development() -> None:
    """An https issuer keeps Secure, `__Host-` cookies."""
    settings = Settings(issuer="https://idp.example.com")
    assert not settings.is_development


@pytest.mark.parametrize(
    "issuer",
    [
        "idp.example.com",
        "ftp://idp.example.com",
        "https://",
        "https://idp.example/?a=b",
        "https://idp.example/#x",
    ],
)
def test_issuer_must_be_an_https_url_without_query_or_fragment(issuer: str) -> None:
    """OIDC Discovery §3: the issuer is a case-sensitive https URL with no query or fragment."""
    with pytest.raises(ValidationError):
        Settings(issuer=issuer)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://idp.example.com/", "https://idp.example.com"),
        ("https://idp.example.com/tenant/", "https://idp.example.com/tenant"),
        ("http://localhost:8000/", "http://localhost:8000"),
    ],
)
def test_trailing_slash_is_stripped(given: str, kept: str) -> None:
    """OIDC Discovery §4.3: `iss` must equal the issuer exactly; keeping one spelling (no trailing
    slash) means endpoint URLs never get a double slash."""
    settings = Settings(issuer=given)
    assert settings.issuer == kept
    assert settings.endpoint("/token") == kept + "/token"


def test_settings_read_idp_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every setting has an IDP_* environment variable (twelve-factor config)."""
    monkeypatch.setenv("IDP_ISSUER", "https://id.example.org/")
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql://idp@db/idp")
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY", "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE")
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY_FILE", "/run/secrets/kek")
    monkeypatch.setenv("IDP_SESSION_IDLE_TIMEOUT_SECONDS", "600")
    monkeypatch.setenv("IDP_SESSION_ABSOLUTE_TIMEOUT_SECONDS", "7200")
    monkeypatch.setenv("IDP_PASSWORD_MIN_LENGTH", "20")
    monkeypatch.setenv("IDP_PASSWORD_MIN_LENGTH_WITH_MFA", "10")
    monkeypatch.setenv("IDP_ACCESS_TOKEN_TTL_SECONDS", "120")
    settings = Settings()
    assert settings.issuer == "https://id.example.org"
    assert settings.database_url == "postgresql://idp@db/idp"
    assert settings.key_encryption_key is not None
    assert (
        settings.key_encryption_key.get_secret_value()
        == "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE"
    )
    assert "Zm9y" not in repr(settings)  # a secret never shows in a repr or a log
    assert settings.key_encryption_key_file == Path("/run/secrets/kek")
    assert settings.session_idle_timeout_seconds == 600
    assert settings.session_absolute_timeout_seconds == 7200
    assert settings.password_min_length == 20
    assert settings.password_min_length_with_mfa == 10
    assert settings.access_token_ttl_seconds == 120


def test_bad_environment_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting is reported in one line naming it, not a validation dump."""
    monkeypatch.setenv("IDP_ISSUER", "http://example.com")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "issuer" in message.lower()
    assert "http" in message


def test_idle_timeout_cannot_exceed_absolute_timeout() -> None:
    """OWASP Session Management: the idle timeout is shorter than the absolute lifetime."""
    with pytest.raises(ValidationError):
        Settings(session_idle_timeout_seconds=7200, session_absolute_timeout_seconds=3600)


def test_serve_refuses_a_plain_http_public_issuer(tmp_path: Path) -> None:
    """`IDP_ISSUER=http://example.com idp serve` refuses to start: exit non-zero, one line on
    stderr that says why (plain http), and nothing is served or written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ISSUER="http://example.com",
        IDP_DATABASE_URL=f"sqlite:///{tmp_path}/idp.db",
        IDP_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "kek"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "idp", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,  # a server that starts anyway fails the test here
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "http" in lines[0]
    assert "example.com" in lines[0]
    assert not (tmp_path / "idp.db").exists()
    assert not (tmp_path / "kek").exists()
