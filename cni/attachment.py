"""What identifies one plugin invocation for a pod: container id, netns, ifname, CNI_ARGS
and the capability arguments offered to plugins (filtered per plugin at invocation)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cni.errors import CNIError

CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_IFNAME_FORBIDDEN = re.compile(r"[/:\s]")


@dataclass(frozen=True)
class Attachment:
    container_id: str
    netns: str  # path to the netns file; "" when it is gone (DEL only)
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        validate_container_id(self.container_id)
        validate_ifname(self.ifname)
        for key, value in self.args:
            validate_arg(key, value)

    @property
    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


def k8s_args(
    namespace: str, name: str, infra_container_id: str, uid: str
) -> tuple[tuple[str, str], ...]:
    # IgnoreUnknown lets plugins that parse CNI_ARGS strictly accept the K8S_* keys.
    return (
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", infra_container_id),
        ("K8S_POD_UID", uid),
    )


def validate_container_id(container_id: str) -> None:
    if not CONTAINER_ID_RE.match(container_id):
        raise CNIError(
            f"invalid CNI container id {container_id!r}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )


def validate_ifname(ifname: str) -> None:
    if not ifname or ifname in (".", "..") or len(ifname) > 15 or _IFNAME_FORBIDDEN.search(ifname):
        raise CNIError(f"invalid interface name {ifname!r}")


def validate_arg(key: str, value: str) -> None:
    # CNI_ARGS has no quoting, and plugins split each pair on every '=': either
    # character inside a key or value would forge or break a pair.
    if not key or any(c in key + value for c in ";=\0"):
        raise CNIError(f"invalid CNI_ARGS pair {key!r}={value!r}")
