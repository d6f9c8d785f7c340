"""The observing interceptor wraps each method once and keeps no trace of unknown ones; after
a pull it hands the heap the pull freed back to the system."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

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


class _Aborted(Exception):
    pass


class _Context:
    def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise _Aborted(code)


def test_a_pull_hands_the_heap_it_freed_back_whether_it_succeeds_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[str] = []
    monkeypatch.setattr("cri.interceptors.release_free_heap", lambda: released.append("freed"))
    interceptor = ObservingInterceptor(create_metrics())
    failing = False

    def pull(request: Any, context: Any) -> str:
        if failing:
            raise OSError("registry unreachable")
        return "pulled"

    handlers = {
        "/runtime.v1.ImageService/PullImage": grpc.unary_unary_rpc_method_handler(pull),
        "/runtime.v1.RuntimeService/Version": grpc.unary_unary_rpc_method_handler(
            lambda request, context: "answer"
        ),
    }

    def call(method: str) -> Any:
        handler = interceptor.intercept_service(
            lambda details: handlers[details.method], _Details(method)
        )
        assert handler is not None and handler.unary_unary is not None
        return handler.unary_unary(object(), _Context())  # type: ignore[arg-type]

    assert call("/runtime.v1.RuntimeService/Version") == "answer"
    assert released == []
    assert call("/runtime.v1.ImageService/PullImage") == "pulled"
    assert released == ["freed"]
    failing = True
    with pytest.raises(_Aborted):
        call("/runtime.v1.ImageService/PullImage")
    assert released == ["freed", "freed"]
