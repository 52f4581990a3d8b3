"""Relying parties and services registered with the IdP."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    ForeignKey,
    LargeBinary,
    String,
    delete,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.driver import AwaitedReads, Columns, Recent, Sql, Target, fetch_one

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


class Client(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of a server-generated 256-bit secret; None for public and private_key_jwt clients.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    is_public: Mapped[bool] = mapped_column(default=False)
    auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    jwks: Mapped[dict[str, object] | None] = mapped_column(JSON)
    access_token_ttl: Mapped[int | None]
    require_pkce: Mapped[bool] = mapped_column(default=True)
    # First-party apps whose users are not asked for consent.
    trusted: Mapped[bool] = mapped_column(default=False)
    refresh_token_idle_ttl: Mapped[int | None]
    refresh_token_absolute_ttl: Mapped[int | None]
    # A resource server that may introspect tokens issued to other clients (RFC 7662 §2.1).
    can_introspect: Mapped[bool] = mapped_column(default=False, server_default=false())
    # OIDC Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    # OIDC Registration §2: the algorithm of this client's ID tokens; None means RS256.
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(16))
    # RFC 8707 / RFC 9068 §3: the audiences (resource servers) this client may ask tokens for
    # with `resource`, the first being the one its tokens get when it names none. None: the
    # server-wide default alone (IDP_ACCESS_TOKEN_AUDIENCE, else the issuer).
    audiences: Mapped[list[str] | None] = mapped_column(JSON)
    # OIDC Registration §2: pages a person may follow from the consent page, and the logo the
    # IdP fetched once from logo_uri and serves from its own origin (client_logos).
    logo_uri: Mapped[str | None] = mapped_column(String(2000))
    client_uri: Mapped[str | None] = mapped_column(String(2000))
    policy_uri: Mapped[str | None] = mapped_column(String(2000))
    tos_uri: Mapped[str | None] = mapped_column(String(2000))
    # The stored logo's SHA-256, here so a page knows there is a logo, and can cache-bust its
    # URL, without reading client_logos.
    logo_sha256: Mapped[str | None] = mapped_column(String(64))
    # Sign-ins for this client need two factors (or a user-verified passkey).
    require_mfa: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A disabled client authenticates nowhere, and its tokens are no longer accepted.
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # When the current secret was made (the linter flags old ones); a rotated-out secret keeps
    # working until previous_secret_expires_at, so deployments can switch over.
    secret_created_at: Mapped[int | None]
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[int | None]
    # Access tokens issued to this client before this time are no longer accepted (a deleted
    # or disabled client, a revocation by an administrator): one comparison on every worker.
    tokens_revoked_before: Mapped[int | None]
    # The last day (Unix days) the client got a token, written at most once a day.
    last_used_day: Mapped[int | None]
    # The roles this client's access tokens may list (under the `roles` scope); None: all.
    roles_visible: Mapped[list[str] | None] = mapped_column(JSON)
    # RFC 7662 §4: the audiences an introspecting resource server serves; it learns about
    # access tokens for them only. None: the server-wide default audience.
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(default=now)


class ClientLogo(Base):
    """A client's logo image, in a table of its own: the clients row that the token endpoint
    reads on every request stays small."""

    __tablename__ = "client_logos"

    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    content_type: Mapped[str] = mapped_column(String(32))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[int]


@dataclass(frozen=True)
class LogoFacts:
    """What a listing says about a logo, without its bytes."""

    content_type: str
    sha256: str
    size: int


def add(db: Session, client: Client) -> Client:
    db.add(client)
    db.flush()
    return client


def get(db: Session, client_id: str) -> Client | None:
    return db.get(Client, client_id)


def add_logo(db: Session, logo: ClientLogo) -> ClientLogo:
    db.add(logo)
    db.flush()
    return logo


def remove_logo(db: Session, client_id: str) -> None:
    db.execute(delete(ClientLogo).where(ClientLogo.client_id == client_id))


def logo(db: Session, client_id: str) -> ClientLogo | None:
    return db.get(ClientLogo, client_id)


def logo_facts(db: Session, client_ids: Collection[str]) -> dict[str, LogoFacts]:
    """client_id -> the facts of its logo, for those of client_ids that have one; the images
    themselves stay in the database."""
    if not client_ids:
        return {}
    rows = db.execute(
        select(
            ClientLogo.client_id,
            ClientLogo.content_type,
            ClientLogo.sha256,
            func.length(ClientLogo.image),  # bytes, for a BLOB (SQLite) and a bytea (PostgreSQL)
        ).where(ClientLogo.client_id.in_(client_ids))
    )
    return {cid: LogoFacts(kind, sha, int(size)) for cid, kind, sha, size in rows}


# The token endpoint's only query, run on the driver's cursor (idp.store.driver): SQLAlchemy's
# execution machinery costs about 40 µs here, against 6 µs for the query itself, and this read
# is all the database work of a client_credentials request.
_CLIENTS = Columns(Client)
_RECORD = Sql(_CLIENTS.select + " WHERE client_id = ?")
_RECENT = Recent(_CLIENTS)


def get_record(db: Target, client_id: str) -> Client | None:
    """The client's columns as a read-only copy, for authlib's questions at the token endpoint:
    read at every request, and made again only when the row changed (store.driver.Recent).

    In a Session it joins the session's transaction; on a bare connection it is a single read.
    """
    row = fetch_one(db, _RECORD, (client_id,))
    return _RECENT.instance(client_id, row) if row is not None else None


async def get_record_awaited(reads: AwaitedReads, client_id: str) -> Client | None:
    """get_record, awaited on the event loop (PostgreSQL: idp.db.loop_reads)."""
    row = await reads.fetch_one(_RECORD.of_style("format"), (client_id,))
    return _RECENT.instance(client_id, row) if row is not None else None


def read(db: Target, client_id: str) -> Client | None:
    """The client as a read-only copy (store.driver.Columns.instance), for the sign-in pages,
    which only read it: a fifth of `get`'s cost, and every page of a sign-in asks."""
    row = fetch_one(db, _RECORD, (client_id,))
    return _RECENT.instance(client_id, row) if row is not None else None


