"""Log lines: JSON by default (one object per line, for a collector), or text for people.

Standard library logging with two formatters, no extra dependency: structlog would add a
second logging system beside the one uvicorn and authlib already use. A line's fields come from
three places: the record itself (time, level, logger, event), `extra={"fields": {...}}` (an
audit event's user, client, address and detail; a request's method, route, status, duration),
and the request the line was written in (its request id, and the client and user it turned out
to be for, noted by the code that learnt them: `note()`).

Nothing can forge a line: JSON escapes every control character, and the text form escapes them
the way the audit trail always has (`loggable`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time
from typing import Any

# The request a line belongs to: its id, then what the code learnt (client_id, user_id). One
# dict per request, so a thread the request runs work in (which gets a copy of the context)
# writes to the same dict.
_request: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "idp_request", default=None
)
# A request id from a client or a proxy is taken when it is this plain, and at most 64 long.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Record attributes that are logging's own, never fields of the line.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "fields"}


def begin_request(presented: str | None) -> tuple[dict[str, str], contextvars.Token[Any]]:
    """Start a request's context: the id it presented if well-formed, else a new one."""
    request_id = presented if presented and REQUEST_ID.fullmatch(presented) else new_request_id()
    context = {"request_id": request_id}
    return context, _request.set(context)


def end_request(token: contextvars.Token[Any]) -> None:
    _request.reset(token)


def new_request_id() -> str:
    return secrets.token_hex(16)


def note(**values: str | None) -> None:
    """Add what this request turned out to be about (client_id=, user_id=) to its lines."""
    context = _request.get()
    if context is not None:
        context.update({k: v for k, v in values.items() if v})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """Everything a line says, in a stable order: time, level, logger, event, the request's
    context, then the record's own fields."""
    out: dict[str, Any] = {
        "time": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    context = _request.get()
    if context:
        out.update(context)
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        out.update(extra)
    # Anything a library passed as `extra=` (uvicorn does), minus logging's own attributes.
    out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    if record.exc_info:
        out["exception"] = logging.Formatter().formatException(record.exc_info)
    return out


def _timestamp(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields_of(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger event key=value ...`, every value on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        head = [fields.pop(k) for k in ("time", "level", "logger", "event")]
        exception = fields.pop("exception", None)
        line = " ".join(
            [
                *(loggable(v) for v in head),
                *(f"{loggable(k)}={loggable(v)}" for k, v in fields.items()),
            ]
        )
        return f"{line}\n{exception}" if exception else line


def loggable(value: object) -> str:
    """A value as one line of log text: control, format and separator characters (a newline
    in an attacker's client_id, a bidi override) escaped, so no value can forge a log line."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def config(log_format: str, level: str) -> dict[str, Any]:
    """A logging.config.dictConfig for `idp serve`: uvicorn applies it in every worker. The
    IdP's loggers and uvicorn's go to stdout through one formatter; uvicorn's own access log is
    off (the IdP writes its request lines itself, with the route and the request id)."""
    formatter = f"{__name__}.{FORMATTERS[log_format].__name__}"
    handler = {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stdout"}
    loggers = {
        name: {"handlers": ["stdout"], "level": level.upper(), "propagate": False}
        for name in ("idp", "uvicorn", "uvicorn.error", "authlib")
    }
    # authlib logs issued tokens at DEBUG: never below INFO, whatever the level asked.
    loggers["authlib"]["level"] = "INFO" if level.upper() == "DEBUG" else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": formatter}},
        "handlers": {"stdout": handler},
        "loggers": loggers,
    }
