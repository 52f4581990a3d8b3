"""The package works installed from its wheel, non-editable, as the Dockerfile installs it.

A checkout finds templates and migrations beside the package; an installed wheel must carry them
inside it. This builds the wheel, installs it into a private directory and runs migrations, a
template and the app's pages from that copy, with the checkout out of sys.path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 120
REQUIRED_IN_WHEEL = (
    "idp/__init__.py",
    "idp/cli/main.py",
    "idp/templates/base.html",
    "idp/templates/login/password.html",
    "idp/templates/consent/ask.html",
    "idp/migrations/env.py",
    "idp/migrations/script.py.mako",
    "idp/migrations/versions/0001_initial_schema.py",
    "idp/web/static/style.css",
)

# Runs in a fresh interpreter with only the installed copy of idp on PYTHONPATH.
INSTALLED_CHECK = r"""
import json, sys
from pathlib import Path

import idp
from idp import resources
from idp.cli.main import main

assert main(["migrate"]) == 0

from sqlalchemy import create_engine, inspect
from starlette.testclient import TestClient

from idp.app import create_app
from idp.settings import load_settings

settings = load_settings()
engine = create_engine(settings.database_url)
tables = sorted(inspect(engine).get_table_names())
engine.dispose()

app = create_app(settings)
with TestClient(app, base_url=settings.issuer) as http:
    login = http.get("/login")
    # German needs the compiled catalogue, which the wheel must carry.
    german = http.get("/login", headers={"Accept-Language": "de"})
    style = http.get("/static/style.css")
app.state.runtime.engine.dispose()

print(json.dumps({
    "idp": idp.__file__,
    "templates": str(resources.templates_dir()),
    "migrations": str(resources.migrations_dir()),
    "static": str(resources.static_dir()),
    "tables": tables,
    "german": german.text,
    "login": [login.status_code, login.text],
    "style": [style.status_code, style.headers.get("content-type", "")],
}))
"""


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited with {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    if importlib.util.find_spec("hatchling") is not None:
        # The backend is already here: no index needed, and faster.
        cmd.append("--no-build-isolation")
    # Otherwise pip fetches the pinned hatchling into an isolated build env, as `docker build`.
    run([*cmd, str(REPO)])
    wheels = list(out.glob("idp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_templates_migrations_and_static_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    missing = [name for name in REQUIRED_IN_WHEEL if name not in names]
    assert not missing, f"missing from {wheel.name}: {missing}"
    assert "idp = idp.cli.main:main" in scripts, scripts
    # Nothing from a developer's checkout: no tests, databases, keys or caches. (idp/keys/ is
    # the key-handling code; a key-encryption key file would not end in .py.)
    stray = [
        n
        for n in names
        if n.startswith(("tests/", "keys/"))
        or (n.startswith("idp/keys/") and not n.endswith(".py"))
        or "__pycache__" in n
        or n.endswith((".db", ".pyc", ".lock"))
    ]
    assert not stray, stray


def test_installed_wheel_migrates_and_renders_without_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]
    run([*pip_install, "--target", str(site), str(wheel)])

    work = tmp_path / "work"  # the current directory: neither the checkout nor site
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",
        IDP_ISSUER="http://localhost:8000",
        IDP_DATABASE_URL=f"sqlite:///{work}/idp.db",
        IDP_KEY_ENCRYPTION_KEY_FILE=str(work / "kek"),
        IDP_PASSWORD_HASH_TIME_COST="1",
        IDP_PASSWORD_HASH_MEMORY_KIB="8",
        IDP_PASSWORD_HASH_PARALLELISM="1",
    )
    result = run([sys.executable, "-c", INSTALLED_CHECK], env=env, cwd=work)
    out = json.loads(result.stdout.strip().splitlines()[-1])

    site_dir = site.resolve()
    for key in ("idp", "templates", "migrations", "static"):
        path = Path(out[key]).resolve()
        assert path.is_relative_to(site_dir), f"{key} resolved to {path}, not under {site_dir}"
        assert not path.is_relative_to(REPO), f"{key} came from the checkout: {path}"
    assert {"alembic_version", "signing_keys", "users", "clients"} <= set(out["tables"]), out
    assert "<h1>Anmelden</h1>" in out["german"], out["german"]
    status, body = out["login"]
    assert status == 200 and "<h1>Sign in</h1>" in body, body
    assert out["style"] == [200, "text/css; charset=utf-8"], out["style"]
    assert "database is at the latest schema" in result.stderr, result.stderr
