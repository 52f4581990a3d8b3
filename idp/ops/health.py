"""/health/live and /health/ready, for a load balancer or an orchestrator.

Live: the process answers (nothing else is looked at, so a database outage does not get every
node restarted). Ready: the database answers, its schema is at this code's migration head, and
the signing keys are loaded. Neither ever says more than which check failed: no URL, no
message from the driver, nothing secret.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from idp import deps
from idp.db.migrate import head_revisions
from idp.runtime import Runtime
from idp.store import schema

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}
# A probe that waits longer than this on the database counts the database as down.
READY_TIMEOUT_SECONDS = 2.0
OK = "ok"


@router.get("/health/live", include_in_schema=False)
async def live() -> JSONResponse:
    return JSONResponse({"status": OK}, headers=NO_STORE)


@router.get("/health/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    runtime = deps.runtime_of(request)
    try:
        checks = await asyncio.wait_for(
            run_in_threadpool(readiness, runtime), READY_TIMEOUT_SECONDS
        )
    except TimeoutError:
        checks = {"database": "timeout", "migrations": "unknown", "signing_keys": _keys(runtime)}
    healthy = all(state == OK for state in checks.values())
    return JSONResponse(
        {"status": "ready" if healthy else "not_ready", "checks": checks},
        status_code=200 if healthy else 503,
        headers=NO_STORE,
    )


def readiness(runtime: Runtime) -> dict[str, str]:
    checks = {"database": OK, "migrations": OK, "signing_keys": _keys(runtime)}
    try:
        with runtime.read_engine.connect() as conn:
            at = schema.revisions(conn)
    except SQLAlchemyError:
        checks.update(database="unreachable", migrations="unknown")
        return checks
    if at != head_revisions():
        checks["migrations"] = "not_current"
    return checks


def _keys(runtime: Runtime) -> str:
    return OK if runtime.keys.loaded() else "not_loaded"
