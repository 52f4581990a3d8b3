"""Run the `idp` command in this process, as `python -m idp ARGS` would run in a fresh one.

A subprocess costs about 1.5 s (interpreter start and imports) per command; calling
`idp.cli.main.main` costs milliseconds. What the process boundary gave, this does by hand:

- the environment: the command reads only IDP_* variables (Settings has env_prefix IDP_), so
  every IDP_* variable is removed and those of `env` are set, for the call only;
- the working directory (relative paths such as the default key-encryption key file);
- standard input (a StringIO: not a terminal, as a pipe is not), output and error (captured);
- the exit status: main's return value, SystemExit (argparse's usage errors and --help) turned
  into its code, and an uncaught exception into status 1 with its traceback on stderr;
- logging as a fresh interpreter has it: no handlers on the root logger (pytest adds its own),
  so a warning goes to stderr through logging.lastResort and the tests see it there.

A few tests keep a real subprocess where the process boundary is the point (`python -m idp
--help`, `idp serve`, several `idp migrate` processes at once); everything else uses this.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from idp.cli.main import main

PREFIX = "IDP_"


def exit_status(code: object, stderr: io.StringIO) -> int:
    """The status `raise SystemExit(code)` gives a process: None is 0, an int itself, anything
    else is printed on stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(level)


def run_cli(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`python -m idp *args` with `env`'s IDP_* variables, in `cwd`, `stdin` on its input."""
    argv = list(args)
    out, err = io.StringIO(), io.StringIO()
    before = {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in before:
                mp.delenv(name)
            for name, value in env.items():
                if name.startswith(PREFIX):
                    mp.setenv(name, value)
            mp.chdir(cwd)
            mp.setattr(sys, "stdin", io.StringIO(stdin))
            with (
                fresh_logging(),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                try:
                    status = main(argv)
                except SystemExit as exc:
                    status = exit_status(exc.code, err)
                except Exception:
                    traceback.print_exc(file=err)
                    status = 1
    finally:
        # The command may set IDP_* itself (serve does): leave the environment as it was.
        for name in [k for k in os.environ if k.startswith(PREFIX) and k not in before]:
            del os.environ[name]
        os.environ.update(before)
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "idp", *argv], status, out.getvalue(), err.getvalue()
    )
