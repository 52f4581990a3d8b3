"""SQLAlchemy tables and the queries on them, one module per aggregate. Functions never commit."""

from idp.store import (  # noqa: F401  (import every table so metadata is complete)
    approvals,
    assertions,
    audit,
    audit_chain,
    clients,
    codes,
    consents,
    factors,
    interactions,
    keys,
    logout_deliveries,
    refresh_tokens,
    revocations,
    roles,
    sessions,
    throttle,
    users,
    webauthn,
    webhook_cursor,
)
from idp.store.base import Base

metadata = Base.metadata
