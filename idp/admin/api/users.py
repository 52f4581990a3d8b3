"""/admin/api/users and /admin/api/roles: list and search users, create them, disable and
enable them, reset their second factors, end their sessions, grant and revoke roles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from idp import deps
from idp.admin import revocation, users as service
from idp.admin.api import schemas
from idp.admin.api.approvals import pending_response
from idp.admin.api.auth import Token, authorize
from idp.admin.api.errors import Invalid, NotFound
from idp.admin.listing import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor
from idp.runtime import Runtime
from idp.store import users
from idp.store.base import now
from idp.store.users import User

router = APIRouter(tags=["users"])

Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Role = Annotated[str, Path(max_length=64)]


def _user(db: Session, user_id: str) -> User:
    user = users.get(db, user_id) if len(user_id) <= 36 else None
    if user is None:
        raise NotFound("user")
    return user


def _out(db: Session, runtime: Runtime, user: User) -> dict[str, Any]:
    return service.describe_user(db, user, runtime.settings)


@router.get("/users", response_model=schemas.UserPage, summary="List and search users")
def list_users(
    token: Token,
    runtime: deps.Rt,
    q: Annotated[str | None, Query(max_length=320, description="part of the email or name")] = None,
    role: Annotated[str | None, Query(max_length=64, description="holders of this role")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """By email; never a password hash or a factor's secret."""
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        try:
            page = service.search_users(db, q=q, role=role, cursor=cursor, limit=limit)
        except InvalidCursor as exc:
            raise Invalid({"cursor": str(exc)}) from None
        items = [_out(db, runtime, u) for u in page.items]
        return {"items": items, "next_cursor": page.next_cursor}


@router.post("/users", status_code=201, response_model=schemas.UserOut, summary="Create a user")
def create_user(body: schemas.NewUser, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    # The password is hashed before the write transaction: argon2 takes a while, and on
    # SQLite the write lock would be held for it.
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=True)
    try:
        new = service.prepare_user(
            runtime.passwords,
            runtime.settings,
            email=body.email,
            password=body.password,
            name=body.name,
            roles_granted=body.roles,
        )
        with deps.transaction(runtime) as db:
            caller = authorize(db, token, write=True)
            return _out(db, runtime, service.add_user(db, new, actor=caller.actor))
    except service.InvalidUser as exc:
        raise Invalid({exc.field: str(exc)}) from None


@router.get("/users/{user_id}", response_model=schemas.UserOut, summary="Show a user")
def show_user(user_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        return _out(db, runtime, _user(db, user_id))


@router.post(
    "/users/{user_id}/disable",
    response_model=schemas.Revoked,
    summary="Disable a user: sessions end, refresh and access tokens are revoked at once",
)
def disable_user(
    user_id: str, token: Token, runtime: deps.Rt, body: schemas.Reason | None = None
) -> dict[str, int]:
    reason = body.reason if body else "admin_api"
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        return schemas.revoked(
            revocation.disable_user(db, _user(db, user_id).id, caller.actor, reason)
        )


@router.post(
    "/users/{user_id}/enable",
    response_model=schemas.StateChange,
    summary="Let a user sign in again; what was revoked stays revoked",
)
def enable_user(user_id: str, token: Token, runtime: deps.Rt) -> dict[str, bool]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        return {"changed": revocation.enable_user(db, _user(db, user_id).id, caller.actor)}


@router.post(
    "/users/{user_id}/sessions/revoke",
    response_model=schemas.Revoked,
    summary="End every session of a user and revoke their tokens",
)
def end_sessions(
    user_id: str, token: Token, runtime: deps.Rt, body: schemas.Reason | None = None
) -> dict[str, int]:
    reason = body.reason if body else "admin_api"
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        return schemas.revoked(
            revocation.revoke_user(db, _user(db, user_id).id, caller.actor, reason)
        )


@router.post(
    "/users/{user_id}/mfa/reset",
    response_model=schemas.Mfa,
    summary="Remove every second factor of a user; returns what there was",
)
def reset_mfa(user_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        before = service.reset_mfa(db, _user(db, user_id).id, actor=caller.actor)
        return {
            "authenticator_app": before.totp,
            "passkeys": before.passkeys,
            "recovery_codes": before.recovery_codes,
        }


@router.put(
    "/users/{user_id}/roles/{role}",
    response_model=schemas.StateChange,
    responses={202: {"model": schemas.PendingChangeOut, "description": "waits for approval"}},
    summary="Grant a role; the user's next token carries it",
)
def grant_role(
    user_id: str,
    role: Role,
    token: Token,
    runtime: deps.Rt,
    body: schemas.GrantIn | None = None,
) -> Any:
    """With `expires_in`, a time-boxed grant; granting again moves its end. The admin role
    answers 202 with a pending change: it applies when a different administrator approves it
    (POST /approvals/{id}/approve), unless no administrator exists yet."""
    until = now() + body.expires_in if body and body.expires_in else None
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        user = _user(db, user_id)
        try:
            granted = service.grant_role(db, user, role, actor=caller.actor, expires_at=until)
        except service.InvalidUser as exc:
            raise Invalid({exc.field: str(exc)}) from None
        if granted.pending is not None:
            return pending_response(granted.pending)
        return {"changed": granted.changed}


@router.delete(
    "/users/{user_id}/roles/{role}",
    response_model=schemas.StateChange,
    summary="Revoke a role",
)
def revoke_role(user_id: str, role: Role, token: Token, runtime: deps.Rt) -> dict[str, bool]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        user = _user(db, user_id)
        return {"changed": service.revoke_role(db, user, role, actor=caller.actor)}


@router.get("/roles", response_model=list[schemas.RoleCount], summary="Roles and their holders")
def list_roles(token: Token, runtime: deps.Rt) -> list[dict[str, Any]]:
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        return [{"role": r, "users": n} for r, n in service.role_holders(db)]
