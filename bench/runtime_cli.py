"""Benchmark of the `crisp-runtime` command (prints numbers, asserts nothing):

    python -m bench.runtime_cli [RUNS]   (as root, from the repository root)

Wall time of whole invocations as a caller such as containerd's shim sees them: a bare
interpreter start for scale, `state` of a running container, and `create` then `start`
(busybox `sleep`, new namespaces, a cgroup), each through the console script in the
interpreter's own bin directory (what a PATH without pyenv's shims finds).
"""

from __future__ import annotations

import json
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.container_lifecycle import percentiles


def timed_ms(argv: list[str], cpu: list[float]) -> float:
    """Wall time of running `argv`; its CPU time (user + system, which a loaded machine
    inflates less) is appended to `cpu`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return wall


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    from runtime.cgroups import find_mounts
    from tests.runtime.containers import BASE_SPEC, _evict_and_remove, make_rootfs

    script = str(Path(sys.executable).parent / "crisp-runtime")
    with tempfile.TemporaryDirectory(prefix="crt-bench-") as tmp:
        base = Path(tmp)
        parent = f"crisp-bench-{secrets.token_hex(4)}"
        bundle = base / "bundle"
        make_rootfs(bundle / "rootfs")
        cli = [script, "--root", str(base / "state")]
        created: list[str] = []
        try:
            cpu: dict[str, list[float]] = {k: [] for k in ("python", "state", "create", "start")}
            python_ms = [
                timed_ms([sys.executable, "-c", "pass"], cpu["python"]) for _ in range(runs)
            ]
            create_ms, start_ms, pair_ms = [], [], []
            for i in range(runs):
                spec = json.loads(json.dumps(BASE_SPEC))
                spec["process"]["args"] = ["sleep", "600"]
                spec["linux"]["cgroupsPath"] = f"/{parent}/b{i}"
                (bundle / "config.json").write_text(json.dumps(spec))
                create_ms.append(
                    timed_ms([*cli, "create", "-b", str(bundle), f"b{i}"], cpu["create"])
                )
                created.append(f"b{i}")
                start_ms.append(timed_ms([*cli, "start", f"b{i}"], cpu["start"]))
                pair_ms.append(create_ms[-1] + start_ms[-1])
            state_ms = [timed_ms([*cli, "state", "b0"], cpu["state"]) for _ in range(runs)]
            print("wall time of one invocation")
            print(f"  python -c pass   {percentiles(python_ms)}")
            print(f"  state            {percentiles(state_ms)}")
            print(f"  create           {percentiles(create_ms)}")
            print(f"  start            {percentiles(start_ms)}")
            print(f"  create+start     {percentiles(pair_ms)}")
            print("CPU time (user + system) of one invocation")
            for name, samples in cpu.items():
                print(f"  {name:<16} {percentiles(samples)}")
        finally:
            for name in created:
                subprocess.run([*cli, "delete", "--force", name], check=False)
            mounts = find_mounts()
            for point in {str(p) for p in mounts.v1.values()} | {str(mounts.unified or "")}:
                if point:
                    _evict_and_remove(Path(point) / parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
