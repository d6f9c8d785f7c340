"""The pause process: a tiny static x86_64 ELF that crisp assembles itself, and the helpers
to start, probe and stop it.

A Python process forked from the fork server costs several MiB of PSS; this binary costs a
few pages. It needs no compiler, no image and no file on disk: the bytes are built here at
import time (so every forked child shares them) and executed from a memfd.

What it does: block every signal, then loop on rt_sigtimedwait for SIGCHLD (reap every exited
child with wait4(WNOHANG): it is PID 1 when the pod shares its PID namespace, so orphans land
on it) and SIGTERM/SIGINT (exit 0). Waiting for blocked signals also works as PID 1 of a PID
namespace, where signals with the default disposition would otherwise be dropped.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import time
from collections.abc import Sequence
from typing import NoReturn

PAUSE_NAME = "crisp-pause"

_SYS_RT_SIGPROCMASK = 14
_SYS_WAIT4 = 61
_SYS_PRCTL = 157
_SYS_RT_SIGTIMEDWAIT = 128
_SYS_EXIT_GROUP = 231
_PR_SET_NAME = 15
_SIG_SETMASK = 2
_WNOHANG = 1
_SIGSET_BYTES = 8

_LOAD_ADDRESS = 0x400000
_ELF_HEADER_SIZE = 64
_PROGRAM_HEADER_SIZE = 56


def _mask(*signals: int) -> int:
    bits = 0
    for sig in signals:
        bits |= 1 << (sig - 1)
    return bits


class _Label:
    def __init__(self, name: str) -> None:
        self.name = name


class _Jump:
    """A two-byte short jump (opcode, rel8) to a label."""

    def __init__(self, opcode: int, target: str) -> None:
        self.opcode = opcode
        self.target = target


_Item = bytes | _Label | _Jump

_JMP, _JE, _JNE, _JG = 0xEB, 0x74, 0x75, 0x7F


def _mov_eax(value: int) -> bytes:
    return b"\xb8" + struct.pack("<I", value)


def _mov_edi(value: int) -> bytes:
    return b"\xbf" + struct.pack("<I", value)


def _mov_edx(value: int) -> bytes:
    return b"\xba" + struct.pack("<I", value)


def _mov_r10d(value: int) -> bytes:
    return b"\x41\xba" + struct.pack("<I", value)


def _push_imm32(value: int) -> bytes:
    return b"\x68" + struct.pack("<i", value)  # sign-extended to 64 bits


def _cmp_eax(value: int) -> bytes:
    return b"\x83\xf8" + struct.pack("<b", value)


_SYSCALL = b"\x0f\x05"
_XOR_ESI = b"\x31\xf6"
_XOR_EDX = b"\x31\xd2"
_XOR_EDI = b"\x31\xff"
_XOR_R10D = b"\x45\x31\xd2"
_PUSH_MINUS_ONE = b"\x6a\xff"  # a full signal set
_MOV_RSI_RSP = b"\x48\x89\xe6"
_MOV_RBX_RSP = b"\x48\x89\xe3"
_MOV_RDI_RBX = b"\x48\x89\xdf"
_MOV_RDI_MINUS_ONE = b"\x48\xc7\xc7\xff\xff\xff\xff"
_TEST_RAX = b"\x48\x85\xc0"
_MOV_RAX_IMM64 = b"\x48\xb8"
_PUSH_RAX = b"\x50"


def _program() -> list[_Item]:
    name = PAUSE_NAME.encode()[:15].ljust(16, b"\0")  # the kernel keeps 15 bytes + NUL
    wanted = _mask(signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
    return [
        # prctl(PR_SET_NAME, name): exec from a memfd would otherwise name it after the fd
        _MOV_RAX_IMM64 + name[8:],
        _PUSH_RAX,
        _MOV_RAX_IMM64 + name[:8],
        _PUSH_RAX,
        _MOV_RSI_RSP,
        _mov_edi(_PR_SET_NAME),
        _mov_eax(_SYS_PRCTL),
        _SYSCALL,
        # rt_sigprocmask(SIG_SETMASK, {all}, NULL, 8)
        _PUSH_MINUS_ONE,
        _MOV_RSI_RSP,
        _mov_edi(_SIG_SETMASK),
        _XOR_EDX,
        _mov_r10d(_SIGSET_BYTES),
        _mov_eax(_SYS_RT_SIGPROCMASK),
        _SYSCALL,
        _push_imm32(wanted),
        _MOV_RBX_RSP,  # rbx survives syscalls (only rcx and r11 are clobbered)
        _Label("wait"),
        # rt_sigtimedwait({CHLD, TERM, INT}, NULL, NULL, 8)
        _MOV_RDI_RBX,
        _XOR_ESI,
        _XOR_EDX,
        _mov_r10d(_SIGSET_BYTES),
        _mov_eax(_SYS_RT_SIGTIMEDWAIT),
        _SYSCALL,
        _cmp_eax(signal.SIGCHLD),
        _Jump(_JNE, "not_child"),
        _Label("reap"),
        # wait4(-1, NULL, WNOHANG, NULL) until no exited child is left
        _MOV_RDI_MINUS_ONE,
        _XOR_ESI,
        _mov_edx(_WNOHANG),
        _XOR_R10D,
        _mov_eax(_SYS_WAIT4),
        _SYSCALL,
        _TEST_RAX,
        _Jump(_JG, "reap"),
        _Jump(_JMP, "wait"),
        _Label("not_child"),
        _cmp_eax(signal.SIGTERM),
        _Jump(_JE, "exit"),
        _cmp_eax(signal.SIGINT),
        _Jump(_JNE, "wait"),  # -EINTR and the like
        _Label("exit"),
        _XOR_EDI,
        _mov_eax(_SYS_EXIT_GROUP),
        _SYSCALL,
    ]


def _assemble(items: Sequence[_Item]) -> bytes:
    labels: dict[str, int] = {}
    offset = 0
    for item in items:
        if isinstance(item, _Label):
            labels[item.name] = offset
        else:
            offset += 2 if isinstance(item, _Jump) else len(item)
    code = bytearray()
    for item in items:
        if isinstance(item, _Label):
            continue
        if isinstance(item, _Jump):
            rel = labels[item.target] - (len(code) + 2)
            code += bytes([item.opcode]) + struct.pack("<b", rel)
        else:
            code += item
    return bytes(code)


def _elf(code: bytes) -> bytes:
    """A static ELF64 executable with one read+execute segment holding headers and code."""
    entry_offset = _ELF_HEADER_SIZE + _PROGRAM_HEADER_SIZE
    size = entry_offset + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        62,  # EM_X86_64
        1,  # EV_CURRENT
        _LOAD_ADDRESS + entry_offset,
        _ELF_HEADER_SIZE,  # program headers follow the ELF header
        0,  # no section headers
        0,
        _ELF_HEADER_SIZE,
        _PROGRAM_HEADER_SIZE,
        1,
        0,
        0,
        0,
    )
    program_header = struct.pack(
        "<IIQQQQQQ",
        1,  # PT_LOAD
        5,  # PF_R | PF_X
        0,
        _LOAD_ADDRESS,
        _LOAD_ADDRESS,
        size,
        size,
        0x1000,
    )
    return header + program_header + code


PAUSE_ELF = _elf(_assemble(_program()))

_MFD_EXEC = 0x0010  # kernels with vm.memfd_noexec need it said explicitly


def supported() -> str | None:
    """Why the pause binary cannot run on this machine, or None when it can."""
    machine = os.uname().machine
    if machine != "x86_64":
        return f"the built-in pause process is x86_64 only, this machine is {machine}"
    return None


def exec_pause() -> NoReturn:
    """Replace the calling (single-threaded, freshly forked) process with the pause binary."""
    problem = supported()
    if problem is not None:
        raise OSError(0, problem)
    try:
        fd = os.memfd_create(PAUSE_NAME, os.MFD_CLOEXEC | _MFD_EXEC)
    except OSError:
        fd = os.memfd_create(PAUSE_NAME, os.MFD_CLOEXEC)  # kernels before 6.3 reject MFD_EXEC
    os.write(fd, PAUSE_ELF)
    # The fork server ignores some signals; ignored dispositions survive execve.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.execve(fd, [PAUSE_NAME], {})


# --- the daemon's view of a running pause (or namespace holder) process ---


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (stat field 22), which together
    with the pid identifies it across pid reuse; None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_alive(pid: int, started: int) -> bool:
    return pid > 0 and start_time(pid) == started


def stop(pid: int, started: int, timeout: float = 5.0) -> None:
    """SIGTERM the process (SIGKILL after `timeout`) and wait until it has exited.
    Idempotent: a process that is gone, or a reused pid, is left alone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # Checked after pidfd_open: from here on the pidfd names this very process.
        if start_time(pid) != started:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)
            if _wait_exit(pidfd, wait):
                return
        raise TimeoutError(f"process {pid} did not exit after SIGKILL")
    finally:
        os.close(pidfd)


def _wait_exit(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if poller.poll(left * 1000):
            return True
