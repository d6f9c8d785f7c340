"""Running one plugin binary: locating it in the bin dirs, building its stdin and
environment, enforcing a timeout, and decoding its error or result."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni import version as cniver
from cni.attachment import Attachment
from cni.config import PluginConfig
from cni.errors import (
    CNIError,
    InvalidResultError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from cni.result import Result, parse_result

log = logging.getLogger(__name__)

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
DEFAULT_TIMEOUT = 60.0


def find_plugin(ptype: str, bin_dirs: Sequence[str]) -> str:
    for directory in bin_dirs:
        path = os.path.join(directory, ptype)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise PluginNotFoundError(ptype, list(bin_dirs))


def runtime_config(plugin: PluginConfig, capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """The capability arguments this plugin declared; plugins may reject unknown keys."""
    return {k: v for k, v in capability_args.items() if k in plugin.capabilities}


def build_stdin(
    plugin: PluginConfig,
    net_name: str,
    cni_version: str,
    prev_result: Result | None = None,
    capability_args: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    conf: dict[str, Any] = json.loads(json.dumps(dict(plugin.raw)))
    # Every plugin of a list sees the list's name and version, whatever it declares itself.
    conf["name"] = net_name
    conf["cniVersion"] = cni_version
    conf.pop("prevResult", None)
    if prev_result is not None:
        conf["prevResult"] = prev_result.to_dict(cni_version)
    if capability_args:
        rc = runtime_config(plugin, capability_args)
        if rc:
            base = conf.get("runtimeConfig")
            conf["runtimeConfig"] = {**(base if isinstance(base, dict) else {}), **rc}
    if extra:
        conf.update(extra)
    return json.dumps(conf).encode()


def plugin_env(
    command: str, bin_dirs: Sequence[str], att: Attachment | None = None
) -> dict[str, str]:
    if command not in COMMANDS:
        raise CNIError(f"unknown CNI command {command!r}")
    # Plugins need the daemon's PATH (portmap and bridge exec iptables), but must not
    # inherit stray CNI_* variables from whoever started the daemon.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = command
    env["CNI_PATH"] = os.pathsep.join(bin_dirs)
    if att is not None:
        env["CNI_CONTAINERID"] = att.container_id
        env["CNI_IFNAME"] = att.ifname
        if att.netns:
            env["CNI_NETNS"] = att.netns
        if att.args:
            env["CNI_ARGS"] = att.cni_args
    return env


@dataclass(frozen=True)
class Output:
    stdout: bytes
    stderr: bytes


class Runner:
    """Executes plugins. Tests may substitute it; the daemon uses it as is."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def run(self, path: str, command: str, stdin: bytes, env: Mapping[str, str]) -> Output:
        name = os.path.basename(path)
        # A session of its own lets a timeout kill the plugin together with the IPAM
        # plugin it delegated to. subprocess forks+execs in C with no Python in the child,
        # so this is safe from the threaded daemon.
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            close_fds=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise PluginTimeoutError(name, command, self.timeout) from None
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        if err:
            log.debug(
                "CNI plugin %s %s stderr: %s", name, command, err.decode(errors="replace").strip()
            )
        if proc.returncode != 0:
            raise decode_error(name, command, proc.returncode, out, err)
        return Output(out, err)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def decode_error(
    name: str, command: str, returncode: int, stdout: bytes, stderr: bytes
) -> PluginError:
    """Plugins report failures as {"code", "msg", "details"} JSON on stdout."""
    try:
        obj = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and ("code" in obj or "msg" in obj):
        code = obj.get("code")
        return PluginError(
            name,
            command,
            code if isinstance(code, int) else 0,
            str(obj.get("msg", "")),
            str(obj.get("details", "")),
        )
    text = (stderr or stdout).decode(errors="replace").strip() or f"exit status {returncode}"
    return PluginError(name, command, 0, text)


def decode_result(name: str, stdout: bytes) -> Result:
    if not stdout.strip():
        raise InvalidResultError(f"CNI plugin {name} ADD printed no result")
    try:
        obj = json.loads(stdout)
    except ValueError as exc:
        raise InvalidResultError(f"CNI plugin {name} printed invalid JSON: {exc}") from exc
    return parse_result(obj, f"CNI plugin {name}")


class VersionCache:
    """Supported spec versions per plugin binary, asked once per (path, size, mtime)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int], tuple[str, ...]] = {}

    def supported(self, path: str, runner: Runner, bin_dirs: Sequence[str]) -> tuple[str, ...]:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._known:
                return self._known[key]
        stdin = json.dumps({"cniVersion": cniver.LATEST}).encode()
        out = runner.run(path, "VERSION", stdin, plugin_env("VERSION", bin_dirs))
        try:
            obj = json.loads(out.stdout)
            versions = tuple(str(v) for v in obj["supportedVersions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidResultError(
                f"CNI plugin {os.path.basename(path)} VERSION output unreadable: {exc}"
            ) from exc
        with self._lock:
            self._known[key] = versions
        return versions
