"""The common shape of an API object built from a stored row: ``id``, ``object``, then columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NO_DEFAULTS: Mapping[str, Any] = {}
#: What an assistant or a run shows for sampling settings its request left unset (stored as null).
SAMPLING_DEFAULTS: Mapping[str, Any] = {"temperature": 1.0, "top_p": 1.0, "response_format": "auto"}


def wire_object(
    kind: str,
    row: Mapping[str, Any],
    columns: tuple[str, ...],
    *,
    null_means: Mapping[str, Any] = _NO_DEFAULTS,
) -> dict[str, Any]:
    """``{"id", "object": kind, *columns}`` with each column's stored value, in ``columns``' order
    (clients and the recorded bodies see the keys in that order). ``null_means`` gives the value the
    hosted API showed for a column stored as null (a default the request left unset); an immutable
    value, as every object built shares it.

    A caller that computes a column rewrites it afterwards: a key keeps its place when reassigned."""
    body = {"id": row["id"], "object": kind}
    for column in columns:
        body[column] = row[column]
    for column, default in null_means.items():
        if body[column] is None:
            body[column] = default
    return body
