"""Node-wide runtime facts: readiness conditions, runtime handlers, and the pod CIDR.

This is what CRI's Status, RuntimeConfig and UpdateRuntimeConfig report and change.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sandbox.errors import InvalidArgument

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"

POD_CIDR_SETTING = "pod_cidr"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


class NetworkReadiness(Protocol):
    @property
    def ready(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class RuntimeHandler:
    """A configured runtime handler and what it supports."""

    name: str
    kind: Literal["embedded", "oci"]
    path: str = ""
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False

    def problem(self) -> str | None:
        """Why this handler cannot run containers now, or None when it can."""
        if self.kind == "oci":
            if not os.path.isfile(self.path):
                return f"runtime handler {self.name!r}: binary {self.path} does not exist"
            if not os.access(self.path, os.X_OK):
                return f"runtime handler {self.name!r}: binary {self.path} is not executable"
        return None


class SettingsStore(Protocol):
    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


NetworkProbe = Callable[[], NetworkReadiness]


class Node:
    def __init__(
        self,
        handlers: Sequence[RuntimeHandler],
        default_handler: str,
        cgroup_driver: Literal["cgroupfs", "systemd"],
        settings: SettingsStore,
        network_probe: NetworkProbe,
    ) -> None:
        self.handlers = list(handlers)
        self.default_handler = default_handler
        self.cgroup_driver = cgroup_driver
        self._settings = settings
        self._network_probe = network_probe

    def conditions(self) -> list[Condition]:
        problems = [p for h in self.handlers if (p := h.problem()) is not None]
        default = next(h for h in self.handlers if h.name == self.default_handler)
        if default.problem() is not None:
            runtime = Condition(
                RUNTIME_READY, False, "RuntimeHandlerUnavailable", "; ".join(problems)
            )
        else:
            runtime = Condition(RUNTIME_READY, True)
        network = self._network_probe()
        return [
            runtime,
            Condition(NETWORK_READY, network.ready, network.reason, network.message),
        ]

    def pod_cidr(self) -> str:
        return self._settings.get_setting(POD_CIDR_SETTING) or ""

    def set_pod_cidr(self, cidr: str) -> None:
        """Store the node's pod CIDR (kubelet sends it once it is assigned); empty is a no-op."""
        if not cidr:
            return
        for part in cidr.split(","):  # dual-stack nodes send "v4cidr,v6cidr"
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError as e:
                raise InvalidArgument(f"pod CIDR {cidr!r} is not a valid CIDR: {e}") from e
        self._settings.set_setting(POD_CIDR_SETTING, cidr)
