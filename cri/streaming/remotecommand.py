"""Exec and attach sessions (k8s "remotecommand"), the same over SPDY and WebSocket.

The client's channels become pipes for the backend; the result goes back on the error
channel: with v4 and later as a JSON metav1.Status (exit codes as a NonZeroExitCode status
whose ExitCode cause holds the number), with older protocols as plain text on failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cri.streaming.backend import (
    AttachRequest,
    ExecRequest,
    ProcessIO,
    StreamingBackend,
    StreamingError,
    TerminalSize,
)
from cri.streaming.transport import Channel

log = logging.getLogger("crisp.streaming")

# SPDY X-Stream-Protocol-Version values, most preferred first.
SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
# WebSocket subprotocols; "" is a client that names none (binary, like channel.k8s.io).
WEBSOCKET_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "",
)
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
FIRST_RESIZE_WAIT = 1.0


def json_status(protocol: str) -> bool:
    """Whether `protocol` reports results as Status JSON (v4 and later) or as text."""
    return protocol.startswith(("v4.", "v5."))


def spdy_resize_supported(protocol: str) -> bool:
    return protocol in ("v3.channel.k8s.io", "v4.channel.k8s.io")


@dataclass
class Channels:
    """The client's side of a session, indexed like the WebSocket channels."""

    stdin: Channel | None = None
    stdout: Channel | None = None
    stderr: Channel | None = None
    error: Channel | None = None
    resize: Channel | None = None


def expected_stream_types(request: ExecRequest | AttachRequest, resize: bool) -> set[str]:
    """The SPDY streams a client opens for `request`: kubelet waits for exactly these."""
    types = {"error"}
    if request.stdin:
        types.add("stdin")
    if request.stdout:
        types.add("stdout")
    if request.stderr and not request.tty:
        types.add("stderr")
    if request.tty and resize:
        types.add("resize")
    return types


def _status(status: str, message: str = "", reason: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {}, "status": status}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    body.update(extra)
    return body


def exit_status(code: int) -> dict[str, Any]:
    if code == 0:
        return _status("Success")
    return _status(
        "Failure",
        f"command terminated with non-zero exit code: exit status {code}",
        "NonZeroExitCode",
        details={"causes": [{"reason": "ExitCode", "message": str(code)}]},
    )


def error_status(message: str) -> dict[str, Any]:
    return _status(
        "Failure",
        f"Internal error occurred: {message}",
        "InternalError",
        code=500,
        details={"causes": [{"message": message}]},
    )


def _pump_to_fd(channel: Channel, fd: int) -> None:
    try:
        while data := channel.read():
            _write_all(fd, data)
    except OSError as e:
        log.debug("stdin copy ended: %s", e)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pump_from_fd(fd: int, channel: Channel) -> None:
    try:
        while data := os.read(fd, 32768):
            channel.write(data)
        channel.close()
    except OSError as e:
        log.debug("output copy ended: %s", e)
    finally:
        os.close(fd)


def _pump_resizes(channel: Channel, io: ProcessIO, first: threading.Event) -> None:
    # Each message is one JSON object, but a stream may deliver several at once or one in
    # pieces, so decode from a running buffer.
    decoder = json.JSONDecoder()
    buffer = ""
    try:
        while data := channel.read():
            buffer += data.decode(errors="replace")
            while buffer := buffer.lstrip():
                try:
                    value, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    break
                buffer = buffer[end:]
                if isinstance(value, dict):
                    size = TerminalSize(int(value.get("Width", 0)), int(value.get("Height", 0)))
                    io.resizes.put(size)
                    first.set()
    except (OSError, ValueError, TypeError) as e:
        log.debug("resize stream ended: %s", e)
    finally:
        io.resizes.put(None)
        first.set()


def _thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name="crisp-stream-copy")
    thread.start()
    return thread


def run_session(
    backend: StreamingBackend,
    request: ExecRequest | AttachRequest,
    channels: Channels,
    protocol: str,
    cancelled: threading.Event,
) -> None:
    """Run one exec or attach to its end and report the result. `cancelled` is set when the
    client's connection goes; the backend then stops the process (exec) or detaches."""
    child_fds: list[int] = []
    copies: list[threading.Thread] = []
    io = ProcessIO(tty=request.tty, stdin=None, stdout=None, stderr=None, cancelled=cancelled)
    try:
        if request.stdin and channels.stdin is not None:
            r, w = os.pipe()
            io.stdin = r
            child_fds.append(r)
            _thread(_pump_to_fd, channels.stdin, w)
        if request.stdout and channels.stdout is not None:
            r, w = os.pipe()
            io.stdout = w
            child_fds.append(w)
            copies.append(_thread(_pump_from_fd, r, channels.stdout))
        if request.stderr and not request.tty and channels.stderr is not None:
            r, w = os.pipe()
            io.stderr = w
            child_fds.append(w)
            copies.append(_thread(_pump_from_fd, r, channels.stderr))
        if request.tty and channels.resize is not None:
            first_size = threading.Event()
            _thread(_pump_resizes, channels.resize, io, first_size)
            # kubectl and crictl send the terminal's size right after the streams are up;
            # waiting for it lets the process start with the right size instead of 0x0.
            first_size.wait(FIRST_RESIZE_WAIT)
        else:
            io.resizes.put(None)

        status = _invoke(backend, request, io)
        # The backend's children hold their own copies; ours must go for output to end.
        for fd in child_fds:
            os.close(fd)
        child_fds.clear()
        # Output ends when every writer is gone; a daemon the command left behind may keep
        # the pipe open, so stop waiting once the client has gone anyway.
        for copy in copies:
            while copy.is_alive() and not cancelled.is_set():
                copy.join(0.2)
    finally:
        for fd in child_fds:
            os.close(fd)
    _report(channels.error, protocol, status)


def _invoke(
    backend: StreamingBackend, request: ExecRequest | AttachRequest, io: ProcessIO
) -> dict[str, Any]:
    try:
        if isinstance(request, ExecRequest):
            return exit_status(backend.exec(request.container_id, request.cmd, io))
        backend.attach(request.container_id, io)
        return _status("Success")
    except StreamingError as e:
        verb = "executing command in" if isinstance(request, ExecRequest) else "attaching to"
        return error_status(f"error {verb} container: {e}")
    except Exception as e:
        log.exception("streaming backend failed for container %s", request.container_id)
        return error_status(f"{type(e).__name__}: {e}")


def _report(error: Channel | None, protocol: str, status: dict[str, Any]) -> None:
    if error is None:
        return
    with contextlib.suppress(OSError):
        if json_status(protocol):
            error.write(json.dumps(status).encode())
        elif status["status"] != "Success":
            error.write(status["message"].encode())
        error.close()
