"""The model boundary: the only code that speaks to the LLM (``chat.py``; its replies are read in
``chat_reply.py``, its failures sorted in ``chat_errors.py``)."""

# What a stream yields and raises, with the client: chat.py's __all__.
from openassistants.upstream.chat import *  # noqa: F403
from openassistants.upstream.chat import __all__ as __all__
