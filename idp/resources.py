"""Where templates, static files and migrations live, installed (wheel) or in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    # A wheel carries them inside the package; a checkout (editable install) keeps them beside
    # it. Only a checkout (it has pyproject.toml) may look beside the package: in site-packages
    # that folder would belong to somebody else.
    inside, checkout = PACKAGE_DIR / name, PACKAGE_DIR.parent
    if inside.exists():
        return inside
    if (checkout / "pyproject.toml").exists() and (checkout / name).exists():
        return checkout / name
    raise FileNotFoundError(f"{name} not found beside the idp package")


def templates_dir() -> Path:
    return _find("templates")


def migrations_dir() -> Path:
    return _find("migrations")


def static_dir() -> Path:
    return PACKAGE_DIR / "web" / "static"
