"""Whether this node can run pods in user namespaces of their own (KEP-127, hostUsers: false),
decided once at start-up; Status advertises the answer for the embedded runtime handler.

Two things are needed: overlayfs must stack idmapped layers (a container's rootfs shows the
image's files owned by root of the pod), and root of the pod, unprivileged on the host, must
be able to pass through every directory above the container bundles to reach its rootfs.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from runtime import idmap
from runtime.zygote import Zygote


def problem(zygote: Zygote, containers_dir: Path) -> str | None:
    """Why pods cannot have user namespaces with bundles under `containers_dir`, or None.
    Creates `containers_dir` (searchable by all: each bundle below guards itself)."""
    containers_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    containers_dir.chmod(0o711)
    for directory in (containers_dir, *containers_dir.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            return (
                f"{directory} (mode {stat.filemode(mode)}) cannot be passed through by other "
                f"users, so root of a pod's user namespace could not reach its rootfs below "
                f"{containers_dir}"
            )
    return idmap.probe(zygote, containers_dir / f".userns-probe-{secrets.token_hex(4)}")
