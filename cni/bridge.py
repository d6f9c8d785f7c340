"""The host-side bridge a bridge-plugin network leaves behind: the plugin creates it on the
first ADD and never deletes it, so whoever retires the network does."""

from __future__ import annotations

from pathlib import Path

from pyroute2 import IPRoute, NetlinkError

from cni.errors import CNIError


def remove_if_idle(name: str) -> bool:
    """Delete bridge `name` if it exists and no interface is attached to it; True when it
    was deleted. Raises CNIError when the kernel refuses."""
    ports = Path("/sys/class/net") / name / "brif"
    if not ports.is_dir() or any(ports.iterdir()):
        return False
    try:
        with IPRoute() as netlink:
            for index in netlink.link_lookup(ifname=name):
                netlink.link("del", index=index)
    except NetlinkError as e:
        raise CNIError(f"cannot remove bridge {name}: {e}") from e
    return True
