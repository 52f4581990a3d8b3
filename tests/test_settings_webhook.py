"""Settings of the security webhook (issue 15): IDP_SECURITY_WEBHOOK_URL is https (or plain
http to a loopback host the outbound policy may reach), IDP_SECURITY_WEBHOOK_SECRET comes with
it and is long enough, and a refused value is never repeated in the error."""

from __future__ import annotations

import os

import pytest

from idp.settings import WEBHOOK_SECRET_MIN_LENGTH, Settings, SettingsError, load_settings

SECRET = "s" * WEBHOOK_SECRET_MIN_LENGTH
HTTPS = "https://siem.example.com/hooks/idp"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the IDP_* variables it sets itself."""
    for name in list(os.environ):
        if name.startswith("IDP_"):
            monkeypatch.delenv(name)


def refused(**values: object) -> str:
    """The one-line error of settings that must not start a server."""
    with pytest.raises(SettingsError) as caught:
        load_settings(**values)
    return str(caught.value)


def test_unset_is_off() -> None:
    """By default no webhook is configured."""
    settings = Settings()
    assert settings.security_webhook_url is None and settings.security_webhook_secret is None
    assert settings.security_webhook_max_attempts == 5
    assert settings.security_webhook_retry_seconds == 10


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """IDP_SECURITY_WEBHOOK_URL and IDP_SECURITY_WEBHOOK_SECRET; an empty value is unset."""
    monkeypatch.setenv("IDP_SECURITY_WEBHOOK_URL", HTTPS)
    monkeypatch.setenv("IDP_SECURITY_WEBHOOK_SECRET", SECRET)
    settings = load_settings()
    assert settings.security_webhook_url == HTTPS
    assert settings.security_webhook_secret is not None
    assert settings.security_webhook_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    monkeypatch.setenv("IDP_SECURITY_WEBHOOK_URL", "")
    monkeypatch.setenv("IDP_SECURITY_WEBHOOK_SECRET", "")
    assert load_settings().security_webhook_url is None


@pytest.mark.parametrize(
    "url",
    [
        "http://siem.example.com/hook",  # plain http to another host
        "ftp://siem.example.com/hook",
        "https://user:pass@siem.example.com/hook",  # userinfo
        "https:///hook",
        "https://siem.example.com/hook#part",
        "https://siem.example.com/ho ok",
    ],
)
def test_the_url_is_https(url: str) -> None:
    """The events say who was attacked from where: they travel over TLS."""
    assert "IDP_SECURITY_WEBHOOK_URL" in refused(
        security_webhook_url=url, security_webhook_secret=SECRET
    )


def test_plain_http_only_to_a_loopback_host_the_policy_allows() -> None:
    """Plain http to loopback: with a development issuer, or outside development to a
    loopback address in IDP_OUTBOUND_ALLOWED_NETWORKS (what idp.outbound would connect to)."""
    local = "http://127.0.0.1:9000/hook"
    assert load_settings(security_webhook_url=local, security_webhook_secret=SECRET)
    assert load_settings(
        issuer="https://id.example.com",
        security_webhook_url=local,
        security_webhook_secret=SECRET,
        outbound_allowed_networks="127.0.0.0/8",
    )
    message = refused(
        issuer="https://id.example.com", security_webhook_url=local, security_webhook_secret=SECRET
    )
    assert "IDP_OUTBOUND_ALLOWED_NETWORKS" in message
    assert "IDP_SECURITY_WEBHOOK_URL" in refused(
        issuer="https://id.example.com",
        security_webhook_url="http://localhost:9000/hook",
        security_webhook_secret=SECRET,
        outbound_allowed_networks="127.0.0.0/8",
    )


def test_the_secret_comes_with_the_url_and_is_long_enough() -> None:
    """A URL without a secret, a short secret, or a secret without a URL stops the server;
    the refused secret is in no error message."""
    short = "tooshort-but-secret"
    assert "IDP_SECURITY_WEBHOOK_SECRET" in refused(security_webhook_url=HTTPS)
    message = refused(security_webhook_url=HTTPS, security_webhook_secret=short)
    assert str(WEBHOOK_SECRET_MIN_LENGTH) in message and short not in message
    assert "IDP_SECURITY_WEBHOOK_URL" in refused(security_webhook_secret=SECRET)


def test_no_validation_error_repeats_a_secret() -> None:
    """pydantic shows the input of a refused value; these settings hide it, so a server that
    refuses to start does not print the webhook secret (or any other) in its traceback."""
    with pytest.raises(ValueError) as caught:
        Settings(
            security_webhook_url="http://example.com/hook",
            security_webhook_secret=SECRET + "-very-secret",
        )
    assert "very-secret" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        Settings(security_webhook_url=HTTPS, security_webhook_secret="short-secret-value")
    assert "short-secret-value" not in str(caught.value)


def test_attempts_and_delay_are_bounded() -> None:
    """At least one attempt, at most 20; a delay of 1 s to an hour before the first retry."""
    for values in (
        {"security_webhook_max_attempts": 0},
        {"security_webhook_max_attempts": 21},
        {"security_webhook_retry_seconds": 0},
    ):
        refused(**values)
