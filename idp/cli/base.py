"""What every `idp` command shares: its error, its parser, its one transaction, its output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from sqlalchemy.orm import Session

from idp.settings import Settings


class CommandError(Exception):
    """Shown as `idp: error: <message>`, exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts and people read the reason first.
        self.exit(2, f"idp: error: {message}\n")


@contextmanager
def database(settings: Settings) -> Iterator[Session]:
    """One transaction on a short-lived engine: commit on success, nothing written on error."""
    from idp.audit.chain import write_sessions
    from idp.db.engine import make_engine

    engine = make_engine(settings)
    try:
        with write_sessions(engine, settings).begin() as db:
            yield db
    finally:
        engine.dispose()


def emit(data: object, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2) if as_json else text)
