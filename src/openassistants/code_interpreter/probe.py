"""Whether model code can run sandboxed here, and if not, what to install or set: one question, asked by
``openassistants doctor`` and by the server at start-up (``detect_sandbox``), which then offers
code_interpreter only in the mode it found.

``sandbox_problem`` is None when bubblewrap starts this interpreter in the real sandbox, else one line
saying what is wrong and what to install or set.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from openassistants.code_interpreter.sandbox import Sandbox, bwrap_args, seccomp_fd
from openassistants.config import Settings

UNSAFE_SETTING = "OPENASSISTANTS_CODE_INTERPRETER_UNSAFE_NO_SANDBOX"
BWRAP_SETTING = "OPENASSISTANTS_CODE_INTERPRETER_BWRAP"
PROBE_TIMEOUT_SECONDS = 20.0


def sandbox_problem(settings: Settings) -> str | None:
    """None when bubblewrap is found and starts a sandbox (the real one, once per process); else what
    is wrong and what to do about it, in one line."""
    bwrap = bwrap_path(settings)
    if bwrap is None:
        problem = (
            f"bubblewrap ({settings.code_interpreter_bwrap}) is not on PATH: install it (apt-get install "
            f"bubblewrap) or set {BWRAP_SETTING} to its path"
        )
    elif (reason := probe_bwrap(bwrap)) is not None:
        problem = f"{reason}; in a container, allow user namespaces (or run the server as root)"
    else:
        return None
    if settings.code_interpreter_unsafe_no_sandbox:
        return f"{problem}. {UNSAFE_SETTING} is set: model code runs WITHOUT a sandbox"
    return f"{problem}, or set {UNSAFE_SETTING}=true where every user is trusted"


def detect_sandbox(settings: Settings) -> Sandbox:
    """How kernels start here: bubblewrap if it works, else unsafe mode if the settings allow it."""
    problem = sandbox_problem(settings)
    if problem is None:
        return Sandbox(mode="bwrap", bwrap=bwrap_path(settings))
    if settings.code_interpreter_unsafe_no_sandbox:
        return Sandbox(mode="unsafe", reason=problem)
    return Sandbox(mode="unavailable", reason=problem)


def bwrap_path(settings: Settings) -> str | None:
    """The bwrap executable the settings name (a path, or a name looked up on PATH); None if absent."""
    return shutil.which(settings.code_interpreter_bwrap)


@functools.cache
def probe_bwrap(bwrap: str) -> str | None:
    """Start this interpreter in the real sandbox once; None if it ran, else why it could not."""
    seccomp = seccomp_fd()
    fds = () if seccomp is None else (seccomp,)
    with tempfile.TemporaryDirectory(prefix="oa-probe-") as scratch:
        args = bwrap_args(Path(scratch), root=os.geteuid() == 0, seccomp=seccomp)
        try:
            done = subprocess.run(
                [bwrap, *args, "--", sys.executable, "-I", "-c", "pass"],
                env={},
                capture_output=True,
                timeout=PROBE_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
                pass_fds=fds,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap ({bwrap}) could not be started: {exc}"
        finally:
            for fd in fds:
                os.close(fd)
    if done.returncode != 0:
        detail = " ".join(done.stderr.decode(errors="replace").split())[-300:]
        return f"bubblewrap ({bwrap}) cannot create a sandbox here (exit {done.returncode}: {detail})"
    return None
