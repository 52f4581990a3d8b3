"""/admin: the admin pages (server-rendered HTML), guarded by an MFA-backed admin session
(access.py); each module is one noun and calls the HTTP-free admin services."""

from __future__ import annotations

from fastapi import APIRouter

from idp.admin.pages import (
    approvals,
    audit,
    client_actions,
    clients,
    dashboard,
    keys,
    roles,
    user_actions,
    users,
)

router = APIRouter()
_MODULES = (dashboard, clients, client_actions, keys, users, user_actions, roles, approvals, audit)
for _module in _MODULES:
    router.include_router(_module.router)
