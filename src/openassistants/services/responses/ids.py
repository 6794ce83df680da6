"""How the Responses API's ids map onto the engine's: a prefix swap, nothing stored.

``resp_<x>`` is the run ``run_<x>``; ``conv_<x>`` is the thread ``thread_<x>`` (a thread made through
the Assistants API is a conversation under that id, and its ``thread_<x>`` id is accepted too).
Message items keep their ``msg_`` ids; a call item is named after its step and its place in it
(``fc_<step>_<n>``, ``fs_…`` for file_search, ``ci_…`` for code_interpreter; a function's
output ``fco_<step>_<n>``), since the model's own call ids need not be unique.
"""

from __future__ import annotations

from openassistants.errors import NotFound

RUN, RESPONSE = "run_", "resp_"
THREAD, CONVERSATION = "thread_", "conv_"
STEP = "step_"


def response_id(run_id: str) -> str:
    return RESPONSE + run_id.removeprefix(RUN)


def run_id_of(response_id: str) -> str:
    """The run behind ``response_id``; any other id names no response."""
    if not response_id.startswith(RESPONSE):
        raise response_not_found(response_id)
    return RUN + response_id.removeprefix(RESPONSE)


def conversation_id(thread_id: str) -> str:
    return CONVERSATION + thread_id.removeprefix(THREAD)


def thread_id_of(conversation: str) -> str:
    if conversation.startswith(THREAD):
        return conversation
    if not conversation.startswith(CONVERSATION):
        raise conversation_not_found(conversation)
    return THREAD + conversation.removeprefix(CONVERSATION)


#: A call item's id prefix by the call's type (the hosted API's).
_CALL_PREFIXES = {"function": "fc", "file_search": "fs", "code_interpreter": "ci"}


def call_item_id(step_id: str, index: int, kind: str = "function", *, output: bool = False) -> str:
    prefix = "fco" if output else _CALL_PREFIXES.get(kind, "fc")
    return f"{prefix}_{step_id.removeprefix(STEP)}_{index}"


def response_not_found(response_id: str, *, param: str | None = None) -> NotFound:
    code = "previous_response_not_found" if param == "previous_response_id" else None
    prefix = "Previous response" if param == "previous_response_id" else "Response"
    return NotFound(f"{prefix} with id '{response_id}' not found.", param=param, code=code)


def conversation_not_found(conversation: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation}' not found.", param=None)
