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


#: 17 random bytes (136 bits) always fit in 24 base62 characters (62**24 > 2**136).
_RANDOM_BYTES = 17
_LENGTH = 24


def new_id(kind: str) -> str:
    """A fresh id such as ``asst_4Xq…``: 24 base62 characters holding 136 random bits.

    One call to the OS's random source and an integer conversion, rather than 24 ``secrets.choice``
    calls: ids are made on every create, a hot path."""
    number = int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big")
    chars = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return PREFIXES[kind] + "".join(chars)
