"""The streaming server's backend: hands each exec, attach or port-forward session to the
domain (sandbox/), which joins it to a container or a pod."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from cri.streaming import ProcessIO
from sandbox.container_stream import StreamIO
from sandbox.containers import ContainerService
from sandbox.pods import PodService


def _stream_io(io: ProcessIO) -> StreamIO:
    return StreamIO(io.tty, io.stdin, io.stdout, io.stderr, io.resizes, io.cancelled)


class DomainBackend:
    def __init__(self, containers: ContainerService, pods: PodService) -> None:
        self._containers = containers
        self._pods = pods

    def exec(self, container_id: str, cmd: Sequence[str], io: ProcessIO) -> int:
        return self._containers.exec_stream(container_id, cmd, _stream_io(io))

    def attach(self, container_id: str, io: ProcessIO) -> None:
        self._containers.attach_stream(container_id, _stream_io(io))

    def port_forward(self, pod_sandbox_id: str, port: int) -> socket.socket:
        return self._pods.port_forward(pod_sandbox_id, port)
