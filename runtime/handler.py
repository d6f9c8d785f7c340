"""What the sandbox needs of an OCI runtime, whichever runs a pod's containers: the
embedded one (runtime.container.Runtime) or an external runc-compatible binary
(runtime.external.ExternalRuntime). Both report failures with the exceptions of
runtime.container and keep the same per-container state directory under `state_root`.
"""

from __future__ import annotations

import builtins
import threading
from pathlib import Path
from typing import Protocol

from runtime.cgroups import LinuxResources
from runtime.container import ContainerState
from runtime.control import Attachment
from runtime.spec import Process


class ContainerRuntime(Protocol):
    @property
    def state_root(self) -> Path:
        """state_root/<id>/exit.json appears once a container has exited and its log is
        complete: a cheap check for watchers."""
        ...

    def problem(self) -> str | None:
        """Why containers cannot be created now, or None."""
        ...

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        log_path: Path | None = None,
        stdin: bool = False,
        stdin_once: bool = False,
    ) -> ContainerState: ...

    def start(self, container_id: str) -> None: ...

    def state(self, container_id: str) -> ContainerState: ...

    def list(self) -> builtins.list[ContainerState]: ...

    def kill(self, container_id: str, signum: int, all: bool = False) -> None: ...

    def wait(self, container_id: str, timeout: float) -> ContainerState: ...

    def delete(self, container_id: str, force: bool = False) -> None: ...

    def process(self, container_id: str) -> Process: ...

    def exec(
        self,
        container_id: str,
        process: Process,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> int: ...

    def attach(self, container_id: str, stdin: bool = False) -> Attachment: ...

    def resize(self, container_id: str, width: int, height: int) -> None: ...

    def reopen_log(self, container_id: str) -> None: ...

    def update(self, container_id: str, resources: LinuxResources) -> None: ...

    def close(self) -> None: ...
