"""Sign-ins from a new device: a security event for the trail, the metrics and the person.

The device is the browser's signed device cookie (idp.security.devices): a sign-in whose
browser does not carry one naming this user is from a new device, unless the user never signed
in before (every first sign-in would be "new"). The address counts as new when no sign-in of
theirs came from its network (IPv4 /24, IPv6 /56: what one home or office line holds) in the
last 90 days.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.store import audit as audit_store
from idp.store.base import now

NEW_ADDRESS_DAYS = 90
# The sign-ins compared with, newest first: enough for a person, bounded for a service account.
COMPARED = 500
IPV4_PREFIX, IPV6_PREFIX = 24, 56


def network_of(ip: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def note_sign_in(db: Session, user_id: str, device_knows_user: bool, ip: str | None) -> bool:
    """Record `login.new_device` when this sign-in comes from a new device; true if it did.
    Called before the sign-in's own `login.succeeded` is written."""
    if device_knows_user:
        return False
    since = now() - NEW_ADDRESS_DAYS * 86400
    # The common case first: an address they signed in from lately (so also signed in before).
    if ip and audit_store.signed_in_from(db, user_id, ip, since, COMPARED):
        record(db, AuditEvent.LOGIN_NEW_DEVICE, ip=ip, user_id=user_id)
        return True
    if not audit_store.signed_in_before(db, user_id):
        return False
    network = network_of(ip)
    addresses = audit_store.sign_in_addresses_of(db, user_id, since, COMPARED)
    earlier = {network_of(a) for a in addresses}
    if network is not None and network not in earlier:
        record(db, AuditEvent.LOGIN_NEW_DEVICE, ip=ip, user_id=user_id, new_address=True)
    else:
        record(db, AuditEvent.LOGIN_NEW_DEVICE, ip=ip, user_id=user_id)
    return True
