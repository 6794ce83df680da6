"""Whether model code can run sandboxed here, and if not, what to install or set: one question, asked by
``openassistants doctor`` and by whatever decides to offer code_interpreter."""

from __future__ import annotations

import shutil

from openassistants.code_interpreter.sandbox import probe_bwrap
from openassistants.config import Settings

UNSAFE_SETTING = "OPENASSISTANTS_CODE_INTERPRETER_UNSAFE_NO_SANDBOX"


def sandbox_problem(settings: Settings) -> str | None:
    """None when bubblewrap is on PATH and starts a sandbox (the real one, once per process); else what
    is wrong and what to do about it, in one line."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        problem = "bubblewrap (bwrap) is not on PATH: install it (apt-get install bubblewrap)"
    elif (reason := probe_bwrap(bwrap)) is not None:
        problem = f"{reason}; in a container, allow user namespaces (or run the server as root)"
    else:
        return None
    if settings.code_interpreter_unsafe_no_sandbox:
        return f"{problem}. {UNSAFE_SETTING} is set: model code runs WITHOUT a sandbox"
    return f"{problem}, or set {UNSAFE_SETTING}=true where every user is trusted"
