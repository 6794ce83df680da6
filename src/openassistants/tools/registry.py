"""The tools this server knows, one line each. A new built-in tool is a module beside this one and a
line here; a deployment (or a test) may also ``TOOLS.register`` one at start-up."""

from __future__ import annotations

from openassistants.tools.base import Registry
from openassistants.tools.code_interpreter import CodeInterpreter
from openassistants.tools.file_search import FileSearch
from openassistants.tools.function import FunctionTool

TOOLS = Registry(
    [
        FunctionTool(),
        CodeInterpreter(),
        FileSearch(),
    ]
)
