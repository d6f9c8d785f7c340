"""The observing interceptor wraps each method once and keeps no trace of unknown ones."""

from __future__ import annotations

from typing import Any

import grpc

from cri.interceptors import ObservingInterceptor
from cri.metrics import create_metrics


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[Any, ...] = ()


def test_each_method_is_wrapped_once_and_unknown_ones_are_not_kept() -> None:
    metrics = create_metrics()
    interceptor = ObservingInterceptor(metrics)
    looked_up: list[str] = []
    version = grpc.unary_unary_rpc_method_handler(lambda request, context: "answer")

    def continuation(details: Any) -> Any:
        looked_up.append(details.method)
        return version if details.method.endswith("/Version") else None

    method = "/runtime.v1.RuntimeService/Version"
    first = interceptor.intercept_service(continuation, _Details(method))
    assert first is not None and first is not version
    assert interceptor.intercept_service(continuation, _Details(method)) is first
    for _ in range(2):
        assert interceptor.intercept_service(continuation, _Details("/x.Y/Nope")) is None
    assert looked_up == [method, "/x.Y/Nope", "/x.Y/Nope"]

    assert first.unary_unary is not None
    assert first.unary_unary(object(), None) == "answer"  # type: ignore[arg-type]
    assert (
        metrics.registry.get_sample_value("crisp_operations_total", {"operation": "Version"}) == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "crisp_operations_latency_seconds_count", {"operation": "Version"}
        )
        == 1
    )
