"""One gRPC server interceptor for everything every RPC needs: error mapping, logging, metrics.

Handlers raise domain errors; here they become status codes. Request bodies are never logged,
since they may carry registry credentials. After the few RPCs that churn through the C heap,
its free memory goes back to the system (cri/heap.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from cri.errors import status_for
from cri.heap import release_free_heap
from cri.metrics import Metrics, OperationRecorder

log = logging.getLogger("crisp.rpc")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]

# Operations whose buffers leave megabytes free in the malloc arenas of the threads that ran
# them; an idle daemon would otherwise keep those pages resident.
_HEAP_CHURNING = frozenset({"PullImage"})


def _short_name(full_method: str) -> tuple[str, str]:
    """'/runtime.v1.RuntimeService/Version' → ('RuntimeService/Version', 'Version')."""
    service, _, method = full_method.rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}", method


if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not subscriptable
    _Interceptor = grpc.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor
    _Handler = grpc.RpcMethodHandler


class ObservingInterceptor(_Interceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # Wrapped handlers by method: the services are fixed once the server starts, so each
        # method is wrapped once rather than on every call. Unknown methods are not kept,
        # so a client cannot grow this with made-up names.
        self._observed: dict[str, _Handler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        method = handler_call_details.method
        observed = self._observed.get(method)
        if observed is not None:
            return observed
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        observed = self._observe(method, handler)
        self._observed[method] = observed
        return observed

    def _observe(self, method: str, handler: _Handler) -> _Handler:
        if method.startswith("/grpc.health.v1."):
            return handler
        rpc_name, operation = _short_name(method)
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary
            if operation in _HEAP_CHURNING:
                behaviour = _releasing_heap(behaviour)
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(behaviour, rpc_name, operation),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, rpc_name, operation),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # CRI has no client-streaming RPCs

    def _finish(
        self,
        rpc_name: str,
        recorder: OperationRecorder,
        started: float,
        exc: BaseException | None,
        context: grpc.ServicerContext,
    ) -> None:
        elapsed = time.monotonic() - started
        if exc is None:
            recorder.observe(elapsed, None)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("rpc=%s code=OK duration_ms=%.2f", rpc_name, elapsed * 1000)
            return
        status = status_for(exc, rpc_name)
        recorder.observe(elapsed, status.code.name)
        if status.expected:
            log.info(
                "rpc=%s code=%s duration_ms=%.2f error=%r",
                rpc_name,
                status.code.name,
                elapsed * 1000,
                status.message,
            )
        else:
            log.error(
                "rpc=%s code=%s duration_ms=%.2f error=%r",
                rpc_name,
                status.code.name,
                elapsed * 1000,
                status.message,
                exc_info=exc,
            )
        context.abort(status.code, status.message)

    def _wrap_unary(self, behaviour: Behaviour, rpc_name: str, operation: str) -> Behaviour:
        recorder = self._metrics.recorder(operation)

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.monotonic()
            try:
                response = behaviour(request, context)
            except Exception as exc:  # every failure leaves as a status, never as a crash
                if _already_aborted(context):
                    raise
                self._finish(rpc_name, recorder, started, exc, context)
                raise  # unreachable: abort raises
            self._finish(rpc_name, recorder, started, None, context)
            return response

        return observed

    def _wrap_stream(self, behaviour: Behaviour, rpc_name: str, operation: str) -> Behaviour:
        recorder = self._metrics.recorder(operation)

        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.monotonic()
            try:
                yield from behaviour(request, context)
            except Exception as exc:
                if _already_aborted(context):
                    raise
                self._finish(rpc_name, recorder, started, exc, context)
                raise
            self._finish(rpc_name, recorder, started, None, context)

        return observed


def _releasing_heap(behaviour: Behaviour) -> Behaviour:
    def released(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(request, context)
        finally:
            release_free_heap()

    return released


def _already_aborted(context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after recording the status; let it through.
    code = getattr(context, "code", None)
    return callable(code) and code() not in (
        None,
        grpc.StatusCode.OK,
        grpc.StatusCode.UNIMPLEMENTED,
    )
