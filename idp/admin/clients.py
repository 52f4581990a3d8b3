"""Register and remove relying parties; a client secret is returned once and stored as a hash.

Registering is two steps, for every caller (the CLI, and later the admin pages and API):
`fetch_logo(spec, policy)` validates the registration, resolves the hosts of the URLs this
server will call (jwks_uri, backchannel_logout_uri) against the address policy and fetches the
logo, with no transaction open, since it waits on other hosts; then
`register(db, spec, logo, policy=policy)` writes the client and its logo in the caller's
transaction, with no I/O (it checks the URLs again, all but the name lookups).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from idp import outbound
from idp.admin import approvals
from idp.admin.client_uris import (
    REFUSED_ADDRESS,
    InvalidClient as InvalidClient,  # re-exported: the name admin callers catch
    InvalidRegistration as InvalidRegistration,  # re-exported: callers catch it from here
    check_audience,
    check_fetched_url,
    check_redirect_uri,
    check_url,
)
from idp.admin.listing import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page_of
from idp.audit.events import AuditEvent, record
from idp.outbound import OutboundPolicy
from idp.protocol.client_jwks import key_problem
from idp.security.secrets import new_id, new_secret, sha256_hex
from idp.settings import SUPPORTED_ALGS
from idp.store import clients
from idp.store.approvals import CLIENT_SCOPES, PendingChange
from idp.store.base import now
from idp.store.clients import AUTH_METHODS, GRANT_TYPES, Client, ClientLogo, LogoFacts
from idp.store.roles import NAME as ROLE_NAME

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
MIN_TTL, MAX_TTL = 30, 86400


@dataclass
class ClientSpec:
    name: str
    grant_types: list[str]
    scopes: list[str]
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    public: bool = False
    auth_method: str | None = None
    jwks_uri: str | None = None
    jwks: dict[str, object] | None = None
    access_token_ttl: int | None = None
    require_pkce: bool = True
    trusted: bool = False
    # Sign-ins for this client need two factors (OIDC: acr aal2 or better, amr mfa).
    require_mfa: bool = False
    id_token_signed_response_alg: str | None = None
    refresh_token_idle_ttl: int | None = None
    refresh_token_absolute_ttl: int | None = None
    can_introspect: bool = False
    backchannel_logout_uri: str | None = None
    # RFC 8707: the audiences it may ask tokens for, its default first (None: the server's).
    audiences: list[str] | None = None
    logo_uri: str | None = None
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None
    # The roles its access tokens may list (None: all the user holds), so an app for
    # auditors never learns who is an admin.
    roles_visible: list[str] | None = None
    # The audiences it serves, when it may introspect (None: the server-wide default).
    resources: list[str] | None = None

    def fetched_uris(self) -> dict[str, str]:
        """The URLs this server sends requests to once the client is registered."""
        uris = {"jwks_uri": self.jwks_uri, "backchannel_logout_uri": self.backchannel_logout_uri}
        return {what: uri for what, uri in uris.items() if uri}

    def metadata_uris(self) -> dict[str, str | None]:
        """OIDC Registration §2: the URIs a consent page may show, by their metadata names."""
        return {
            "logo_uri": self.logo_uri,
            "client_uri": self.client_uri,
            "policy_uri": self.policy_uri,
            "tos_uri": self.tos_uri,
        }


@dataclass(frozen=True)
class Logo:
    """The image at a registration's logo_uri, fetched once, to be served from this origin."""

    uri: str
    content_type: str
    image: bytes
    sha256: str
    fetched_at: int

    @property
    def facts(self) -> LogoFacts:
        return LogoFacts(self.content_type, self.sha256, len(self.image))


@dataclass
class Registered:
    client: Client
    client_secret: str | None  # shown once, never stored
    # The admin API scopes asked for, waiting for a second administrator (the client is
    # registered without them meanwhile).
    pending: PendingChange | None = None


@dataclass
class Updated:
    client: Client
    # As Registered.pending: the admin scopes this update added wait; the rest applied.
    pending: PendingChange | None = None


