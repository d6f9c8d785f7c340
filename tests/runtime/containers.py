"""Helpers for container tests: a busybox rootfs, OCI bundles, and a driver process that
runs `Runtime` (tests/runtime/runtime_driver.py) so the zygote never sees pytest's threads."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.cgroups import find_mounts
from tests.runtime.processes import REPO, remove_cgroup_dirs

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(
    not BUSYBOX.exists(), reason="needs /bin/busybox (apt-get install busybox-static)"
)
APPLETS = [
    *("sh", "cat", "echo", "id", "hostname", "ls", "mount", "sleep", "true", "false", "test"),
    *("grep", "ps", "kill", "env", "pwd", "touch", "mkdir", "stat", "wc", "head", "tail"),
    *("tr", "dd", "yes", "seq", "sysctl", "umask", "printf", "stty", "tty"),
]


def make_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    for directory in ("etc", "proc", "sys", "dev", "tmp", "root"):
        (path / directory).mkdir(exist_ok=True)
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nextra:x:2000:\n")
    return path


DEFAULT_CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"]

BASE_SPEC: dict[str, Any] = {
    "ociVersion": "1.1.0",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo hello"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: DEFAULT_CAPS for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "crisp-test",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
    },
}


class Driver:
    """One stand-in daemon; `call` runs a Runtime method in it."""

    def __init__(self, state_root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.runtime_driver", str(state_root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        hello = self._line()
        self.zygote = int(hello["zygote"])

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"driver exited with {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Result of the method, or raise DriverError carrying the exception's type."""
        assert self.process.stdin is not None
        request = {
            "method": method,
            "args": [str(a) if isinstance(a, Path) else a for a in args],
            "kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()},
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._line()
        if "error" in answer:
            raise DriverError(answer["error"], answer["message"])
        return answer["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.close()


class DriverError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Lab:
    """Per-test world: a state root, bundles, a cgroup parent, a driver; `cleanup` leaves
    no container, monitor, mount or cgroup behind."""

    def __init__(self, base: Path, cgroup_parent: str) -> None:
        self.base = base
        self.cgroup_parent = cgroup_parent
        self.state_root = base / "state"
        self.rootfs = make_rootfs(base / "rootfs-template")
        self.drivers: list[Driver] = []
        self.driver = self.new_driver()
        self.count = 0

    def new_driver(self) -> Driver:
        driver = Driver(self.state_root)
        self.drivers.append(driver)
        return driver

    def bundle(self, args: list[str] | None = None, **changes: Any) -> Path:
        """A bundle with BASE_SPEC changed by `changes` (dotted keys: "process.cwd")."""
        self.count += 1
        bundle = self.base / f"bundle{self.count}"
        bundle.mkdir()
        shutil.copytree(self.rootfs, bundle / "rootfs", symlinks=True)
        spec = copy.deepcopy(BASE_SPEC)
        spec["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/c{self.count}"
        if args is not None:
            spec["process"]["args"] = args
        for dotted, value in changes.items():
            target = spec
            *path, last = dotted.split(".")
            for key in path:
                target = target.setdefault(key, {})
            if value is None:
                target.pop(last, None)
            else:
                target[last] = value
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def monitor_pids(self) -> list[int]:
        pids = []
        for record in self.state_root.glob("*/container.json"):
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(record.read_text())
                if data.get("monitor_pid"):
                    pids.append(int(data["monitor_pid"]))
        return pids

    def cleanup(self) -> None:
        driver = self.drivers[-1]
        if driver.process.poll() is None and self.state_root.is_dir():
            for entry in self.state_root.iterdir():
                with contextlib.suppress(DriverError):
                    driver.call("delete", entry.name, force=True)
        for pid in self.monitor_pids():  # last resort: pids recorded by our own creates
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for each in self.drivers:
            each.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(each.zygote, signal.SIGKILL)
        mounts = find_mounts()
        for point in {str(p) for p in mounts.v1.values()} | {str(mounts.unified or "")}:
            if point:
                _evict_and_remove(Path(point) / self.cgroup_parent)


def _evict_and_remove(top: Path) -> None:
    for procs in top.rglob("cgroup.procs") if top.is_dir() else []:
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while True:
        try:
            remove_cgroup_dirs(top)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def read_log(path: Path) -> list[tuple[str, str, str, str]]:
    """(timestamp, stream, tag, content) of every record of a CRI log file."""
    records = []
    for line in path.read_text().splitlines():
        stamp, stream, tag, content = [*line.split(" ", 3), ""][:4]
        records.append((stamp, stream, tag, content))
    return records


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    prefix = str(path)
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]
