"""The seccomp filter bubblewrap loads into every kernel: refuses the system calls that open the most
kernel attack surface and that model code never needs, as container runtimes' default profiles do.

Refused (EPERM): creating user namespaces (``unshare``/``clone`` with CLONE_NEWUSER; bwrap's own
--disable-userns needs a user namespace of its own, which a root server does not give kernels),
``ptrace``, the kernel keyring, ``bpf``, ``perf_event_open``, ``userfaultfd`` and io_uring; any
other ABI (i386 or x32 calls on x86_64). ``clone3`` gets ENOSYS: its flags cannot be inspected, and
the C library then falls back to ``clone``. Other architectures get no filter (the namespaces and
limits still apply).
"""

from __future__ import annotations

import errno
import platform
import struct

# linux/audit.h, linux/filter.h, linux/seccomp.h
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {
    "x86_64": {
        "clone": 56, "unshare": 272, "clone3": 435, "ptrace": 101, "add_key": 248, "request_key": 249,
        "keyctl": 250, "perf_event_open": 298, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427,
    },
    "aarch64": {
        "clone": 220, "unshare": 97, "clone3": 435, "ptrace": 117, "add_key": 217, "request_key": 218,
        "keyctl": 219, "perf_event_open": 241, "bpf": 280, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427,
    },
}  # fmt: skip
DENIED = (
    "ptrace", "add_key", "request_key", "keyctl", "perf_event_open", "bpf", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip
CLONE_NEWUSER = 0x10000000
X32_SYSCALL_BIT = 0x40000000

LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian hosts)
NR, ARCH, ARG0_LOW = 0, 4, 16
INSTRUCTION = struct.Struct("=HBBI")


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter as bwrap's --seccomp reads it (struct sock_filter[]); None for other architectures."""
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        return None
    numbers = SYSCALLS[machine]
    program = _Program()
    program.load(ARCH)
    program.jump(JEQ, AUDIT_ARCH[machine], if_false="deny")
    program.load(NR)
    program.jump(JGE, X32_SYSCALL_BIT, if_true="deny")
    for name in DENIED:
        program.jump(JEQ, numbers[name], if_true="deny")
    program.jump(JEQ, numbers["clone3"], if_true="no_clone3")
    program.jump(JEQ, numbers["unshare"], if_true="flags")
    program.jump(JEQ, numbers["clone"], if_true="flags")
    program.ret(RET_ALLOW)
    program.label("flags")
    program.load(ARG0_LOW)
    program.jump(JSET, CLONE_NEWUSER, if_true="deny")
    program.ret(RET_ALLOW)
    program.label("deny")
    program.ret(RET_ERRNO | errno.EPERM)
    program.label("no_clone3")
    program.ret(RET_ERRNO | errno.ENOSYS)
    return program.assemble()


class _Program:
    """Classic BPF with named jump targets (a false branch with no target falls through)."""

    def __init__(self) -> None:
        self._code: list[tuple[int, int, str | None, str | None]] = []
        self._labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self._code.append((LD_W_ABS, offset, None, None))

    def jump(self, op: int, value: int, *, if_true: str | None = None, if_false: str | None = None) -> None:
        self._code.append((op, value, if_true, if_false))

    def ret(self, value: int) -> None:
        self._code.append((RET, value, None, None))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (op, value, if_true, if_false) in enumerate(self._code):
            jt = self._labels[if_true] - index - 1 if if_true else 0
            jf = self._labels[if_false] - index - 1 if if_false else 0
            out += INSTRUCTION.pack(op, jt, jf, value)
        return bytes(out)
