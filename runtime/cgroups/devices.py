"""cgroup v1 devices controller: the allow/deny list of device nodes.

cgroup v2 has no files for this (it needs an eBPF program); not implemented yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import DeviceRule


def rule_text(rule: DeviceRule) -> str:
    """devices.allow/deny syntax: "c 1:3 rwm", with * for any major/minor."""
    if rule.type == "a":
        return "a"  # the kernel ignores major/minor/access for "all"
    major = "*" if rule.major is None or rule.major < 0 else str(rule.major)
    minor = "*" if rule.minor is None or rule.minor < 0 else str(rule.minor)
    return f"{rule.type} {major}:{minor} {rule.access}"


def set_v1(directory: Path, rules: Iterable[DeviceRule]) -> None:
    # Rules apply in order, like the OCI list: typically deny-all first, then allows.
    for rule in rules:
        files.write(directory, "devices.allow" if rule.allow else "devices.deny", rule_text(rule))
