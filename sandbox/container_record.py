"""What a container is in the domain: the persisted record of what crisp made for it and
what it was asked for (enough to report its status and tear it down after a restart)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sandbox.container_config import HugepageLimit, MountRequest, Propagation, Resources
from sandbox.container_user import ProcessUser

# Record states. CREATING is persisted before the first host change, so that a crash in the
# middle of CreateContainer is found and undone at the next start. REMOVING: RemoveContainer
# has answered and the container is gone for clients; what it had on the host (monitor
# state, cgroup, overlay, bundle) is still being taken apart, also after a crash.
CREATING = "creating"
CREATED = "created"
RUNNING = "running"
EXITED = "exited"
REMOVING = "removing"


@dataclass
class Container:
    id: str
    pod_id: str
    name: str
    attempt: int
    state: str
    created_ns: int
    image: str  # the image as the client named it
    image_id: str  # the config digest: kubelet's image_ref
    layers: list[str]  # chain IDs the overlays use (also image volumes'): kept from GC
    bundle: str  # root_dir/containers/<id>: config.json, rootfs, upper, work
    cgroup: str  # the container's cgroup path
    log_path: str = ""  # absolute; "" when the client asked for none
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    pid_namespace: str = ""  # "container" when the container has its own (a target for others)
    runtime_handler: str = ""  # its pod's; "" in records older than handlers: the default
    start_error: str = ""  # why the runtime could not create it (it is then EXITED)

    @property
    def rootfs(self) -> str:
        return f"{self.bundle}/rootfs"

    @property
    def upper(self) -> str:
        return f"{self.bundle}/upper"

    @property
    def work(self) -> str:
        return f"{self.bundle}/work"

    def mount_requests(self) -> list[MountRequest]:
        return [
            MountRequest(
                container_path=m["container_path"],
                host_path=m["host_path"],
                readonly=m["readonly"],
                recursive_read_only=m["recursive_read_only"],
                propagation=Propagation(m["propagation"]),
                selinux_relabel=m["selinux_relabel"],
                image=m.get("image", ""),
                image_sub_path=m.get("image_sub_path", ""),
            )
            for m in self.mounts
        ]

    def process_user(self) -> ProcessUser:
        u = self.user
        return ProcessUser(
            int(u.get("uid", 0)),
            int(u.get("gid", 0)),
            tuple(u.get("additional_gids", ())),
            str(u.get("username", "")),
        )

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("id", "state", "created_ns"):
            del doc[key]  # the record holds these itself
        return doc

    @classmethod
    def from_doc(cls, id: str, state: str, created_ns: int, doc: dict[str, Any]) -> Container:
        names = {f.name for f in dataclasses.fields(cls)} - {"id", "state", "created_ns"}
        values = {k: v for k, v in doc.items() if k in names}
        return cls(id=id, state=state, created_ns=created_ns, **values)


def mount_doc(mount: MountRequest, image_id: str = "") -> dict[str, Any]:
    """An image volume records the image's ID (what kubelet's image GC looks for in the
    status) rather than the name it was asked by."""
    return {
        "container_path": mount.container_path,
        "host_path": mount.host_path,
        "readonly": mount.readonly or bool(image_id),
        "recursive_read_only": mount.recursive_read_only,
        "propagation": mount.propagation.value,
        "selinux_relabel": mount.selinux_relabel,
        "image": image_id,
        "image_sub_path": mount.image_sub_path,
    }


def resources_doc(resources: Resources) -> dict[str, Any]:
    doc = dataclasses.asdict(resources)
    doc["unified"] = dict(resources.unified)
    return doc


def resources_from_doc(doc: dict[str, Any]) -> Resources:
    values = dict(doc)
    values["hugepage_limits"] = tuple(HugepageLimit(**h) for h in doc.get("hugepage_limits", ()))
    values["unified"] = dict(doc.get("unified", {}))
    return Resources(**values)


@dataclass(frozen=True)
class Observed:
    """A container's live state from the runtime."""

    state: str  # CREATED, RUNNING or EXITED
    pid: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
