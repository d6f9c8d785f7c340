"""A CRI client: one gRPC channel per endpoint, the RuntimeService and ImageService stubs."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpc

from criapi import api_pb2_grpc

MAX_MESSAGE = 16 * 1024 * 1024  # kubelet's limit; list answers with many objects exceed 4 MiB


def grpc_target(endpoint: str) -> str:
    """``unix:///run/x.sock``, ``/run/x.sock`` or ``tcp://host:port`` as gRPC wants them."""
    if endpoint.startswith("unix://"):
        return "unix:" + endpoint.removeprefix("unix://")
    if endpoint.startswith("/"):
        return "unix:" + endpoint
    return endpoint.removeprefix("tcp://")


class Client:
    def __init__(self, runtime_endpoint: str, image_endpoint: str = "") -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        self._runtime_channel = grpc.insecure_channel(grpc_target(runtime_endpoint), options)
        self._image_channel = (
            grpc.insecure_channel(grpc_target(image_endpoint), options)
            if image_endpoint and image_endpoint != runtime_endpoint
            else self._runtime_channel
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self._runtime_channel)
        self.image = api_pb2_grpc.ImageServiceStub(self._image_channel)

    def close(self) -> None:
        self._runtime_channel.close()
        if self._image_channel is not self._runtime_channel:
            self._image_channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