def _gate_scopes(
    db: Session, client_id: str, added: list[str], actor: str | None
) -> PendingChange | None:
    """The approval gate for admin API scopes added to a client (none added: None)."""
    wanted = approvals.admin_scopes(added)
    if not wanted:
        return None
    change = approvals.Wanted(CLIENT_SCOPES, client_id=client_id, scopes=tuple(wanted))
    return approvals.gate(db, change, actor=actor)


def load_jwks_file(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRegistration(f"cannot read JWKS file {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidRegistration(f"{path} is not a JWK Set (no 'keys' list)")
    try:
        check_jwks(document)
    except InvalidRegistration as exc:
        raise InvalidRegistration(f"{path}: {exc}") from None
    return document


def check_jwks(document: dict[str, object]) -> None:
    """A registered JWK Set: at least one key, and every key public and strong enough for the
    assertion algorithms we verify (idp.protocol.client_jwks), and readable as a key."""
    keys = document.get("keys")
    if not isinstance(keys, list) or not keys:
        raise InvalidRegistration("jwks must be a JWK Set with at least one key")
    for number, key in enumerate(keys, 1):
        problem = key_problem(key)
        kid = f" ({key.get('kid')!r})" if isinstance(key, dict) and "kid" in key else ""
        if problem is not None:
            raise InvalidRegistration(f"jwks: key {number}{kid} {problem}")
        try:
            KeySet.import_key_set({"keys": [key]})
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidRegistration(f"jwks: key {number}{kid} is not a valid JWK") from None


class _Problems:
    """The field errors of one registration or update, collected so a caller sees them all."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def add(self, name: str, reason: str) -> None:
        self.fields.setdefault(name, reason)

    def check(
        self, name: str, check: Callable[..., object], *args: object, prefix: str = ""
    ) -> None:
        """Run one of client_uris' checks; its one-line reason goes under the field's name
        (without the leading name the check itself put in, e.g. "logo_uri ")."""
        try:
            check(*args)
        except InvalidRegistration as exc:
            self.add(name, str(exc).removeprefix(prefix))

    def raise_any(self) -> None:
        if self.fields:
            raise InvalidRegistration(fields=self.fields)


def _validate(spec: ClientSpec, policy: OutboundPolicy) -> str:
    """Check the whole registration (RFC 7591 §2 field names in the errors); returns the token
    endpoint auth method. Registration and update_client() both call it, so a client can never
    be changed into one that registration would refuse."""
    p = _Problems()
    if not spec.name.strip() or len(spec.name) > 200:
        p.add("client_name", "must be 1 to 200 characters")
    if not spec.grant_types:
        p.add("grant_types", "at least one grant type is required")
    for i, grant in enumerate(spec.grant_types):
        if grant not in GRANT_TYPES:
            choose = ", ".join(GRANT_TYPES)
            p.add(f"grant_types[{i}]", f"unknown grant type {grant!r}; choose from {choose}")
    grants = set(spec.grant_types)
    if "refresh_token" in grants and "authorization_code" not in grants:
        p.add("grant_types", "refresh_token needs the authorization_code grant")
    for scope in spec.scopes:
        if not SCOPE_TOKEN.match(scope):
            p.add("scope", f"{scope!r} is not a valid scope token")
    if "authorization_code" in grants and not spec.redirect_uris:
        p.add("redirect_uris", "authorization_code needs at least one redirect URI")
    for i, uri in enumerate(spec.redirect_uris):
        p.check(f"redirect_uris[{i}]", check_redirect_uri, uri)
    for i, uri in enumerate(spec.post_logout_redirect_uris):
        p.check(f"post_logout_redirect_uris[{i}]", check_redirect_uri, uri, "post-logout URI")
    method = spec.auth_method or ("none" if spec.public else "client_secret_basic")
    if method not in AUTH_METHODS:
        p.add("token_endpoint_auth_method", f"unknown auth method {method!r}")
    elif spec.public != (method == "none"):
        p.add("token_endpoint_auth_method", "a public client uses none, and only it does")
    if spec.public and "client_credentials" in grants:
        p.add("grant_types", "client_credentials is for confidential clients only")
    if spec.public and not spec.require_pkce:
        p.add("require_pkce", "a public client must use PKCE")
    if method == "private_key_jwt" and not (spec.jwks_uri or spec.jwks):
        p.add("token_endpoint_auth_method", "private_key_jwt needs jwks or jwks_uri")
    if spec.jwks_uri and spec.jwks:
        p.add("jwks", "give jwks or jwks_uri, not both")
    if spec.jwks is not None:
        p.check("jwks", check_jwks, spec.jwks, prefix="jwks: ")
    for what, uri in spec.fetched_uris().items():
        p.check(what, check_fetched_url, uri, what, policy, prefix=what + " ")
    for what, value in spec.metadata_uris().items():
        if value is not None:
            p.check(what, check_url, value, what, prefix=what + " ")
    for name in ("refresh_token_idle_ttl", "refresh_token_absolute_ttl"):
        ttl = getattr(spec, name)
        if ttl is not None and not 60 <= ttl <= 365 * 86400:
            p.add(name, "refresh token lifetimes must be 60 s to 365 days")
        elif ttl and "refresh_token" not in grants:
            p.add(name, "refresh token lifetimes need the refresh_token grant")
    for i, audience in enumerate(spec.audiences or []):
        p.check(f"audiences[{i}]", check_audience, audience)
    for i, resource in enumerate(spec.resources or []):
        p.check(f"resources[{i}]", check_audience, resource)
    if spec.resources is not None and not spec.can_introspect:
        p.add("resources", "only a client that may introspect (can_introspect) serves resources")
    for i, role in enumerate(spec.roles_visible or []):
        if not ROLE_NAME.match(role):
            p.add(f"roles_visible[{i}]", f"{role!r} is not a role name")
    alg = spec.id_token_signed_response_alg
    if alg is not None and alg not in SUPPORTED_ALGS:
        p.add("id_token_signed_response_alg", f"unsupported ID token algorithm {alg!r}")
    if spec.access_token_ttl is not None and not MIN_TTL <= spec.access_token_ttl <= MAX_TTL:
        p.add("access_token_ttl", f"access token TTL must be {MIN_TTL} to {MAX_TTL} seconds")
    p.raise_any()
    return method


def _unique(values: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(values)) if values is not None else None


def fetch_logo(
    spec: ClientSpec, policy: OutboundPolicy, *, deadline: float = outbound.LOGO_DEADLINE
) -> Logo | None:
    """Validate the registration, check the addresses the hosts of its jwks_uri and
    backchannel_logout_uri resolve to, then fetch its logo (None without a logo_uri).

    Call it with no transaction open: it waits up to `deadline` on other hosts. Nothing is
    fetched for a registration that is not valid; a logo that cannot be had refuses it. A name
    that does not resolve (yet) is accepted: it is checked again at every connection."""
    _validate(spec, policy)
    return _fetch(spec, policy, deadline)


def _fetch(spec: ClientSpec, policy: OutboundPolicy, deadline: float) -> Logo | None:
    """fetch_logo()'s I/O, for a spec already validated."""
    for what, uri in spec.fetched_uris().items():
        try:
            outbound.check_target(uri, policy, deadline=deadline)
        except outbound.OutboundError as exc:
            if str(exc) == "refused address":
                raise InvalidRegistration(fields={what: f"{uri!r}: {REFUSED_ADDRESS}"}) from None
            if str(exc) == "refused URL":
                reason = f"{uri!r} is not a URL this server fetches"
                raise InvalidRegistration(fields={what: reason}) from None
            # A name that does not resolve (yet), or a slow resolver: checked at each connect.
    if spec.logo_uri is None:
        return None
    try:
        image = outbound.fetch_image(spec.logo_uri, policy, deadline=deadline)
    except outbound.OutboundError as exc:
        reason = f"could not fetch the logo ({exc})"
        raise InvalidRegistration(fields={"logo_uri": reason}) from None
    digest = hashlib.sha256(image.body).hexdigest()
    return Logo(spec.logo_uri, image.content_type, image.body, digest, now())


def register(
    db: Session,
    spec: ClientSpec,
    logo: Logo | None = None,
    *,
    policy: OutboundPolicy,
    actor: str | None = None,
) -> Registered:
    """Write the client, and the logo fetch_logo(spec) returned, in the caller's transaction.
    The audit event holds its whole registration, never its secret. An admin API scope
    among it waits for a second administrator (idp.admin.approvals): the client is registered
    without it, and `pending` is the change to approve."""
    method = _validate(spec, policy)
    if (logo.uri if logo else None) != spec.logo_uri:
        # A programming error, not a bad registration: a client with a logo_uri always has
        # its logo, so pages never link to one that is missing.
        raise ValueError("register() needs the logo that fetch_logo(spec) returned")
    secret = new_secret() if method in ("client_secret_basic", "client_secret_post") else None
    client = clients.add(
        db,
        Client(
            client_id=new_id(18),
            name=spec.name.strip(),
            secret_hash=sha256_hex(secret) if secret else None,
            secret_created_at=now() if secret else None,
            is_public=spec.public,
            auth_method=method,
            redirect_uris=list(dict.fromkeys(spec.redirect_uris)),
            post_logout_redirect_uris=list(dict.fromkeys(spec.post_logout_redirect_uris)),
            grant_types=list(dict.fromkeys(spec.grant_types)),
            scopes=[
                s
                for s in dict.fromkeys(spec.scopes)
                if s not in approvals.admin_scopes(spec.scopes)
            ],
            jwks_uri=spec.jwks_uri,
            jwks=spec.jwks,
            access_token_ttl=spec.access_token_ttl,
            require_pkce=spec.require_pkce,
            trusted=spec.trusted,
            require_mfa=spec.require_mfa,
            id_token_signed_response_alg=spec.id_token_signed_response_alg,
            refresh_token_idle_ttl=spec.refresh_token_idle_ttl,
            refresh_token_absolute_ttl=spec.refresh_token_absolute_ttl,
            can_introspect=spec.can_introspect,
            backchannel_logout_uri=spec.backchannel_logout_uri,
            audiences=_unique(spec.audiences),
            roles_visible=_unique(spec.roles_visible),
            resources=_unique(spec.resources),
            **spec.metadata_uris(),
            logo_sha256=logo.sha256 if logo else None,
        ),
    )
    pending = _gate_scopes(db, client.client_id, spec.scopes, actor)
    if pending is None:
        client.scopes = list(dict.fromkeys(spec.scopes))
        db.flush()
    if logo:
        _add_logo(db, client.client_id, logo)
    detail = {"logo_sha256": logo.sha256} if logo else {}
    record(
        db,
        AuditEvent.CLIENT_CREATED,
        client_id=client.client_id,
        actor=actor,
        name=client.name,
        # One key for the whole registration, as in CLIENT_UPDATED (record() screens only
        # top-level keys, and token_endpoint_auth_method would look secret).
        registration=_metadata(client),
        **detail,
    )
    return Registered(client=client, client_secret=secret, pending=pending)


# RFC 7591 §2 metadata names (and this server's own) that update_client() takes, with the
# ClientSpec attribute each one sets and the JSON type its value must have.
UPDATABLE: dict[str, tuple[str, str]] = {
    "client_name": ("name", "str"),
    "redirect_uris": ("redirect_uris", "list"),
    "post_logout_redirect_uris": ("post_logout_redirect_uris", "list"),
    "grant_types": ("grant_types", "list"),
    "scope": ("scopes", "scope"),
    "token_endpoint_auth_method": ("auth_method", "str"),
    "jwks": ("jwks", "dict?"),
    "jwks_uri": ("jwks_uri", "str?"),
    "backchannel_logout_uri": ("backchannel_logout_uri", "str?"),
    "logo_uri": ("logo_uri", "str?"),
    "client_uri": ("client_uri", "str?"),
    "policy_uri": ("policy_uri", "str?"),
    "tos_uri": ("tos_uri", "str?"),
    "require_pkce": ("require_pkce", "bool"),
    "trusted": ("trusted", "bool"),
    "require_mfa": ("require_mfa", "bool"),
    "can_introspect": ("can_introspect", "bool"),
    "access_token_ttl": ("access_token_ttl", "int?"),
    "refresh_token_idle_ttl": ("refresh_token_idle_ttl", "int?"),
    "refresh_token_absolute_ttl": ("refresh_token_absolute_ttl", "int?"),
    "id_token_signed_response_alg": ("id_token_signed_response_alg", "str?"),
    "audiences": ("audiences", "list?"),
    "roles_visible": ("roles_visible", "list?"),
    "resources": ("resources", "list?"),
}
_SECRET_METHODS = ("client_secret_basic", "client_secret_post")


def spec_from_metadata(metadata: Mapping[str, object]) -> ClientSpec:
    """A registration from RFC 7591 §2 client metadata (the names update_client() takes);
    raises InvalidRegistration naming every field with the wrong type or an unknown name.
    RFC 7591's defaults apply: grant_types ["authorization_code"], token_endpoint_auth_method
    client_secret_basic; "none" makes a public client."""
    spec = ClientSpec(name="", grant_types=["authorization_code"], scopes=[])
    p = _Problems()
    if "client_name" not in metadata:
        p.add("client_name", "is required")
    _set_fields(spec, metadata, p, "not a client field")
    p.raise_any()
    spec.public = spec.auth_method == "none"
    return spec


def _set_fields(
    spec: ClientSpec, metadata: Mapping[str, object], p: _Problems, unknown: str
) -> None:
    """Set each field by its RFC 7591 name, of the JSON type it must have; a wrong type or an
    unknown name (`unknown` says why) is a problem of that field."""
    for name, value in metadata.items():
        if name not in UPDATABLE:
            p.add(name, unknown)
            continue
        attr, kind = UPDATABLE[name]
        typed, problem = _typed(kind, value)
        if problem:
            p.add(name, problem)
        else:
            setattr(spec, attr, typed)


def search_clients(
    db: Session, *, q: str | None = None, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> Page[Client]:
    """Clients newest first whose id or name contains `q`. Raises InvalidCursor for a cursor
    not of this list, ValueError for a bad limit."""
    after = decode_cursor(cursor, (int, str))
    key = (cast(int, after[0]), cast(str, after[1])) if after else None
    rows = clients.search(db, q, key, check_limit(limit) + 1)
    return page_of(rows, limit, lambda c: (c.created_at, c.client_id))


def spec_of(client: Client) -> ClientSpec:
    """The registration that would make this client as it is now."""
    return ClientSpec(
        name=client.name,
        grant_types=list(client.grant_types),
        scopes=list(client.scopes),
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        public=client.is_public,
        auth_method=client.auth_method,
        jwks_uri=client.jwks_uri,
        jwks=client.jwks,
        access_token_ttl=client.access_token_ttl,
        require_pkce=client.require_pkce,
        trusted=client.trusted,
        require_mfa=client.require_mfa,
        id_token_signed_response_alg=client.id_token_signed_response_alg,
        refresh_token_idle_ttl=client.refresh_token_idle_ttl,
        refresh_token_absolute_ttl=client.refresh_token_absolute_ttl,
        can_introspect=client.can_introspect,
        backchannel_logout_uri=client.backchannel_logout_uri,
        audiences=_unique(client.audiences),
        roles_visible=_unique(client.roles_visible),
        resources=_unique(client.resources),
        logo_uri=client.logo_uri,
        client_uri=client.client_uri,
        policy_uri=client.policy_uri,
        tos_uri=client.tos_uri,
    )


def _typed(kind: str, value: object) -> tuple[object, str | None]:
    """The value in the form ClientSpec keeps it, or the reason it has the wrong JSON type."""
    if value is None and kind.endswith("?"):
        return None, None
    base = kind.rstrip("?")
    if base in ("str", "scope") and isinstance(value, str):
        return (list(dict.fromkeys(value.split())) if base == "scope" else value), None
    if base == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(dict.fromkeys(value)), None
    if base == "bool" and isinstance(value, bool):
        return value, None
    # bool is an int in Python, never a lifetime
    if base == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if base == "dict" and isinstance(value, dict):
        return value, None
    wanted = {
        "str": "a string",
        "scope": "a space-separated string",
        "list": "a list of strings",
        "bool": "true or false",
        "int": "an integer",
        "dict": "a JSON object",
    }[base]
    return None, f"must be {wanted}" + (" or null" if kind.endswith("?") else "")


def check_update(
    client: Client, changes: Mapping[str, object], policy: OutboundPolicy
) -> ClientSpec:
    """The client as it would be after `changes` (RFC 7591 §2 names), checked as registration
    checks a new one; raises InvalidClient naming every field that cannot be so. No I/O."""
    spec = spec_of(client)
    p = _Problems()
    _set_fields(spec, changes, p, "not a client field that can be changed")
    p.raise_any()
    method = spec.auth_method
    if method != client.auth_method:
        if (method == "none") != client.is_public:
            # Public and confidential clients differ in more than the method (a secret, PKCE,
            # the grants they may use): that is a new registration.
            p.add(
                "token_endpoint_auth_method",
                "cannot turn a public client into a "
                "confidential one or back; register a new client",
            )
        elif method in _SECRET_METHODS and client.secret_hash is None:
            p.add(
                "token_endpoint_auth_method",
                "this client has no secret; create one "
                "(idp clients rotate-secret) before switching to a client_secret method",
            )
    p.raise_any()
    _validate(spec, policy)
    return spec


def fetch_for_update(
    client: Client,
    changes: Mapping[str, object],
    policy: OutboundPolicy,
    *,
    deadline: float = outbound.LOGO_DEADLINE,
) -> Logo | None:
    """As fetch_logo() for a registration, for the URLs `changes` sets: check the update, then
    the addresses of a changed jwks_uri or backchannel_logout_uri, then fetch a changed logo.
    Call it with no transaction open; None when the logo does not change (or is removed)."""
    spec = check_update(client, changes, policy)
    current = spec_of(client)
    changed = {k: v for k, v in spec.fetched_uris().items() if v != getattr(current, k)}
    probe = ClientSpec(name=spec.name, grant_types=[], scopes=[], **changed)  # type: ignore[arg-type]
    if spec.logo_uri != client.logo_uri:
        probe.logo_uri = spec.logo_uri
    # fetch_logo() would validate `probe` as a whole registration; only its I/O is wanted.
    return _fetch(probe, policy, deadline)


def update_client(
    db: Session,
    client_id: str,
    changes: Mapping[str, object],
    actor: str,
    *,
    policy: OutboundPolicy,
    logo: Logo | None = None,
) -> Client:
    """change_client(), for callers that need only the client."""
    return change_client(db, client_id, changes, actor, policy=policy, logo=logo).client


def change_client(
    db: Session,
    client_id: str,
    changes: Mapping[str, object],
    actor: str,
    *,
    policy: OutboundPolicy,
    logo: Logo | None = None,
) -> Updated:
    """Apply `changes` (RFC 7591 §2 names) to the client in the caller's transaction, after
    checking them all; one CLIENT_UPDATED event holds each changed field before and after.
    An admin API scope added waits for a second administrator (`pending`); the other changes
    apply at once, and removing a scope never waits.

    `logo` is what fetch_for_update() returned for the same changes. Raises LookupError for an
    unknown client and InvalidClient (nothing written) for changes it would refuse."""
    client = clients.get(db, client_id)
    if client is None:
        raise LookupError(client_id)
    spec = check_update(client, changes, policy)
    added = [s for s in spec.scopes if s not in client.scopes]
    pending = _gate_scopes(db, client_id, added, actor)
    if pending is not None:
        spec.scopes = [s for s in spec.scopes if s not in (pending.scopes or [])]
    new_logo = spec.logo_uri if spec.logo_uri != client.logo_uri else None
    if (logo.uri if logo else None) != new_logo:
        raise ValueError("update_client() needs the logo that fetch_for_update() returned")
    before, before_logo = _metadata(client), client.logo_sha256
    for attr, _kind in UPDATABLE.values():  # ClientSpec and Client name these alike
        setattr(client, attr, getattr(spec, attr))
    client.name = spec.name.strip()
    if client.auth_method not in _SECRET_METHODS and before["token_endpoint_auth_method"] in (
        _SECRET_METHODS
    ):
        # A secret the client can no longer authenticate with is a liability, not a fallback.
        client.secret_hash = client.secret_created_at = None
        client.previous_secret_hash = client.previous_secret_expires_at = None
    if spec.logo_uri != before["logo_uri"]:
        clients.remove_logo(db, client_id)
        client.logo_sha256 = logo.sha256 if logo else None
        if logo:
            _add_logo(db, client_id, logo)
    after = _metadata(client)
    diff: dict[str, object] = {
        k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]
    }
    if client.logo_sha256 != before_logo:
        diff["logo_sha256"] = {"before": before_logo, "after": client.logo_sha256}
    db.flush()
    if not diff:
        return Updated(client, pending)  # nothing changed, nothing to audit
    # One key for the whole change: record() drops detail keys that look secret, and
    # token_endpoint_auth_method would be one of them.
    record(db, AuditEvent.CLIENT_UPDATED, client_id=client_id, actor=actor, changes=diff)
    return Updated(client, pending)


def _metadata(client: Client) -> dict[str, object]:
    """The client's updatable fields by their RFC 7591 names, as JSON (none of them secret)."""
    out: dict[str, object] = {}
    for name, (attr, _kind) in UPDATABLE.items():
        value = getattr(client, attr)
        if name == "scope":
            value = " ".join(value)
        elif isinstance(value, list):
            value = list(value)
        out[name] = value
    return out


def _add_logo(db: Session, client_id: str, logo: Logo) -> None:
    clients.add_logo(
        db,
        ClientLogo(
            client_id=client_id,
            content_type=logo.content_type,
            image=logo.image,
            sha256=logo.sha256,
            fetched_at=logo.fetched_at,
        ),
    )


def remove(db: Session, client_id: str, actor: str | None = None) -> bool:
    """Delete the client; the audit event keeps what it was registered as."""
    client = clients.get(db, client_id)
    if client is None:
        return False
    before = _metadata(client)
    clients.remove(db, client_id)
    record(db, AuditEvent.CLIENT_DELETED, client_id=client_id, actor=actor, registration=before)
    return True


def describe_all(db: Session, rows: Sequence[Client]) -> list[dict[str, object]]:
    """describe() each client, with the facts of its logo (one query for them all)."""
    logos = clients.logo_facts(db, [c.client_id for c in rows if c.logo_sha256])
    return [describe(c, logo=logos.get(c.client_id)) for c in rows]


def describe(client: Client, *, logo: LogoFacts | None) -> dict[str, object]:
    """A client as JSON: its metadata by the RFC 7591 §2 names (update_client() takes the
    same), then its state. Never a secret or a secret's hash; the logo's facts, not the image."""
    return {
        "client_id": client.client_id,
        **_metadata(client),
        "public": client.is_public,
        "disabled": client.disabled,
        "secret_created_at": client.secret_created_at,
        "previous_secret_expires_at": client.previous_secret_expires_at,
        "last_used_day": client.last_used_day,
        "logo": (
            {"content_type": logo.content_type, "sha256": logo.sha256, "bytes": logo.size}
            if logo
            else None
        ),
        # RFC 7591 §3.2.1
        "client_id_issued_at": client.created_at,
    }
