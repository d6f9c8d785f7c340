"""The gRPC servers: RuntimeService + ImageService on the main socket, optionally ImageService
alone on a second socket, with the standard health service on each."""

from __future__ import annotations

import contextlib
import os
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cri.endpoint import StartupError, prepare_socket_path
from cri.interceptors import ObservingInterceptor
from cri.metrics import Metrics
from criapi import api_pb2_grpc as pb_grpc

RUNTIME_SERVICE = "runtime.v1.RuntimeService"
IMAGE_SERVICE = "runtime.v1.ImageService"

# Sized for kubelet's steady poll load plus a few long calls (pulls, stop timeouts, exec).
_WORKERS = 32


class CriServer:
    def __init__(
        self,
        socket_path: Path,
        socket_mode: int,
        max_message_bytes: int,
        metrics: Metrics,
        runtime_service: pb_grpc.RuntimeServiceServicer | None,
        image_service: pb_grpc.ImageServiceServicer,
    ) -> None:
        self.socket_path = socket_path
        self._socket_mode = socket_mode
        self._listening = False
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A unix socket path must never be shared with another server by accident.
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="cri"),
            interceptors=[ObservingInterceptor(metrics)],
            options=options,
        )
        served = [IMAGE_SERVICE]
        if runtime_service is not None:
            pb_grpc.add_RuntimeServiceServicer_to_server(runtime_service, self._server)
            served.insert(0, RUNTIME_SERVICE)
        pb_grpc.add_ImageServiceServicer_to_server(image_service, self._server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for service in ["", *served]:
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def start(self) -> None:
        prepare_socket_path(self.socket_path)
        # Bind with a umask that already yields the final mode, so the socket is never
        # reachable with wider permissions, then chmod for modes a umask cannot express.
        previous = os.umask(0o777 & ~self._socket_mode)
        try:
            self._server.add_insecure_port(f"unix:{self.socket_path}")
            self._listening = True
        except RuntimeError as e:
            raise StartupError(f"socket {self.socket_path}: cannot listen: {e}") from e
        finally:
            os.umask(previous)
        os.chmod(self.socket_path, self._socket_mode)
        self._server.start()

    def stop(self, grace_seconds: float) -> None:
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
        if not self._listening:
            return  # never bound: whatever is at the path is not ours to remove
        self._listening = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
