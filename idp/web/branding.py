"""The organisation's look: its name, logo and accent colour, checked once at start.

The accent colour reaches the pages through a generated stylesheet (the CSP allows no inline
style). A colour an operator picks rarely has 4.5:1 contrast against both the light and the dark
background, so each scheme gets the nearest shade that does (WCAG 2.2 §1.4.3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp.settings import Settings, SettingsError

LOGO_MAX_BYTES = 512 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Every background a link or an accent-coloured text sits on, per scheme (style.css: --bg,
# --surface, --surface-sunken, --danger-bg, --notice-bg).
LIGHT_BACKGROUNDS = ("#f3f4f7", "#ffffff", "#fcebea", "#e9f0fc")
DARK_BACKGROUNDS = ("#14161b", "#1d2028", "#262a33", "#3b1f1f", "#1d2a44")
WHITE, BLACK = "#ffffff", "#000000"
TARGET_CONTRAST = 4.6  # 4.5:1 (AA) with a margin for rounding in browsers
# An SVG logo opened on its own must not run script in our origin.
LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter()


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        return cls(body, media_type, hashlib.sha256(body).hexdigest()[:16])


@dataclass(frozen=True)
class Branding:
    name: str | None
    support_url: str | None
    theme: Asset
    logo: Asset | None

    @property
    def theme_href(self) -> str:
        return f"/static/brand/theme.css?v={self.theme.etag}"

    @property
    def logo_href(self) -> str | None:
        return f"/static/brand/logo?v={self.logo.etag}" if self.logo else None


def load(settings: Settings) -> Branding:
    """The branding settings, checked: an unreadable or unsupported logo is a SettingsError,
    so the server refuses to start instead of showing a broken page."""
    return Branding(
        name=settings.display_name,
        support_url=settings.support_url,
        theme=Asset.of(theme_css(settings.accent_color).encode(), "text/css; charset=utf-8"),
        logo=_logo(settings) if settings.logo_file else None,
    )


def _logo(settings: Settings) -> Asset:
    path = settings.logo_file
    assert path is not None
    try:
        with path.open("rb") as file:
            body = file.read(LOGO_MAX_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"IDP_LOGO_FILE: cannot read {path}: {exc.strerror}") from None
    if len(body) > LOGO_MAX_BYTES:
        raise SettingsError(f"IDP_LOGO_FILE: {path} is larger than {LOGO_MAX_BYTES // 1024} KiB")
    if body.startswith(PNG_MAGIC):
        return Asset.of(body, "image/png")
    if _is_svg(body):
        return Asset.of(body, "image/svg+xml")
    raise SettingsError(f"IDP_LOGO_FILE: {path} is neither an SVG nor a PNG image")


def _is_svg(body: bytes) -> bool:
    try:
        text = body.decode("utf-8-sig").lstrip()
    except UnicodeDecodeError:
        return False
    return text.startswith(("<svg", "<?xml", "<!--")) and "<svg" in text[:4096]


# --- colour ----------------------------------------------------------------------------------


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(255.0, c))):02x}" for c in rgb)


def luminance(color: str) -> float:
    """WCAG 2.2 relative luminance."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _mix(color: str, toward: str, amount: float) -> str:
    c, t = _rgb(color), _rgb(toward)
    return _hex(tuple(x + (y - x) * amount for x, y in zip(c, t, strict=True)))  # type: ignore[arg-type]


def readable_on(color: str, backgrounds: tuple[str, ...], toward: str) -> str:
    """The shade of `color`, moved toward `toward` as little as needed, that has at least
    TARGET_CONTRAST against every background."""
    for step in range(101):
        shade = _mix(color, toward, step / 100)
        if all(contrast(shade, bg) >= TARGET_CONTRAST for bg in backgrounds):
            return shade
    return toward


def _on(fill: str) -> str:
    """White or black text, whichever reads better on `fill`."""
    return WHITE if contrast(fill, WHITE) >= contrast(fill, BLACK) else BLACK


def _button(fill: str) -> tuple[str, str]:
    """A button fill near `fill` and its text colour, at least TARGET_CONTRAST apart."""
    text = _on(fill)
    return readable_on(fill, (text,), BLACK if text == WHITE else WHITE), text


def theme_css(accent: str) -> str:
    light_text = readable_on(accent, LIGHT_BACKGROUNDS, BLACK)
    dark_text = readable_on(accent, DARK_BACKGROUNDS, WHITE)
    light_fill, light_on = _button(accent)
    dark_fill, dark_on = _button(dark_text)
    return (
        "/* Generated from IDP_ACCENT_COLOR; every pair keeps 4.5:1 contrast. */\n"
        f":root {{ --accent: {light_fill}; --on-accent: {light_on}; "
        f"--accent-text: {light_text}; }}\n"
        "@media (prefers-color-scheme: dark) {\n"
        f"  :root {{ --accent: {dark_fill}; --on-accent: {dark_on}; "
        f"--accent-text: {dark_text}; }}\n"
        "}\n"
    )


# --- serving ---------------------------------------------------------------------------------


def _serve(request: Request, asset: Asset, extra: dict[str, str] | None = None) -> Response:
    headers = {"ETag": f'"{asset.etag}"', "Cache-Control": IMMUTABLE, **(extra or {})}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


# Routes under /static, matched before the /static mount.
@router.get("/static/brand/theme.css", include_in_schema=False)
async def theme(request: Request) -> Response:
    branding: Branding = request.app.state.branding
    return _serve(request, branding.theme)


@router.get("/static/brand/logo", include_in_schema=False)
async def logo(request: Request) -> Response:
    branding: Branding = request.app.state.branding
    if branding.logo is None:
        return Response("Not Found", status_code=404, media_type="text/plain")
    return _serve(
        request,
        branding.logo,
        {"Content-Security-Policy": LOGO_CSP, "Content-Disposition": "inline"},
    )
