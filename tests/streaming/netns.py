"""Network namespaces for port-forward tests, without forking and without mounts.

A namespace is made by a short-lived thread that unshares its network namespace, brings up
loopback and opens /proc/thread-self/ns/net; that fd keeps the namespace alive until closed.
Work inside it (listening, connecting) runs in a thread that joins it with setns, which
affects that thread only; sockets stay in the namespace they were made in.

This is also how crisp's port-forward backend in sandbox/ connects into a pod: setns to the
pinned netns in a throwaway thread, connect to 127.0.0.1:port, hand the socket back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import IPRoute

from runtime import syscalls

T = TypeVar("T")


def run_in(netns_fd: int | None, fn: Callable[[], T]) -> T:
    """fn() in a fresh thread inside the namespace (None: this one); its result or error."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            if netns_fd is not None:
                syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            result.append(fn())
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target, name="crisp-test-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def dial(netns_fd: int | None, port: int, timeout: float = 5.0) -> socket.socket:
    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.settimeout(None)
        return sock

    return run_in(netns_fd, connect)


class NetNs:
    """A private network namespace with loopback up; close() lets it go."""

    def __init__(self) -> None:
        def make() -> int:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            with IPRoute() as ipr:
                (lo,) = ipr.link_lookup(ifname="lo")
                ipr.link("set", index=lo, state="up")
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

        self.fd: int | None = run_in(None, make)
        self.inode = os.fstat(self.fd).st_ino

    def listen(self) -> socket.socket:
        def bind() -> socket.socket:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            return sock

        return run_in(self.fd, bind)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
