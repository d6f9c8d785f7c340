"""Benchmark: what the RuntimeDefault seccomp profile costs on the container start path.

Run as root from the repository root: `python bench/seccomp_cost.py`. Prints numbers only.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

CHILDREN = 10

# One container init's worth: build the profile, compile, load (through libseccomp, and as
# precompiled BPF); then the cost per syscall.
MEASURE = textwrap.dedent(
    """\
    import json, os, time
    start = time.perf_counter()
    from runtime import seccomp, seccomp_profiles
    seccomp.library_version()
    imported = time.perf_counter()
    profile = seccomp_profiles.runtime_default({"CAP_CHOWN", "CAP_KILL", "CAP_SETUID"})
    built = time.perf_counter()
    compiled = seccomp.compile(profile)
    compiled_at = time.perf_counter()
    program = compiled.bpf()
    exported = time.perf_counter()
    def per_call():
        begin = time.perf_counter()
        for _ in range(100_000):
            os.getppid()
        return (time.perf_counter() - begin) * 1e4  # microseconds per 1000 calls
    before = per_call()
    # The precompiled path first; the libseccomp load then stacks a second, equal filter.
    bpf_at = time.perf_counter()
    seccomp.load_bpf(program)
    bpf_loaded = time.perf_counter()
    after = per_call()
    loaded_at = time.perf_counter()
    compiled.load()
    loaded = time.perf_counter()
    compiled.release()
    print(json.dumps({
        "import + dlopen ms": (imported - start) * 1e3,
        "runtime_default() ms": (built - imported) * 1e3,
        "compile ms": (compiled_at - built) * 1e3,
        "Filter.load() ms": (loaded - loaded_at) * 1e3,
        "Filter.bpf() ms": (exported - compiled_at) * 1e3,
        "load_bpf() ms": (bpf_loaded - bpf_at) * 1e3,
        "getppid us/1000 unfiltered": before,
        "getppid us/1000 filtered": after,
        "bpf instructions": len(program) // 8,
        "libseccomp": ".".join(map(str, seccomp.library_version())),
    }))
    """
)


def main() -> int:
    samples = []
    for _ in range(CHILDREN):
        done = subprocess.run(
            [sys.executable, "-c", MEASURE],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            check=True,
        )
        samples.append(json.loads(done.stdout))
    print(f"RuntimeDefault seccomp, median of {CHILDREN} fresh interpreters:")
    for key, first in samples[0].items():
        if isinstance(first, str):
            print(f"  {key:28} {first}")
        else:
            values = [sample[key] for sample in samples]
            median, low, high = statistics.median(values), min(values), max(values)
            print(f"  {key:28} {median:8.2f}  (min {low:.2f}, max {high:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
