"""The code_interpreter tool's engine: sandboxed Python kernels per thread (sandbox.py, kernel.py,
driver.py, workdir.py) behind one API, ``KernelManager`` (manager.py)."""

from openassistants.code_interpreter.manager import CellResult, KernelManager, OutputFile, SandboxUnavailable

__all__ = ["CellResult", "KernelManager", "OutputFile", "SandboxUnavailable"]
