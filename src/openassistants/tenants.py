"""Who owns what: each API key is a tenant, named by a digest of the key (the key is never stored),
and a deployment without keys has one tenant. Shared by the HTTP layer's authentication and by
export/import (portability/), which must name the same tenants."""

from __future__ import annotations

import hashlib

OPEN_TENANT = "default"


def tenant_for_key(key: str) -> str:
    """A stable tenant id derived from the key; the key itself is never stored."""
    return "t_" + hashlib.sha256(key.encode()).hexdigest()[:32]
