"""One-time tokens: an Exec/Attach/PortForward RPC parks its request here and answers with a
URL naming the token; the first connection to that URL takes the request out again.

Like kubelet's request cache: tokens are random, good for one use, expire after a minute,
and the cache is bounded; when it is full the oldest entry gives way.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cri.streaming.backend import AttachRequest, ExecRequest, PortForwardRequest, StreamRequest
from sandbox.errors import InvalidArgument

TOKEN_TTL_SECONDS = 60.0
MAX_TOKENS = 1000


def _kind(request: StreamRequest) -> str:
    if isinstance(request, ExecRequest):
        return "exec"
    if isinstance(request, AttachRequest):
        return "attach"
    return "portforward"


def validate(request: StreamRequest) -> None:
    """The checks kubelet's streaming server makes before handing out a URL."""
    if isinstance(request, PortForwardRequest):
        if not request.pod_sandbox_id:
            raise InvalidArgument("port forward: pod sandbox ID is required")
        bad = [p for p in request.ports if not 0 < p < 65536]
        if bad:
            raise InvalidArgument(f"port forward: invalid port(s) {bad}")
        return
    verb = _kind(request)
    if not request.container_id:
        raise InvalidArgument(f"{verb}: container ID is required")
    if isinstance(request, ExecRequest) and not request.cmd:
        raise InvalidArgument("exec: command is required")
    if not (request.stdin or request.stdout or request.stderr):
        raise InvalidArgument(f"{verb}: one of stdin, stdout or stderr must be set")
    if request.tty and request.stderr:
        raise InvalidArgument(f"{verb}: tty and stderr cannot both be set")


class TokenRegistry:
    def __init__(
        self,
        ttl: float = TOKEN_TTL_SECONDS,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_tokens
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, StreamRequest]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def insert(self, request: StreamRequest) -> tuple[str, str]:
        """Park a validated request; returns (kind, token), kind being the URL path segment."""
        validate(request)
        token = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            self._expire(now)
            while len(self._entries) >= self._max:
                self._entries.popitem(last=False)
            self._entries[token] = (now + self._ttl, request)
        return _kind(request), token

    def take(self, kind: str, token: str) -> StreamRequest | None:
        """The request behind `token` if it is live and of `kind`; it is gone afterwards either
        way, so a token is never tried twice."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            entry = self._entries.pop(token, None)
        if entry is None or _kind(entry[1]) != kind:
            return None
        return entry[1]

    def _expire(self, now: float) -> None:
        # Entries are in insertion order and share one TTL, so expired ones are at the front.
        while self._entries:
            token, (deadline, _) = next(iter(self._entries.items()))
            if deadline > now:
                break
            del self._entries[token]
