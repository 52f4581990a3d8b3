"""The long-lived parts of one app (one per process): built once in create_app, read by requests.

Nothing here is state that other workers would need to see; it is configuration, a connection
pool, and caches of what the database holds (the parsed key ring).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp.authn.passwords import Passwords
from idp.keystore import KeyRing
from idp.protocol.tokens import TokenService
from idp.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # The same pool, for units of work that only read (the client_credentials hot path).
    read_engine: Engine
    keys: KeyRing
    tokens: TokenService
    passwords: Passwords
    # Derives each refresh token's successor (HKDF of the key-encryption key).
    refresh_key: bytes
