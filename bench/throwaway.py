"""A crisp daemon for one benchmark run: temporary paths, one image pulled from a registry
on loopback, and everything removed again afterwards."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import (
    DaemonPaths,
    RunningDaemon,
    assert_nothing_left,
    start_daemon,
    write_config,
)

RPC_TIMEOUT = 60


@dataclass
class Throwaway:
    daemon: RunningDaemon
    image: str  # the pulled image's reference
    base: Path


@contextlib.contextmanager
def throwaway_crisp(
    prefix: str,
    image: ci.Image,
    repository: str,
    config: str = "",
    daemon_args: Sequence[str] = (),
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[Throwaway]:
    """Start a daemon below a fresh /tmp/<prefix>… directory, pull `image` into it (pushed
    as `repository`:v1), and yield it. The caller removes what it made before leaving the
    block; then the daemon stops, must have left nothing, and the directory goes, unless a
    mount is still in it (removing the tree would reach into it: say so instead)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: sockets lie below
    paths = DaemonPaths(base)
    write_config(paths, config)
    daemon: RunningDaemon | None = None
    try:
        if before_start is not None:
            before_start(base)
        with Registry() as registry:
            ci.Pusher(registry.host).push_image(repository, image, "v1")
            ref = f"{registry.host}/{repository}:v1"
            daemon = start_daemon(paths, daemon_args)
            daemon.image.PullImage(
                pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
            )
        yield Throwaway(daemon, ref, base)
    finally:
        try:
            if daemon is not None:
                daemon.stop()
                assert_nothing_left(daemon)
        finally:
            left = mounts_under(base)
            if left:
                print(f"warning: left behind under {base}: mounts {left}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
