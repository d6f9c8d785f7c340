"""PortForward: a TCP connection to a port inside a pod's network namespace.

setns(2) with CLONE_NEWNET changes only the calling thread, so each connection is made
from a short-lived thread that enters the pod's namespace, connects, and ends: the socket
stays in the namespace it was created in.
"""

from __future__ import annotations

import socket
import threading

from runtime import syscalls
from sandbox.errors import FailedPrecondition, InvalidArgument, Unavailable

_CONNECT_TIMEOUT = 10.0


def _connect(port: int) -> socket.socket:
    errors = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_TIMEOUT)
        try:
            sock.connect((address, port))
        except OSError as e:
            sock.close()
            errors.append(f"{address}: {e.strerror or e}")
            continue
        sock.settimeout(None)
        return sock
    raise Unavailable(f"port {port}: {'; '.join(errors)}")


def connect(netns_path: str, port: int) -> socket.socket:
    """Connect to `port` on the loopback of the network namespace at `netns_path`
    ("" for a host-network pod)."""
    if not 0 < port < 65536:
        raise InvalidArgument(f"port {port} is out of range")
    if not netns_path:
        return _connect(port)
    result: list[socket.socket | BaseException] = []

    def enter_and_connect() -> None:
        try:
            syscalls.setns_path(netns_path, syscalls.CLONE_NEWNET)
            result.append(_connect(port))
        except BaseException as e:  # handed to the caller's thread
            result.append(e)

    thread = threading.Thread(target=enter_and_connect, name=f"portforward-{port}")
    thread.start()
    thread.join()
    (outcome,) = result
    if isinstance(outcome, OSError):
        raise FailedPrecondition(f"cannot enter network namespace {netns_path}: {outcome}")
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
