"""runtime.spec: config.json → typed Spec, with errors that name the field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime import mountopts
from runtime import syscalls as sc
from runtime.spec import SpecError, load, parse, parse_process, process_to_oci
from tests.runtime.containers import BASE_SPEC


def spec_with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE_SPEC)
    for dotted, value in changes.items():
        target = raw
        *path, last = dotted.split(".")
        for key in path:
            target = target.setdefault(key, {})
        target[last] = value
    return raw


def test_base_spec_parses_into_typed_fields() -> None:
    raw = spec_with(
        **{
            "process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
            "process.user": {"uid": 5, "gid": 6, "additionalGids": [7], "umask": 0o22},
            "process.oomScoreAdj": 100,
            "linux.sysctl": {"net.ipv4.ip_forward": "1"},
            "linux.resources": {"memory": {"limit": 1 << 20}},
            "linux.cgroupsPath": "/pods/c1",
            "linux.devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
        }
    )
    spec = parse(raw)
    assert spec.process is not None
    assert spec.process.args == ("sh", "-c", "echo hello")
    assert spec.process.user.uid == 5 and spec.process.user.additional_gids == (7,)
    assert spec.process.rlimits[0].soft == 10
    assert spec.process.capabilities is not None
    assert spec.process.capabilities.bounding == 0x4E1
    assert spec.hostname == "crisp-test"
    assert [m.destination for m in spec.mounts][:2] == ["/proc", "/dev"]
    assert spec.linux.namespace("pid") is not None and spec.linux.namespace("user") is None
    assert spec.linux.resources.memory is not None and spec.linux.resources.memory.limit == 1 << 20
    assert spec.linux.cgroups_path == "/pods/c1"
    assert spec.linux.devices[0].major == 10
    assert spec.linux.seccomp == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert spec.process.env_value("PATH") == "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"process.args": []}, "process.args must name an executable"),
        ({"process.env": ["NOEQUALS"]}, "process.env[0] must be NAME=VALUE"),
        ({"process.cwd": "relative"}, "process.cwd must be an absolute path"),
        ({"process.user": {"uid": -1}}, "process.user.uid=-1 is out of range"),
        ({"process.terminal": "yes"}, "process.terminal must be a boolean"),
        ({"process.rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}, "RLIMIT_BOGUS"),
        (
            {"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]},
            "soft limit 2 is above hard limit 1",
        ),
        ({"process.capabilities": {"effective": ["CAP_NOPE"]}}, "CAP_NOPE"),
        ({"root": {}}, "root.path is required"),
        ({"mounts": [{"destination": "/a/../b"}]}, "mounts[0].destination must not contain"),
        ({"mounts": [{"destination": "/x", "options": "ro"}]}, "mounts[0].options must be a list"),
        ({"linux.namespaces": [{"type": "pid"}, {"type": "pid"}]}, "given more than once"),
        ({"linux.namespaces": [{"type": "net"}]}, "unknown namespace 'net'"),
        ({"linux.namespaces": [{"type": "uts"}]}, "must create a new mount namespace"),
        ({"linux.namespaces": [{"type": "mount"}]}, "hostname/domainname need a uts namespace"),
        ({"linux.namespaces": [{"type": "mount"}, {"type": "time"}]}, "time namespace"),
        ({"linux.uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}, "user namespace"),
        ({"linux.maskedPaths": ["proc/kcore"]}, "linux.maskedPaths[0] must be an absolute"),
        ({"linux.sysctl": {"../x": "1"}}, "invalid sysctl name"),
        ({"linux.rootfsPropagation": "sideways"}, "linux.rootfsPropagation must be one of"),
        ({"linux.cgroupsPath": "/a/../b"}, "linux.cgroupsPath must not contain '..'"),
        ({"linux.resources": {"pids": {"limit": "many"}}}, "linux.resources.pids.limit"),
        ({"linux.devices": [{"path": "/dev/x", "type": "z"}]}, "linux.devices[0].type"),
        ({"linux.seccomp": []}, "linux.seccomp must be an object"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(spec_with(**changes))


def test_idmapped_mounts_need_a_joined_user_namespace_with_the_same_mappings() -> None:
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    other = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    bind = {"destination": "/v", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}
    joined = {
        "linux.namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}],
        "linux.uidMappings": mapping,
        "linux.gidMappings": mapping,
        "hostname": None,
    }
    spec = parse(spec_with(mounts=[bind], **joined))
    assert spec.linux.namespace("user") is not None
    assert parse(
        spec_with(mounts=[{**bind, "uidMappings": mapping, "gidMappings": mapping}], **joined)
    )
    bad: list[tuple[dict[str, Any], str]] = [
        ({"mounts": [bind], "hostname": None}, "needs a joined user namespace"),
        (
            {"mounts": [{**bind, "uidMappings": other, "gidMappings": other}], **joined},
            "other than",
        ),
        ({"mounts": [{**bind, "type": "tmpfs", "options": ["idmap"]}], **joined}, "only bind"),
    ]
    for changes, message in bad:
        with pytest.raises(SpecError, match=message):
            parse(spec_with(**changes))


def test_load_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"config\.json does not exist"):
        load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="cannot read"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BASE_SPEC))
    assert load(tmp_path).rootfs(tmp_path) == tmp_path / "rootfs"


def test_process_round_trips_through_its_json_form() -> None:
    process = parse_process(
        {
            "args": ["a", "b"],
            "env": ["A=1"],
            "cwd": "/w",
            "terminal": True,
            "user": {"uid": 1, "gid": 2, "additionalGids": [3], "umask": 0o77},
            "capabilities": {"bounding": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}],
            "noNewPrivileges": True,
            "oomScoreAdj": -5,
        }
    )
    assert parse_process(process_to_oci(process)) == process


def test_mount_options_become_flags_propagation_and_data() -> None:
    options = mountopts.parse(
        ["rbind", "ro", "nosuid", "rw", "noexec", "rslave", "mode=755", "x-systemd.a"], "m"
    )
    assert options.bind and options.recursive
    assert options.flags == sc.MS_NOSUID | sc.MS_NOEXEC  # "rw" undid "ro"
    assert options.propagation == (sc.MS_SLAVE | sc.MS_REC,)
    assert options.data == "mode=755"
    recursive = mountopts.parse(["rbind", "rro", "rnosuid"], "m")
    assert recursive.recursive_set == sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
    assert mountopts.parse(["rbind", "ridmap"], "m").idmap_recursive
    assert not mountopts.parse(["bind", "idmap"], "m").idmap_recursive
    for unsupported in ("tmpcopyup", "ratime"):
        with pytest.raises(ValueError, match=f"mount option '{unsupported}' is not supported"):
            mountopts.parse([unsupported], "m")
