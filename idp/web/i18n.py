"""The language of a page: ui_locales (OIDC Core §3.1.2.1), then Accept-Language (RFC 9110
§12.5.4), then IDP_DEFAULT_LOCALE; and the compiled catalogues in idp/web/locale.

Strings in Python that a page shows are marked with `N_()` (extracted by `make translations`,
translated when the template renders them with `_()`): protocol code stays free of page
rendering, and one message id serves every language.
"""

from __future__ import annotations

import gettext
from pathlib import Path

from babel.support import Translations

from idp.errors import N_
from idp.settings import UI_LOCALES

__all__ = ["N_", "catalogue", "negotiate"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
SOURCE_LOCALE = "en"
# An Accept-Language header longer than this is cut: nobody prefers forty languages.
MAX_LANGUAGE_RANGES = 20


def catalogue(locale: str) -> gettext.NullTranslations:
    """The compiled catalogue of `locale`; English is the source, so it needs none."""
    if locale == SOURCE_LOCALE:
        return gettext.NullTranslations()
    found = Translations.load(str(LOCALE_DIR), [locale], DOMAIN)
    if not isinstance(found, Translations):  # babel returns NullTranslations when missing
        raise FileNotFoundError(f"no compiled catalogue for {locale!r} in {LOCALE_DIR}")
    return found


def _primary(tag: str) -> str:
    """`de-CH` -> `de`: the catalogues are per language, not per region."""
    return tag.strip().replace("_", "-").split("-")[0].lower()


def from_ui_locales(ui_locales: str | None) -> str | None:
    """OIDC Core §3.1.2.1: space-separated BCP47 tags in order of preference."""
    for tag in (ui_locales or "").split()[:MAX_LANGUAGE_RANGES]:
        if (language := _primary(tag)) in UI_LOCALES:
            return language
    return None


def from_accept_language(header: str | None) -> str | None:
    """RFC 9110 §12.5.4: language ranges with optional q weights; q=0 means "not this one"."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((header or "").split(",")[:MAX_LANGUAGE_RANGES]):
        tag, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        language = _primary(tag)
        if weight > 0 and language in UI_LOCALES:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def negotiate(ui_locales: str | None, accept_language: str | None, default: str) -> str:
    return from_ui_locales(ui_locales) or from_accept_language(accept_language) or default
