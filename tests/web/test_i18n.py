"""The pages' language: ui_locales (OIDC Core §3.1.2.1), then Accept-Language (RFC 9110
§12.5.4), then IDP_DEFAULT_LOCALE; discovery's ui_locales_supported (OIDC Discovery §3); and
catalogues that are complete and compiled."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi import FastAPI
from starlette.testclient import TestClient

from idp.settings import UI_LOCALES
from idp.web import i18n
from tests.conftest import make_settings, migrated_app
from tests.helpers import Harness
from tests.token_helpers import ISSUER

REPO = Path(__file__).resolve().parents[2]


def _lang(html: str) -> str:
    return html.split('<html lang="', 1)[1].split('"', 1)[0]


def test_ui_locales_de_renders_german(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: ui_locales is the End-User's preferred languages, in order; the
    sign-in page of that authorization request speaks German."""
    rp = idp.client(name="Acme")
    login = idp.follow_local(idp.authorize(rp, ui_locales="fr-CA de-CH en"))
    page = idp.http.get(login.headers["location"])
    assert _lang(page.text) == "de"
    assert "Anmelden" in page.text and "Passwort" in page.text
    assert "um mit <strong>Acme</strong> fortzufahren" in page.text
    assert "Sign in" not in page.text


def test_ui_locales_wins_over_accept_language(idp: Harness) -> None:
    rp = idp.client()
    login = idp.follow_local(idp.authorize(rp, ui_locales="en"))
    page = idp.http.get(login.headers["location"], headers={"Accept-Language": "de"})
    assert _lang(page.text) == "en"


def test_an_unknown_locale_falls_back_to_the_default(idp: Harness) -> None:
    rp = idp.client()
    login = idp.follow_local(idp.authorize(rp, ui_locales="xx tlh"))
    page = idp.http.get(login.headers["location"])
    assert _lang(page.text) == "en" and "Sign in" in page.text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr;q=1, de;q=0.5, en;q=0.7", "en"),
        ("en;q=0.2, de", "de"),
        ("de;q=0, en;q=0.1", "en"),
        ("*", "en"),
        ("de;q=bogus", "en"),
        ("", "en"),
    ],
)
def test_accept_language(idp: Harness, header: str, expected: str) -> None:
    """RFC 9110 §12.5.4: the highest-weighted language range we have; q=0 means not this."""
    page = idp.http.get("/login", headers={"Accept-Language": header})
    assert _lang(page.text) == expected
    assert "Accept-Language" in page.headers["vary"]


def test_error_pages_are_translated(idp: Harness) -> None:
    page = idp.http.get("/authorize", params={"client_id": "nope", "ui_locales": "de"})
    assert page.status_code == 400
    assert "Unbekannte Anwendung" in page.text and "Zur Startseite" in page.text


def test_default_locale_setting(tmp_path: Path, database_url: str) -> None:
    app: FastAPI = migrated_app(make_settings(database_url, tmp_path, default_locale="de"))
    try:
        with TestClient(app, base_url=ISSUER) as http:
            assert _lang(http.get("/login").text) == "de"
            assert _lang(http.get("/login", headers={"Accept-Language": "en"}).text) == "en"
    finally:
        app.state.runtime.engine.dispose()


def test_discovery_lists_ui_locales_supported(idp: Harness) -> None:
    """OIDC Discovery §3 ui_locales_supported."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert metadata["ui_locales_supported"] == ["en", "de"]


def test_negotiation_edge_cases() -> None:
    assert i18n.negotiate("DE_at", None, "en") == "de"
    assert i18n.negotiate(None, "de-ch;q=0.4, en-gb;q=0.3", "en") == "de"
    assert i18n.negotiate(" ", ",,;;q=", "de") == "de"
    long_header = ",".join(["fr"] * 50 + ["de"])  # only the first ranges are read
    assert i18n.negotiate(None, long_header, "en") == "en"


# --- the catalogues ---------------------------------------------------------------------------


def _source_messages() -> set[str]:
    """Every message id in the templates and in N_() calls, extracted as `make translations`
    does (babel.cfg)."""
    method_map = [("idp/**.py", "python"), ("templates/**.html", "jinja2")]
    options = {
        "templates/**.html": {
            "extensions": "jinja2.ext.i18n",
            "trim_blocks": "true",
            "lstrip_blocks": "true",
        }
    }
    found = set()
    for _, _, message, _, _ in extract_from_dir(
        str(REPO),
        method_map,
        options,
        keywords={"N_": None, "_": None, "gettext": None, "ngettext": (1, 2)},
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_page_string_is_in_the_german_catalogue() -> None:
    """Nothing a page shows stays English in German: the catalogue holds every message of the
    source, each translated (run `make translations` after changing a string)."""
    with (i18n.LOCALE_DIR / "de/LC_MESSAGES/messages.po").open("rb") as file:
        catalogue = read_po(file)
    translated = {m.id[0] if isinstance(m.id, tuple) else m.id: m.string for m in catalogue if m.id}
    source = _source_messages()
    assert source, "extraction found nothing"
    missing = sorted(source - set(translated))
    assert not missing, f"not in the catalogue (run make translations): {missing}"
    empty = sorted(k for k, v in translated.items() if not (all(v) if isinstance(v, tuple) else v))
    assert not empty, f"untranslated: {empty}"


def test_compiled_catalogues_match_their_sources() -> None:
    """The committed .mo files (an install needs no build step) are compiled from the .po."""
    for locale in UI_LOCALES:
        if locale == i18n.SOURCE_LOCALE:
            continue
        folder = i18n.LOCALE_DIR / locale / "LC_MESSAGES"
        with (folder / "messages.po").open("rb") as po, (folder / "messages.mo").open("rb") as mo:
            source, compiled = read_po(po), read_mo(io.BytesIO(mo.read()))

        def pairs(catalogue: Catalog) -> set[tuple[object, object]]:
            return {(_key(m.id), _key(m.string)) for m in catalogue if m.id and m.string}

        assert pairs(source) == pairs(compiled), f"{locale}: run make translations"


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value
