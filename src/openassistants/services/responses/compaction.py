"""A ``compaction`` item's ``encrypted_content``: opaque to the client, as hosted, and here the
summary POST /v1/responses/compact wrote, versioned and base64url-encoded. It is not encrypted: it
holds nothing the client did not send or could not read in the responses it summarizes. Sent back
as input, the summary joins the instructions (services/responses/inputs.py)."""

from __future__ import annotations

import base64
import binascii

from openassistants.errors import InvalidRequest

_VERSION = "oa1."


def encode_summary(summary: str) -> str:
    return _VERSION + base64.urlsafe_b64encode(summary.encode()).decode()


def decode_summary(content: object, param: str) -> str:
    """The summary in a compaction item's ``encrypted_content``; a 400 naming ``param`` otherwise."""
    if isinstance(content, str) and content.startswith(_VERSION):
        try:
            return base64.urlsafe_b64decode(content.removeprefix(_VERSION)).decode()
        except (binascii.Error, UnicodeDecodeError):
            pass
    raise InvalidRequest(
        "The encrypted content could not be read: send it as POST /v1/responses/compact returned it.",
        param=param,
        code="invalid_encrypted_content",
    )
