"""/admin: the admin pages (server-rendered HTML), guarded by an MFA-backed admin session
(access.py); each module is one noun and calls the HTTP-free admin services."""

from __future__ import annotations

from fastapi import APIRouter

from idp.admin.pages import (
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
for _module in (dashboard, clients, client_actions, keys, users, user_actions, roles, audit):
    router.include_router(_module.router)
