"""Issue #6's exec-probe soak, cut to CI length: 20 containers probed with ExecSync every
100 ms for 15 s leave no zombie and no leaked fd in the daemon or the monitors. The full
two-minute soak, which prints numbers, is bench/exec_soak.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import DaemonPaths, RunningDaemon, assert_nothing_left, start_daemon
from tests.exec_soak import RPC_TIMEOUT, Fleet, remove_fleet, soak, start_fleet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONTAINERS = 20
INTERVAL = 0.1
DURATION = 15
# Every probe is an exec with two pipes and a connection to the monitor, so a leak of one
# fd per exec shows as hundreds of fds after 15 s (the two-minute soak of bench/exec_soak.py
# ends with exactly as many as it began with). The slack only absorbs a few descriptors the
# daemon may open once and keep, later than the warm-up happened to make it.
DAEMON_FD_SLACK = 3
# A monitor opens nothing for good after its first execs (all made in the warm-up).
MONITOR_FD_SLACK = 0


@pytest.fixture
def daemon_with_image() -> Iterator[tuple[RunningDaemon, str]]:
    image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")))
    base = Path(tempfile.mkdtemp(prefix="es", dir="/tmp"))  # short: monitor sockets lie below
    daemon: RunningDaemon | None = None
    try:
        with Registry() as registry:
            ci.Pusher(registry.host).push_image("soak/sleep", image, "v1")
            ref = f"{registry.host}/soak/sleep:v1"
            daemon = start_daemon(DaemonPaths(base))
            daemon.image.PullImage(
                pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
            )
        yield daemon, ref
        assert daemon.stop() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        if daemon is not None and daemon.process.poll() is None:
            daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def test_exec_probes_at_kubelet_pace_leak_nothing(
    daemon_with_image: tuple[RunningDaemon, str],
) -> None:
    daemon, image = daemon_with_image
    fleet = Fleet()
    try:
        start_fleet(daemon, image, CONTAINERS, fleet)
        result = soak(
            daemon,
            fleet.containers,
            INTERVAL,
            DURATION,
            monitor_fd_slack=MONITOR_FD_SLACK,
            daemon_fd_slack=DAEMON_FD_SLACK,
        )
    finally:
        remove_fleet(daemon, fleet)
    probes, before, after = result.results, result.before, result.after
    assert probes.failures == [], f"{len(probes.failures)} failed: {probes.failures[:5]}"
    # Two cores run 40-80 execs a second, below the 200 a second asked for here; what
    # matters is that every container was probed many times.
    assert probes.probes >= CONTAINERS * 5, probes.probes
    assert after.zombies == ()
    assert after.daemon_fds <= before.daemon_fds + DAEMON_FD_SLACK, (before, after)
    assert after.grown_monitors(before, MONITOR_FD_SLACK) == {}
