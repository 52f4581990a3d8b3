"""Branding by settings: the organisation's name, logo, accent colour and help link, checked
at start; the accent applied through a generated stylesheet whose colours keep WCAG 2.2 AA
contrast (§1.4.3, 4.5:1) in the light and the dark scheme."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from idp.app import create_app
from idp.settings import SettingsError, load_settings
from idp.web import branding
from tests.conftest import make_settings, migrated_app
from tests.token_helpers import ISSUER

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>'


def _app(database_url: str, tmp_path: Path, **overrides: object) -> FastAPI:
    return migrated_app(make_settings(database_url, tmp_path, **overrides))


@pytest.mark.parametrize("color", ["blue", "#12345", "#ggg", "123456", "#1234567", "red;}"])
def test_a_bad_accent_colour_is_refused(color: str) -> None:
    with pytest.raises(SettingsError, match="IDP_ACCENT_COLOR"):
        load_settings(accent_color=color)


def test_a_short_hex_colour_is_expanded() -> None:
    assert load_settings(accent_color="#AbC").accent_color == "#aabbcc"


@pytest.mark.parametrize(
    "url", ["http://help.example", "javascript:alert(1)", "https://", "ftp://x", "https://a b"]
)
def test_a_bad_support_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="IDP_SUPPORT_URL"):
        load_settings(support_url=url)


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_a_bad_display_name_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match="IDP_DISPLAY_NAME"):
        load_settings(display_name=name)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"GIF89a" + b"\x00" * 10, "neither an SVG nor a PNG"),
        (b"<html><body>hi</body></html>", "neither an SVG nor a PNG"),
        (PNG + b"\x00" * (branding.LOGO_MAX_BYTES), "larger than"),
    ],
)
def test_an_unreadable_or_unsupported_logo_stops_the_start(
    tmp_path: Path, database_url: str, content: bytes | None, message: str
) -> None:
    logo = tmp_path / "logo"
    if content is not None:
        logo.write_bytes(content)
    with pytest.raises(SettingsError, match=message):
        create_app(make_settings(database_url, tmp_path, logo_file=logo))


def test_idp_serve_refuses_to_start_with_a_bad_logo(tmp_path: Path) -> None:
    """The operator sees one line and a non-zero exit, not a server with a broken page."""
    env = {
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.db",
        "IDP_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
        "IDP_LOGO_FILE": str(tmp_path / "missing.png"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "idp", "serve", "--port", "9"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    missing = tmp_path / "missing.png"
    assert result.stderr.strip().splitlines() == [
        f"idp: error: IDP_LOGO_FILE: cannot read {missing}: No such file or directory"
    ]
    assert not (tmp_path / "idp.db").exists()  # refused before migrating anything


@pytest.mark.parametrize(("content", "media_type"), [(PNG, "image/png"), (SVG, "image/svg+xml")])
def test_the_logo_is_served_from_our_origin(
    tmp_path: Path, database_url: str, content: bytes, media_type: str
) -> None:
    logo = tmp_path / "logo"
    logo.write_bytes(content)
    app = _app(database_url, tmp_path, logo_file=logo, display_name="Acme Corp")
    try:
        with TestClient(app, base_url=ISSUER) as http:
            page = http.get("/login").text
            src = re.search(r'<img class="brand-logo" src="([^"]+)"', page)
            assert src and src.group(1).startswith("/static/brand/logo?v=")
            served = http.get(src.group(1))
            assert served.status_code == 200 and served.content == content
            assert served.headers["content-type"] == media_type
            # An SVG opened on its own runs no script in our origin.
            assert "sandbox" in served.headers["content-security-policy"]
            assert served.headers["x-content-type-options"] == "nosniff"
            etag = served.headers["etag"]
            assert http.get(src.group(1), headers={"If-None-Match": etag}).status_code == 304
    finally:
        app.state.runtime.engine.dispose()


def test_name_and_help_link_on_every_page(tmp_path: Path, database_url: str) -> None:
    app = _app(
        database_url, tmp_path, display_name="Acme Corp", support_url="https://help.acme.example"
    )
    try:
        with TestClient(app, base_url=ISSUER) as http:
            for path in ("/", "/login", "/authorize?client_id=unknown"):
                page = http.get(path).text
                assert re.search(r"<title>[^<]+ · Acme Corp</title>", page), path
                assert "<span>Acme Corp</span>" in page
                assert '<a href="https://help.acme.example">Need help?</a>' in page
            assert http.get("/static/brand/logo").status_code == 404  # no logo configured
    finally:
        app.state.runtime.engine.dispose()


def test_without_branding_the_pages_have_a_neutral_name(app: FastAPI) -> None:
    with TestClient(app, base_url=ISSUER) as http:
        page = http.get("/login").text
        assert "<title>Sign in · Identity provider</title>" in page
        assert "Need help?" not in page and "brand-logo" not in page


def test_the_accent_is_a_stylesheet_not_inline_style(tmp_path: Path, database_url: str) -> None:
    """CSP style-src 'self': the colour reaches the page as a file, never as inline style."""
    app = _app(database_url, tmp_path, accent_color="#ffcc00")
    try:
        with TestClient(app, base_url=ISSUER) as http:
            page = http.get("/login").text
            assert "style=" not in page and "<style" not in page
            href = re.search(
                r'<link rel="stylesheet" href="(/static/brand/theme\.css\?v=\w+)"', page
            )
            assert href
            css = http.get(href.group(1))
            assert css.headers["content-type"].startswith("text/css")
            assert "immutable" in css.headers["cache-control"]
            assert "--accent: #ffcc00" in css.text
    finally:
        app.state.runtime.engine.dispose()


def _colors(css: str) -> list[dict[str, str]]:
    """The light and the dark block's custom properties."""
    return [dict(re.findall(r"--([\w-]+): (#[0-9a-f]{6})", block)) for block in css.split("@media")]


@pytest.mark.parametrize("seed", range(4))
def test_every_accent_keeps_aa_contrast(seed: int) -> None:
    """WCAG 2.2 §1.4.3: whatever colour the operator picks, links reach 4.5:1 on every
    background of their scheme, and button text 4.5:1 on the button."""
    rng = random.Random(seed)
    picks = ["#ffffff", "#000000", "#ffff00", "#777777", "#2f5bd3", "#00ff00"]
    picks += [f"#{rng.randrange(1 << 24):06x}" for _ in range(100)]
    for accent in picks:
        light, dark = _colors(branding.theme_css(accent))
        for scheme, backgrounds in (
            (light, branding.LIGHT_BACKGROUNDS),
            (dark, branding.DARK_BACKGROUNDS),
        ):
            assert all(branding.contrast(scheme["accent-text"], bg) >= 4.5 for bg in backgrounds)
            assert branding.contrast(scheme["accent"], scheme["on-accent"]) >= 4.5, accent


def test_style_css_backgrounds_are_the_ones_checked() -> None:
    """The contrast guarantee holds only for the backgrounds it knows: style.css's."""
    css = (Path(branding.__file__).parent / "static/style.css").read_text()
    light, dark = css.split("@media (prefers-color-scheme: dark)")[:2]
    for block, known in ((light, branding.LIGHT_BACKGROUNDS), (dark, branding.DARK_BACKGROUNDS)):
        for name in ("bg", "surface", "surface-sunken", "danger-bg", "notice-bg"):
            value = re.search(rf"--{name}: (#[0-9a-f]{{6}})", block)
            assert value and value.group(1) in known, name
