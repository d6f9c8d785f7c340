"""The node's pod network: CNI, set up the way crisp wires every pod."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cni.config import conf_files
from cni.network import NetworkManager

POD_INTERFACE = "eth0"

DEFAULT_NETWORK_FILE = "10-crisp-bridge.conflist"

log = logging.getLogger("crisp.network")


def default_network() -> dict[str, Any]:
    """crisp's out-of-the-box network: a NATed bridge with host-local IPs and hostPorts,
    using only plugins Debian's containernetworking-plugins ships."""
    return {
        "cniVersion": "1.0.0",
        "name": "crisp",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "crisp0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": "10.86.0.0/16"}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }


def write_default_network(conf_dir: Path) -> Path | None:
    """Write the default network into `conf_dir` if it holds no network configuration.

    Returns the file written, or None when the directory already had a configuration."""
    if conf_files(conf_dir):
        return None
    conf_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = conf_dir / DEFAULT_NETWORK_FILE
    temporary = conf_dir / f".{DEFAULT_NETWORK_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(default_network(), indent=2) + "\n")
    # The plugins' config loader must never see half a file.
    temporary.rename(target)
    log.info("conf dir %s held no network: wrote crisp's default network to %s", conf_dir, target)
    return target


def open_pod_network(
    conf_dir: str,
    bin_dirs: Sequence[str],
    default_network_name: str,
    root_dir: Path,
    *,
    write_default: bool = False,
) -> NetworkManager:
    if write_default:
        write_default_network(Path(conf_dir))
    # Results live under the root dir so that teardown after a daemon restart (or a
    # reboot of the network config) still has what ADD returned.
    return NetworkManager(
        conf_dir,
        bin_dirs,
        root_dir / "cni-cache",
        default_network=default_network_name or None,
        ifname=POD_INTERFACE,
        loopback=True,
    )
