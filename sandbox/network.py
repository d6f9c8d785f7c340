"""The node's pod network: CNI, set up the way crisp wires every pod."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cni.network import NetworkManager

POD_INTERFACE = "eth0"


def open_pod_network(
    conf_dir: str, bin_dirs: Sequence[str], default_network: str, root_dir: Path
) -> NetworkManager:
    # Results live under the root dir so that teardown after a daemon restart (or a
    # reboot of the network config) still has what ADD returned.
    return NetworkManager(
        conf_dir,
        bin_dirs,
        root_dir / "cni-cache",
        default_network=default_network or None,
        ifname=POD_INTERFACE,
        loopback=True,
    )
