"""Benchmark of the embedded runtime (prints numbers, asserts nothing):

    python -m bench.container_lifecycle [RUNS]   (as root, from the repository root)

create / start / create+start / delete latency percentiles over RUNS containers
(busybox `sleep`, new pid/net/ipc/uts/mount namespaces, a cgroup, a CRI log), and the
monitor's memory (PSS from /proc/PID/smaps_rollup) with one and with ten containers.
"""

from __future__ import annotations

import json
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import runtime.entry_points  # noqa: F401  (registers the zygote entry points)
from runtime.zygote import Zygote


def smaps_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0])
    return values


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return (
        f"p50 {at(0.5):7.2f}  p90 {at(0.9):7.2f}  p99 {at(0.99):7.2f}  "
        f"mean {statistics.mean(ordered):7.2f}  (ms, n={len(ordered)})"
    )


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    zygote = Zygote()
    from runtime.container import Runtime
    from tests.runtime.containers import BASE_SPEC, _evict_and_remove, make_rootfs

    with tempfile.TemporaryDirectory(prefix="crisp-bench-") as tmp:
        base = Path(tmp)
        parent = f"crisp-bench-{secrets.token_hex(4)}"
        bundle = base / "bundle"
        make_rootfs(bundle / "rootfs")
        rt = Runtime(base / "state", zygote)
        created_ids: list[str] = []
        try:
            create_ms, start_ms, total_ms, delete_ms = [], [], [], []
            for i in range(runs):
                spec = json.loads(json.dumps(BASE_SPEC))
                spec["process"]["args"] = ["sleep", "600"]
                spec["linux"]["cgroupsPath"] = f"/{parent}/b{i}"
                (bundle / "config.json").write_text(json.dumps(spec))
                name = f"b{i}"
                t0 = time.perf_counter()
                rt.create(name, bundle, log_path=base / f"{name}.log")
                created_ids.append(name)
                t1 = time.perf_counter()
                rt.start(name)
                t2 = time.perf_counter()
                create_ms.append((t1 - t0) * 1000)
                start_ms.append((t2 - t1) * 1000)
                total_ms.append((t2 - t0) * 1000)
                if i >= 10:  # keep ten alive for the memory figures
                    t3 = time.perf_counter()
                    rt.delete(name, force=True)
                    delete_ms.append((time.perf_counter() - t3) * 1000)
                    created_ids.remove(name)
            print(f"create        {percentiles(create_ms)}")
            print(f"start         {percentiles(start_ms)}")
            print(f"create+start  {percentiles(total_ms)}")
            print(f"delete -f     {percentiles(delete_ms)}")
            monitors = [
                int(json.loads((base / "state" / n / "container.json").read_text())["monitor_pid"])
                for n in created_ids
            ]
            ten = [smaps_kib(pid) for pid in monitors]
            while len(created_ids) > 1:
                name = created_ids.pop()
                rt.kill(name, signal.SIGKILL)
                rt.wait(name, 10)
                rt.delete(name)
            time.sleep(0.2)
            one = smaps_kib(monitors[0])
            print(
                f"monitor PSS, 1 container:   {one['Pss']} KiB "
                f"(RSS {one['Rss']} KiB, private {one['Private_Dirty'] + one['Private_Clean']} KiB)"
            )
            average = statistics.mean(m["Pss"] for m in ten)
            print(
                f"monitor PSS, 10 containers: {average:.0f} KiB each on average "
                f"(min {min(m['Pss'] for m in ten)}, max {max(m['Pss'] for m in ten)})"
            )
            print(f"zygote PSS: {smaps_kib(zygote.pid)['Pss']} KiB")
        finally:
            for name in created_ids:
                rt.delete(name, force=True)
            zygote.close()
            from runtime.cgroups import find_mounts

            mounts = find_mounts()
            for point in {str(p) for p in mounts.v1.values()} | {str(mounts.unified or "")}:
                if point:
                    _evict_and_remove(Path(point) / parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
