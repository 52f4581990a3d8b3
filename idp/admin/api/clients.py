"""/admin/api/clients: register, list, show, change, disable, enable and delete clients, and
rotate their secrets, through the same admin services as the pages and the CLI.

A registration or a change that names a logo_uri, jwks_uri or backchannel_logout_uri waits on
other hosts: that happens after a read-only check of the caller and before the one write
transaction, which checks the caller again (ARCHITECTURE: no network wait inside one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from idp import deps
from idp.admin import clients as service, lint, revocation
from idp.admin.api import schemas
from idp.admin.api.approvals import pending_response
from idp.admin.api.auth import Token, authorize
from idp.admin.api.errors import Conflict, Invalid, NotFound
from idp.admin.clients import InvalidRegistration
from idp.admin.listing import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor
from idp.runtime import Runtime
from idp.store import clients
from idp.store.clients import Client

router = APIRouter(prefix="/clients", tags=["clients"])

Q = Annotated[str | None, Query(max_length=200, description="part of the id or the name")]
Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _out(db: Session, runtime: Runtime, rows: list[Client]) -> list[dict[str, Any]]:
    day = clients.today()
    described = service.describe_all(db, rows)
    for row, out in zip(rows, described, strict=True):
        out["lint"] = [f.as_json() for f in lint.findings(row, runtime.settings, day)]
    return described


def _client(db: Session, client_id: str) -> Client:
    client = clients.get(db, client_id)
    if client is None:
        raise NotFound("client")
    return client


def _check_alg(runtime: Runtime, metadata: dict[str, Any]) -> None:
    alg = metadata.get("id_token_signed_response_alg")
    if isinstance(alg, str) and alg not in runtime.settings.enabled_algs:
        reason = f"{alg} is not enabled on this server (IDP_SIGNING_ALGS)"
        raise Invalid({"id_token_signed_response_alg": reason})


@router.get("", response_model=schemas.ClientPage, summary="List and search clients")
def list_clients(
    token: Token,
    runtime: deps.Rt,
    q: Q = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Newest first; never a secret."""
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        try:
            page = service.search_clients(db, q=q, cursor=cursor, limit=limit)
        except InvalidCursor as exc:
            raise Invalid({"cursor": str(exc)}) from None
        return {"items": _out(db, runtime, page.items), "next_cursor": page.next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=schemas.ClientCreated,
    responses={202: {"model": schemas.ClientCreatedPending, "description": "admin scopes wait"}},
    summary="Register a client; its secret is in this answer only",
)
def create_client(body: schemas.ClientRegistration, token: Token, runtime: deps.Rt) -> Any:
    """An admin API scope asked for answers 202: the client is registered without it, and
    the pending change applies it once a different administrator approves."""
    metadata = body.model_dump(exclude_unset=True)
    _check_alg(runtime, metadata)
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=True)  # before waiting on anyone's host
    try:
        spec = service.spec_from_metadata(metadata)
        logo = service.fetch_logo(spec, runtime.outbound)
        with deps.transaction(runtime) as db:
            caller = authorize(db, token, write=True)
            made = service.register(db, spec, logo, policy=runtime.outbound, actor=caller.actor)
            (out,) = _out(db, runtime, [made.client])
    except InvalidRegistration as exc:
        raise Invalid(exc.fields, str(exc)) from None
    created = {**out, "client_secret": made.client_secret}
    if made.pending is not None:
        return pending_response(made.pending, client=created)
    return created


@router.get("/{client_id}", response_model=schemas.ClientOut, summary="Show a client")
def show_client(client_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        (out,) = _out(db, runtime, [_client(db, client_id)])
        return out


@router.patch(
    "/{client_id}",
    response_model=schemas.ClientOut,
    responses={202: {"model": schemas.ClientUpdatedPending, "description": "admin scopes wait"}},
    summary="Change a client's registration",
)
def update_client(
    client_id: str, body: schemas.ClientUpdate, token: Token, runtime: deps.Rt
) -> Any:
    """Every field given is checked, as registration checks a new client, before anything is
    written; the audit event holds each changed field before and after. An admin API scope
    added answers 202: the other changes apply, the scope waits for approval."""
    changes = body.model_dump(exclude_unset=True)
    _check_alg(runtime, changes)
    try:
        with deps.read_transaction(runtime) as db:
            authorize(db, token, write=True)
            current = _client(db, client_id)
            db.expunge(current)
        logo = service.fetch_for_update(current, changes, runtime.outbound)
        with deps.transaction(runtime) as db:
            caller = authorize(db, token, write=True)
            try:
                updated = service.change_client(
                    db, client_id, changes, caller.actor, policy=runtime.outbound, logo=logo
                )
            except LookupError:
                raise NotFound("client") from None
            except ValueError as exc:
                if isinstance(exc, InvalidRegistration):
                    raise
                raise Conflict("the client changed meanwhile; send the change again") from None
            (out,) = _out(db, runtime, [updated.client])
            if updated.pending is not None:
                return pending_response(updated.pending, client=out)
            return out
    except InvalidRegistration as exc:
        raise Invalid(exc.fields, str(exc)) from None


@router.post(
    "/{client_id}/disable",
    response_model=schemas.Revoked,
    summary="Disable a client; its tokens are revoked at once",
)
def disable_client(
    client_id: str, token: Token, runtime: deps.Rt, body: schemas.Reason | None = None
) -> dict[str, int]:
    reason = body.reason if body else "admin_api"
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            return schemas.revoked(revocation.disable_client(db, client_id, caller.actor, reason))
        except revocation.NoSuchClient:
            raise NotFound("client") from None


@router.post(
    "/{client_id}/enable",
    response_model=schemas.StateChange,
    summary="Enable a client again; its old tokens stay revoked",
)
def enable_client(client_id: str, token: Token, runtime: deps.Rt) -> dict[str, bool]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            return {"changed": revocation.enable_client(db, client_id, caller.actor)}
        except revocation.NoSuchClient:
            raise NotFound("client") from None


@router.delete(
    "/{client_id}",
    response_model=schemas.Revoked,
    summary="Delete a client; its tokens are revoked at once",
)
def delete_client(client_id: str, token: Token, runtime: deps.Rt) -> dict[str, int]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            return schemas.revoked(revocation.delete_client(db, client_id, caller.actor))
        except revocation.NoSuchClient:
            raise NotFound("client") from None


@router.post(
    "/{client_id}/secret",
    response_model=schemas.SecretRotated,
    summary="Rotate a client's secret; the old one works for the overlap, then dies",
)
def rotate_secret(
    client_id: str, token: Token, runtime: deps.Rt, body: schemas.SecretRotation | None = None
) -> dict[str, Any]:
    overlap = body.overlap_seconds if body else schemas.SecretRotation().overlap_seconds
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            secret = revocation.rotate_secret(db, client_id, caller.actor, overlap)
        except revocation.NoSuchClient:
            raise NotFound("client") from None
        except revocation.NotASecretClient as exc:
            raise Conflict(str(exc)) from None
        client = _client(db, client_id)
        return {
            "client_id": client_id,
            "client_secret": secret,
            "previous_secret_expires_at": client.previous_secret_expires_at,
        }