def today() -> int:
    """The current Unix day, as last_used_day counts it."""
    return now() // 86400


def mark_used(db: Session, client_id: str, day: int) -> bool:
    """Record that the client got a token on `day` (Unix days); never moves the day back, so
    workers that race, or a clock a day behind, cannot undo a later write."""
    result = db.execute(
        update(Client)
        .where(
            Client.client_id == client_id,
            or_(Client.last_used_day.is_(None), Client.last_used_day < day),
        )
        .values(last_used_day=day)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


class UsageMemo:
    """Per process: the day each client's last_used_day was last written by this process, so
    only its first token of a day costs a write (thread-safe: tokens are issued in threads)."""

    def __init__(self) -> None:
        self._days: dict[str, int] = {}
        self._lock = threading.Lock()

    def claim(self, client_id: str, day: int) -> bool:
        """True for the first caller of the day for this client: it writes the day."""
        with self._lock:
            if self._days.get(client_id, -1) >= day:
                return False
            self._days[client_id] = day
            return True

    def release(self, client_id: str, day: int) -> None:
        """A write that failed: let the next token of the day try again."""
        with self._lock:
            if self._days.get(client_id) == day:
                del self._days[client_id]


def all_clients(db: Session) -> list[Client]:
    return list(db.scalars(select(Client).order_by(Client.created_at, Client.client_id)))


def search(db: Session, q: str | None, after: tuple[int, str] | None, limit: int) -> list[Client]:
    """Clients newest first, whose id or name contains `q` (any case), after the key
    (created_at, client_id) of the previous page's last one; `limit` rows at most."""
    stmt = select(Client)
    if q:
        needle = q.lower()
        stmt = stmt.where(
            or_(
                func.lower(Client.client_id).contains(needle, autoescape=True),
                func.lower(Client.name).contains(needle, autoescape=True),
            )
        )
    if after is not None:
        created, client_id = after
        stmt = stmt.where(
            or_(
                Client.created_at < created,
                (Client.created_at == created) & (Client.client_id < client_id),
            )
        )
    order = (Client.created_at.desc(), Client.client_id.desc())
    return list(db.scalars(stmt.order_by(*order).limit(limit)))


def count(db: Session) -> tuple[int, int]:
    """How many clients there are, and how many of them are disabled."""
    total, disabled = db.execute(
        select(func.count(), func.count().filter(Client.disabled.is_(True))).select_from(Client)
    ).one()
    return int(total), int(disabled)


def remove(db: Session, client_id: str) -> bool:
    result = db.execute(delete(Client).where(Client.client_id == client_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


class ClientProtocol:
    """The questions authlib asks a client (its ClientMixin), answered from the row."""

    def __init__(self, row: Client) -> None:
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is required; never guess one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if the client may have all of it; None makes it invalid_scope."""
        if not scope:
            return None
        requested = scope.split()
        if not set(requested) <= set(self.row.scopes):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 9700 §4.1.3: exact string matching, no patterns, no normalisation.
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """The current secret, or the rotated-out one until its overlap ends (both compared in
        constant time, and both always compared, so timing does not tell which one matched)."""
        from idp.security.secrets import same, sha256_hex

        if self.row.secret_hash is None:
            return False
        presented = sha256_hex(client_secret)
        current = same(presented, self.row.secret_hash)
        previous_hash = self.row.previous_secret_hash
        expires_at = self.row.previous_secret_expires_at
        previous = same(presented, previous_hash or "")
        return current or (
            previous and previous_hash is not None and expires_at is not None and now() < expires_at
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # authlib asks this of every client that passed its method, at every endpoint: refusing
        # a disabled client here makes its answer invalid_client, exactly a wrong secret's, and
        # reads nothing more than the record the token endpoint read anyway.
        return method == self.row.auth_method and not self.row.disabled

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


def longest_access_token_ttl(db: Session) -> int:
    """The longest access-token lifetime any client overrides the default with (0: none)."""
    return int(db.scalar(select(func.max(Client.access_token_ttl))) or 0)
