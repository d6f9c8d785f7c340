"""What a case works with: a fresh CRI client, builders for pod and container configs, and
helpers that record everything they create so that ``cleanup`` removes it (in reverse order,
whatever happened to the case)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from criapi import api_pb2 as pb
from critest import hostmount
from critest.case import CaseFailure
from critest.client import Client
from critest.testimages import PAUSE_COMMAND, TestImages

T = TypeVar("T")
RPC_TIMEOUT = 60.0  # per call; pulls and stops may legitimately take tens of seconds
EXEC_TIMEOUT = 30  # seconds, as upstream's defaultExecSyncTimeout
STOP_TIMEOUT = 10  # seconds of grace: containers here run sh/sleep, which die on SIGTERM
# Exits at once on SIGTERM (the trap interrupts ``wait``), so stops take no grace period.
SLEEP_FOREVER = list(PAUSE_COMMAND)


@dataclass(frozen=True)
class Env:
    """Run-wide settings shared by every case."""

    runtime_endpoint: str
    image_endpoint: str
    images: TestImages
    work_dir: Path  # host directory for volumes, log dirs, seccomp profiles
    runtime_handler: str = ""
    cgroup_parent: str = ""


def is_not_found(error: grpc.RpcError) -> bool:
    return isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.NOT_FOUND


class Fixture:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.client = Client(env.runtime_endpoint, env.image_endpoint)
        self.rt = self.client.runtime
        self.img = self.client.image
        self._cleanups: list[tuple[str, Callable[[], None]]] = []

    # --- cleanup ------------------------------------------------------------------------

    def defer(self, what: str, action: Callable[[], None]) -> None:
        """Runs ``action`` at cleanup, before anything created earlier is removed."""
        self._cleanups.append((what, action))

    def cleanup(self) -> list[str]:
        """Undoes everything in reverse order; returns one line per step that failed."""
        errors = []
        while self._cleanups:
            what, action = self._cleanups.pop()
            try:
                action()
            except Exception as error:  # one failed step must not stop the later ones
                errors.append(f"{what}: {describe(error)}")
        self.client.close()
        return errors

    # --- host files ---------------------------------------------------------------------

    def host_dir(self, prefix: str = "dir-") -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.env.work_dir))
        self.defer(f"remove {path}", lambda: _remove_tree(path))
        return path

    # --- pods ---------------------------------------------------------------------------

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    def pod_config(self, prefix: str = "pod-", **fields: object) -> pb.PodSandboxConfig:
        """A pod config with unique metadata; ``fields`` set top-level fields."""
        name = self.unique(prefix)
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(
                name=name,
                uid=self.unique("uid-"),
                namespace=self.unique("ns-"),
                attempt=1,
            ),
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=self.env.cgroup_parent),
            **fields,  # type: ignore[arg-type]
        )
        return config

    def run_pod(self, config: pb.PodSandboxConfig | None = None) -> str:
        config = config or self.pod_config()
        response = self.rt.RunPodSandbox(
            pb.RunPodSandboxRequest(config=config, runtime_handler=self.env.runtime_handler),
            timeout=RPC_TIMEOUT,
        )
        pod_id = response.pod_sandbox_id
        self.defer(f"remove pod {pod_id}", lambda: _gone_is_fine(self.remove_pod, pod_id))
        return pod_id

    def remove_pod(self, pod_id: str) -> None:
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
        self.rt.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )

    def pod_status(self, pod_id: str) -> pb.PodSandboxStatus:
        return self.rt.PodSandboxStatus(
            pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        ).status

    # --- containers ---------------------------------------------------------------------

    def container_config(
        self,
        prefix: str = "ctr-",
        *,
        image: str = "",
        command: list[str] | None = None,
        **fields: object,
    ) -> pb.ContainerConfig:
        """A container of the default image that sleeps until stopped, unless told else."""
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=self.unique(prefix), attempt=1),
            image=pb.ImageSpec(image=image or self.env.images.default.ref),
            command=SLEEP_FOREVER if command is None else command,
            **fields,  # type: ignore[arg-type]
        )

    def create_container(
        self,
        pod_id: str,
        pod_config: pb.PodSandboxConfig,
        config: pb.ContainerConfig | None = None,
    ) -> str:
        config = config or self.container_config()
        response = self.rt.CreateContainer(
            pb.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
            ),
            timeout=RPC_TIMEOUT,
        )
        container_id = response.container_id
        self.defer(
            f"remove container {container_id}",
            lambda: _gone_is_fine(self.remove_container, container_id),
        )
        return container_id

    def remove_container(self, container_id: str) -> None:
        self.rt.StopContainer(
            pb.StopContainerRequest(container_id=container_id, timeout=0), timeout=RPC_TIMEOUT
        )
        self.rt.RemoveContainer(
            pb.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def start(self, container_id: str) -> None:
        self.rt.StartContainer(
            pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def stop(self, container_id: str, grace: int = STOP_TIMEOUT) -> None:
        self.rt.StopContainer(
            pb.StopContainerRequest(container_id=container_id, timeout=grace),
            timeout=RPC_TIMEOUT + grace,
        )

    def status(self, container_id: str) -> pb.ContainerStatus:
        return self.rt.ContainerStatus(
            pb.ContainerStatusRequest(container_id=container_id),
            timeout=RPC_TIMEOUT,
        ).status

    def wait_state(
        self, container_id: str, state: pb.ContainerState.ValueType, timeout: float = 60
    ) -> pb.ContainerStatus:
        return self.wait_for(
            lambda: s if (s := self.status(container_id)).state == state else None,
            timeout,
            f"container {container_id} in state {pb.ContainerState.Name(state)}",
        )

    def run_container(
        self,
        pod_id: str,
        pod_config: pb.PodSandboxConfig,
        config: pb.ContainerConfig | None = None,
    ) -> str:
        """Create and start, then wait until it runs."""
        container_id = self.create_container(pod_id, pod_config, config)
        self.start(container_id)
        self.wait_state(container_id, pb.CONTAINER_RUNNING)
        return container_id

    def pod_with_container(
        self,
        config: pb.ContainerConfig | None = None,
        pod_config: pb.PodSandboxConfig | None = None,
    ) -> tuple[str, str]:
        """A running pod and a running container in it: (pod id, container id)."""
        pod_config = pod_config or self.pod_config()
        pod_id = self.run_pod(pod_config)
        return pod_id, self.run_container(pod_id, pod_config, config)

    def exec_sync(
        self, container_id: str, cmd: list[str], timeout: int = EXEC_TIMEOUT
    ) -> pb.ExecSyncResponse:
        return self.rt.ExecSync(
            pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
            timeout=RPC_TIMEOUT + timeout,
        )

    def exec_ok(self, container_id: str, cmd: list[str]) -> str:
        """Runs ``cmd``; it must exit 0. Returns its stdout."""
        answer = self.exec_sync(container_id, cmd)
        if answer.exit_code != 0:
            raise CaseFailure(
                f"{cmd!r} exited {answer.exit_code}: stdout={answer.stdout!r} "
                f"stderr={answer.stderr!r}"
            )
        return answer.stdout.decode()

    def shell(self, container_id: str, script: str) -> str:
        return self.exec_ok(container_id, ["sh", "-c", script])

    # --- images -------------------------------------------------------------------------

    def pull(self, ref: str) -> str:
        """Pulls ``ref``; the image is removed (by id) at cleanup. Returns image_ref."""
        response = self.img.PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
            timeout=RPC_TIMEOUT * 3,
        )
        image_ref = response.image_ref
        self.defer(f"remove image {ref}", lambda: _gone_is_fine(self.remove_image, image_ref))
        return image_ref

    def remove_image(self, ref: str) -> None:
        self.img.RemoveImage(
            pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
        )

    def image_status(self, ref: str) -> pb.Image | None:
        response = self.img.ImageStatus(
            pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
        )
        return response.image if response.HasField("image") else None

    # --- runtime ------------------------------------------------------------------------

    def runtime_status(self) -> pb.StatusResponse:
        return self.rt.Status(pb.StatusRequest(), timeout=RPC_TIMEOUT)

    def handler_features(self) -> pb.RuntimeHandlerFeatures | None:
        """Features the runtime reports for the handler in use (None: not reported)."""
        for handler in self.runtime_status().runtime_handlers:
            if handler.name == self.env.runtime_handler:
                return handler.features
        return None

    # --- waiting ------------------------------------------------------------------------

    @staticmethod
    def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            result = probe()
            if result is not None and result is not False:
                return result
            if time.monotonic() > deadline:
                raise CaseFailure(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def expect_rpc_error(call: Callable[[], object], what: str) -> grpc.RpcError:
    """``call`` must fail with a gRPC error; returns it."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise CaseFailure(f"{what}: the call succeeded but must fail")


def _remove_tree(path: Path) -> None:
    """rmtree, but never through a mount a failed case left behind: that would delete the
    mounted files (a host directory, or a container's)."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in reversed(points):
        if point.startswith(f"{path}/"):
            hostmount.unmount(point.replace("\\040", " "))
    shutil.rmtree(path)


def _gone_is_fine(remove: Callable[[str], None], object_id: str) -> None:
    """Cleanup of something the case itself may already have removed: several runtimes
    answer NOT_FOUND there although the CRI calls Stop and Remove idempotent, and that is
    checked by the idempotence cases, not by every case's cleanup."""
    try:
        remove(object_id)
    except grpc.RpcError as error:
        if not is_not_found(error):
            raise


def describe(error: BaseException) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"
