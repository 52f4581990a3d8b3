"""A User-Agent header in words for the person's list of sessions: "Firefox on Linux".

Deliberately small: the list only has to help someone recognise their own browsers, so the
common browsers and systems are enough, and nothing here decides anything about security (the
header is whatever the client chose to send). A PyPI parser (ua-parser and its regex database)
would be one more dependency to keep current for a line of text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Order matters: Chromium-based browsers also say "Chrome" and "Safari", Chrome says "Safari",
# so the more specific tokens are tried first.
_BROWSERS: tuple[tuple[str, str], ...] = (
    (r"\bEdg(e|A|iOS)?/", "Edge"),
    (r"\bOPR/|\bOpera\b", "Opera"),
    (r"\bSamsungBrowser/", "Samsung Internet"),
    (r"\bVivaldi/", "Vivaldi"),
    (r"\bYaBrowser/", "Yandex Browser"),
    (r"\bFirefox/|\bFxiOS/", "Firefox"),
    (r"\bCriOS/|\bChrome/|\bChromium/", "Chrome"),
    (r"\bSafari/", "Safari"),
    (r"\bMSIE |\bTrident/", "Internet Explorer"),
    (r"\bcurl/", "curl"),
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    (r"\bAndroid\b", "Android"),
    (r"\biPhone\b|\biPod\b", "iPhone"),
    (r"\biPad\b", "iPad"),
    (r"\bCrOS\b", "ChromeOS"),
    (r"\bWindows\b", "Windows"),
    (r"\bMac OS X\b|\bMacintosh\b", "macOS"),
    (r"\bLinux\b|\bX11\b", "Linux"),
)
_BROWSER_PATTERNS = tuple((re.compile(p), name) for p, name in _BROWSERS)
_SYSTEM_PATTERNS = tuple((re.compile(p), name) for p, name in _SYSTEMS)


@dataclass(frozen=True)
class Device:
    """What a User-Agent says of itself; None where it names nothing we know."""

    browser: str | None
    system: str | None


def _first(patterns: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    return next((name for pattern, name in patterns if pattern.search(text)), None)


def parse(user_agent: str | None) -> Device:
    """The browser and the operating system a User-Agent header names, as far as we know them."""
    if not user_agent:
        return Device(None, None)
    return Device(_first(_BROWSER_PATTERNS, user_agent), _first(_SYSTEM_PATTERNS, user_agent))
