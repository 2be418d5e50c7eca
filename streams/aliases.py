"""Simple alias detection: which existing user, if any, a newly seen address is an alias of.

Only the simple cases the vendor detects: the same local part in another registered domain of
the tenant (``first.last@domain2`` for ``first.last@domain1``), and sub-addresses
(``first.last+news@domain1``). All such addresses share one route key, so every candidate is in
the group of records the worker already holds for the message: no lookup leaves the partition.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from smtp_discovery.schemas.address import Address, parse_address
from smtp_discovery.schemas.state import AddressRecord, AddressStatus


def candidates(
    address: Address, group: Iterable[AddressRecord], registered: Collection[str]
) -> list[AddressRecord]:
    """Users this address could be an alias of, best match first.

    For a sub-address, a user with the base address in the same domain is the only candidate
    when it exists; otherwise users with that local part in the tenant's other domains are.
    """
    users = []
    for record in group:
        if record.status is not AddressStatus.USER:
            continue
        other = parse_address(record.address)
        if other.normalized == address.normalized or other.domain not in registered:
            continue
        if other.normalized_local == address.base_local:
            users.append((other, record))
    if address.is_subaddress:
        same_domain = [r for o, r in users if o.domain == address.domain]
        if same_domain:
            return same_domain
    return sorted(
        (r for o, r in users if o.domain != address.domain), key=lambda r: r.address.lower()
    )
