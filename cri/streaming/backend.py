"""What the streaming server asks of the rest of crisp, and what it hands over.

The server is transport only: it turns an HTTP upgrade into pipes and sockets and calls a
`StreamingBackend` with them. The backend (runtime/ for exec and attach, sandbox/ for the pod
network namespace) never sees SPDY or WebSocket.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class StreamingError(Exception):
    """A backend failure to report to the client on the error stream (e.g. "container
    abc is not running"). Other exceptions are reported too, as internal errors."""


@dataclass(frozen=True)
class ExecRequest:
    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(frozen=True)
class AttachRequest:
    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(frozen=True)
class PortForwardRequest:
    pod_sandbox_id: str
    # The ports named in the RPC; kubelet does not restrict SPDY streams to them, and
    # neither do we. WebSocket clients name their ports in the URL query instead.
    ports: tuple[int, ...] = ()


StreamRequest = ExecRequest | AttachRequest | PortForwardRequest


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


@dataclass
class ProcessIO:
    """The client's end of an exec or attach, as plain file descriptors.

    `stdin` is the read end of a pipe (EOF when the client closes stdin); `stdout` and
    `stderr` are write ends. They can be handed to a child process as they are, or passed to
    a monitor over a unix socket. The server owns them and closes them once the backend
    returns; a backend whose threads go on using one afterwards must os.dup() it. With a
    tty there is no stderr: a terminal has one output.
    """

    tty: bool
    stdin: int | None
    stdout: int | None
    stderr: int | None
    # Terminal sizes in the order the client sent them; None once no more will come.
    resizes: queue.Queue[TerminalSize | None] = field(default_factory=queue.Queue)
    # Set when the client went away or the server shuts down: exec must kill its process
    # and return, attach must detach and return.
    cancelled: threading.Event = field(default_factory=threading.Event)


class StreamingBackend(Protocol):
    def exec(self, container_id: str, cmd: Sequence[str], io: ProcessIO) -> int:
        """Run `cmd` in the container wired to `io` and return its exit code (128+N for a
        signal). Raise StreamingError if it cannot run at all."""

    def attach(self, container_id: str, io: ProcessIO) -> None:
        """Copy the container's output to `io` and `io.stdin` to the container until the
        container exits or `io.cancelled` is set. Several attachers may be active at once."""

    def port_forward(self, pod_sandbox_id: str, port: int) -> socket.socket:
        """A TCP connection to `port` on the pod's loopback, made inside the pod's network
        namespace (the host's for host-network pods). Raise StreamingError or OSError."""
