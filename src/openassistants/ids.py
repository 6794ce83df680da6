"""The one place object ids are made: OpenAI's prefixes followed by random base62 characters."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

# Separators follow OpenAI: files use "file-", everything else an underscore.
PREFIXES = {
    "assistant": "asst_",
    "thread": "thread_",
    "message": "msg_",
    "run": "run_",
    "step": "step_",
    "call": "call_",
    "file": "file-",
    "vector_store": "vs_",
    "file_batch": "vsfb_",
}


#: Random bytes below 248 (4 x 62) map uniformly onto the alphabet; the others are dropped. 32 bytes
#: give the 24 characters needed but for about one draw in two million, which simply draws again.
_LENGTH = 24
_DRAW = 32
_TO_BASE62 = bytes(_ALPHABET[b % 62].encode()[0] if b < 248 else 0 for b in range(256))
_REJECTED = bytes(range(248, 256))


def new_id(kind: str) -> str:
    """A fresh id such as ``asst_4Xq…``: 24 base62 characters, each uniform (about 143 random bits).

    Random bytes translated to characters in one C call: ids are made on every create, a hot path."""
    while True:
        chars = secrets.token_bytes(_DRAW).translate(_TO_BASE62, _REJECTED)
        if len(chars) >= _LENGTH:
            return PREFIXES[kind] + chars[:_LENGTH].decode()
