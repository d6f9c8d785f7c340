"""The exec-probe soak of issue #6 on a real crisp daemon (prints numbers, asserts nothing):

    python -m bench.exec_soak [--containers 20] [--interval 0.1] [--duration 120]
    (as root, from the repository root)

Starts a throw-away daemon on temporary paths and a registry on loopback with a busybox
image, runs CONTAINERS pods (host network) with one sleeping container each, and probes
every container with ExecSync (`cat /proc/self/status`, timeout 5 s) every INTERVAL seconds
from a thread of its own, as kubelet's exec probes do, for DURATION seconds. Prints the
exec latency percentiles, the failures, and before/after: the open fds of the daemon and of
each monitor, the daemon's threads and RSS, and the zombies whose parent is the daemon, a
monitor or a container process. The CI version is tests/integration/test_exec_soak.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.throwaway import throwaway_crisp
from critest import images as ci
from tests.exec_soak import Fleet, Soak, remove_fleet, soak, start_fleet
from tests.leak_audit import Holdings

# Only for the settling wait before the "after" look; the benchmark reports, never judges.
_SETTLE_SLACK = 0


def _row(label: str, before: float, after: float) -> str:
    return f"  {label:<28} {before:>10.0f} {after:>10.0f} {after - before:>+8.0f}"


def _holdings_table(before: Holdings, after: Holdings) -> list[str]:
    monitors_before = list(before.monitor_fds.values())
    monitors_after = [after.monitor_fds.get(pid, 0) for pid in before.monitor_fds]
    grown = after.grown_monitors(before, 0)
    return [
        f"  {'':<28} {'before':>10} {'after':>10} {'change':>8}",
        _row("daemon open fds", before.daemon_fds, after.daemon_fds),
        _row("daemon threads", before.daemon_threads, after.daemon_threads),
        _row("daemon RSS (KiB)", before.daemon_rss_kib, after.daemon_rss_kib),
        _row("monitor open fds, total", sum(monitors_before), sum(monitors_after)),
        _row("monitor open fds, max", max(monitors_before), max(monitors_after)),
        _row("zombies (crisp's)", len(before.zombies), len(after.zombies)),
        f"  monitors holding more fds after: {len(grown)} of {len(before.monitor_fds)}"
        + (f" {grown}" if grown else ""),
    ]


def report(result: Soak, containers: int, interval: float) -> None:
    probes = result.results
    print(
        f"{containers} containers, ExecSync every {interval * 1000:.0f} ms each, "
        f"{result.seconds:.1f} s: {probes.probes} probes "
        f"({probes.probes / result.seconds:.1f}/s), {len(probes.failures)} failed"
    )
    if probes.latencies_ms:
        print(
            f"  exec latency (ms): p50 {probes.percentile(0.5):.1f}  "
            f"p90 {probes.percentile(0.9):.1f}  p99 {probes.percentile(0.99):.1f}  "
            f"max {max(probes.latencies_ms):.1f}"
        )
    for failure in probes.failures[:10]:
        print(f"  failed: {failure}")
    print("\n".join(_holdings_table(result.before, result.after)))
    # Zombies seen while probes run are execs between their exit and the monitor's
    # waitpid; only the "after" look, once they had time to go, counts as a leak.
    print("  during the soak:  seconds  daemon RSS (KiB)  fds  threads  monitor fds  zombies")
    for seconds, look in result.during:
        print(
            f"  {seconds:>24.1f}  {look.daemon_rss_kib:>16}  {look.daemon_fds:>3}  "
            f"{look.daemon_threads:>7}  {sum(look.monitor_fds.values()):>11}  "
            f"{len(look.zombies):>7}"
        )
    if result.after.zombies:
        print(f"  zombies after: {list(result.after.zombies)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exec_soak")
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--duration", type=float, default=120, help="seconds of probing")
    args = parser.parse_args(argv)

    image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")))
    fleet = Fleet()
    with throwaway_crisp("es", image, "bench/soak") as crisp:
        try:
            start_fleet(crisp.daemon, crisp.image, args.containers, fleet)
            result = soak(
                crisp.daemon,
                fleet.containers,
                args.interval,
                args.duration,
                monitor_fd_slack=_SETTLE_SLACK,
                daemon_fd_slack=_SETTLE_SLACK,
            )
        finally:
            remove_fleet(crisp.daemon, fleet)
    report(result, args.containers, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
