"""Whose objects: the tenant a ``--key`` names, checked against the deployment's keys; and the
embedder's identity, which decides whether an archive's vectors can be kept."""

from __future__ import annotations

from openassistants.config import Settings
from openassistants.portability.records import BadInput
from openassistants.tenants import OPEN_TENANT, tenant_for_key
from openassistants.upstream.embeddings import LOCAL_DIMENSIONS, LOCAL_MODEL


def key_tenant(settings: Settings, key: str | None) -> str | None:
    """The tenant of ``key`` (None without one); raises BadInput for a key the deployment refuses."""
    if key is None:
        return None
    if not settings.api_keys:
        raise BadInput(
            "--key: OPENASSISTANTS_API_KEYS is empty, so this deployment has one tenant; omit --key"
        )
    if key not in {k.get_secret_value() for k in settings.api_keys}:
        raise BadInput("--key: not one of OPENASSISTANTS_API_KEYS")
    return tenant_for_key(key)


def deployment_tenants(settings: Settings) -> set[str]:
    """Every tenant a request to this deployment can be."""
    if not settings.api_keys:
        return {OPEN_TENANT}
    return {tenant_for_key(k.get_secret_value()) for k in settings.api_keys}


def embedder_identity(settings: Settings) -> str:
    """Vectors made by embedders of one identity are interchangeable."""
    if settings.embeddings_base_url is None:
        return f"local:{LOCAL_MODEL}:{LOCAL_DIMENSIONS}"
    # The model's name, not the upstream's address: archives should not carry hostnames.
    return f"remote:{settings.embeddings_model}"
