"""The streaming server behind Exec, Attach and PortForward: one-time URLs served over
SPDY/3.1 and WebSocket, with the container work delegated to a `StreamingBackend`."""

from cri.streaming.backend import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    ProcessIO,
    StreamingBackend,
    StreamingError,
    StreamRequest,
    TerminalSize,
)
from cri.streaming.server import StreamingServer
from cri.streaming.tokens import TokenRegistry

__all__ = [
    "AttachRequest",
    "ExecRequest",
    "PortForwardRequest",
    "ProcessIO",
    "StreamRequest",
    "StreamingBackend",
    "StreamingError",
    "StreamingServer",
    "TerminalSize",
    "TokenRegistry",
]
