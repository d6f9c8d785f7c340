"""CRI container request → OCI spec, a test per field."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.capabilities import CAPABILITIES, last_cap
from runtime.spec import IdMapping
from runtime.syscalls import capget
from sandbox.container_config import (
    ContainerRequest,
    DeviceRequest,
    HugepageLimit,
    MountRequest,
    NamespaceMode,
    NamespaceOptions,
    Propagation,
    Resources,
    SecurityContext,
    SecurityProfile,
)
from sandbox.container_user import ProcessUser
from sandbox.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from sandbox.oci_spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ImageFacts,
    PodContext,
    build_spec,
    stop_signal,
)

POD = PodContext(
    pod_id="pod1",
    hostname="web-0",
    network_ns="/run/crisp/pods/pod1/ns/net",
    ipc_ns="/run/crisp/pods/pod1/ns/ipc",
    uts_ns="/run/crisp/pods/pod1/ns/uts",
    pid_ns="/proc/4242/ns/pid",
    hostname_file="/run/crisp/pods/pod1/hostname",
    hosts_file="/run/crisp/pods/pod1/hosts",
    resolv_conf_file="/run/crisp/pods/pod1/resolv.conf",
    shm_path="/run/crisp/pods/pod1/shm",
    cgroup_parent="/kubepods/pod1",
)
IMAGE = ImageFacts(
    name="docker.io/library/busybox:latest",
    env=("PATH=/bin", "FROM_IMAGE=1", "SHARED=image"),
    entrypoint=("/entry",),
    cmd=("serve", "--port=80"),
    working_dir="/srv",
)
ROOT = ProcessUser(0, 0, (0,))


def spec(request: ContainerRequest | None = None, **kwargs: Any) -> dict[str, Any]:
    return build_spec(
        container_id="c1",
        request=request or ContainerRequest(name="app"),
        image=kwargs.pop("image", IMAGE),
        pod=kwargs.pop("pod", POD),
        user=kwargs.pop("user", ROOT),
        **kwargs,
    )


def security(**kwargs: Any) -> ContainerRequest:
    return ContainerRequest(name="app", security=SecurityContext(**kwargs))


# --- process ---


def test_args_default_to_image_entrypoint_and_cmd() -> None:
    assert spec()["process"]["args"] == ["/entry", "serve", "--port=80"]


def test_command_replaces_entrypoint_and_cmd() -> None:
    request = ContainerRequest(name="app", command=("/bin/sh", "-c"), args=("echo hi",))
    assert spec(request)["process"]["args"] == ["/bin/sh", "-c", "echo hi"]


def test_args_alone_replace_only_cmd() -> None:
    request = ContainerRequest(name="app", args=("--verbose",))
    assert spec(request)["process"]["args"] == ["/entry", "--verbose"]


def test_no_command_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        spec(image=ImageFacts())


def test_env_image_first_then_config_overrides() -> None:
    request = ContainerRequest(name="app", envs=(("SHARED", "config"), ("NEW", "x=y")))
    env = spec(request)["process"]["env"]
    assert env.index("FROM_IMAGE=1") < env.index("NEW=x=y")
    assert "SHARED=config" in env and "SHARED=image" not in env
    assert "PATH=/bin" in env
    assert "HOSTNAME=web-0" in env


def test_env_gets_default_path_and_term_with_tty() -> None:
    request = ContainerRequest(name="app", tty=True)
    env = spec(request, image=ImageFacts(cmd=("sh",)))["process"]["env"]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in env)
    assert "TERM=xterm" in env
    assert spec(request)["process"]["terminal"] is True


def test_working_dir_from_config_then_image_then_root() -> None:
    assert spec()["process"]["cwd"] == "/srv"
    assert spec(ContainerRequest(name="a", working_dir="/work"))["process"]["cwd"] == "/work"
    assert spec(image=ImageFacts(cmd=("sh",)))["process"]["cwd"] == "/"
    with pytest.raises(InvalidArgument, match="working_dir"):
        spec(ContainerRequest(name="a", working_dir="relative"))


def test_user_is_passed_through() -> None:
    user = spec(user=ProcessUser(1000, 100, (100, 5)))["process"]["user"]
    assert user == {"uid": 1000, "gid": 100, "additionalGids": [100, 5]}


def test_oom_score_adj_from_resources() -> None:
    request = ContainerRequest(name="a", resources=Resources(oom_score_adj=500))
    assert spec(request)["process"]["oomScoreAdj"] == 500
    assert "oomScoreAdj" not in spec()["process"]


def test_no_new_privs() -> None:
    assert spec(security(no_new_privs=True))["process"]["noNewPrivileges"] is True
    assert spec()["process"]["noNewPrivileges"] is False


# --- capabilities ---


def caps(request: ContainerRequest) -> dict[str, list[str]]:
    result: dict[str, list[str]] = spec(request)["process"]["capabilities"]
    return result


def test_default_capabilities() -> None:
    assert caps(ContainerRequest(name="a"))["effective"] == list(DEFAULT_CAPABILITIES)
    assert caps(ContainerRequest(name="a"))["inheritable"] == []


def test_capability_add_and_drop_accept_names_without_prefix() -> None:
    got = caps(security(add_capabilities=("sys_admin",), drop_capabilities=("CAP_CHOWN", "kill")))
    assert "CAP_SYS_ADMIN" in got["bounding"]
    assert "CAP_CHOWN" not in got["bounding"] and "CAP_KILL" not in got["permitted"]


def test_drop_all_then_add_one() -> None:
    got = caps(security(drop_capabilities=("ALL",), add_capabilities=("NET_ADMIN",)))
    assert got["effective"] == ["CAP_NET_ADMIN"]


def _held_capabilities() -> int:
    """ALL means every capability the daemon holds (fewer when it runs in a container)."""
    return bin(capget()[0] & ((1 << (last_cap() + 1)) - 1)).count("1")


def test_add_all() -> None:
    got = caps(security(add_capabilities=("ALL",)))
    assert len(got["bounding"]) == _held_capabilities()


def test_unknown_capability_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="CAP_FLY"):
        spec(security(add_capabilities=("FLY",)))


def test_ambient_capabilities_must_be_in_the_set() -> None:
    got = caps(security(add_ambient_capabilities=("NET_BIND_SERVICE",)))
    assert got["ambient"] == ["CAP_NET_BIND_SERVICE"] == got["inheritable"]
    with pytest.raises(InvalidArgument, match="ambient capability CAP_SYS_ADMIN"):
        spec(security(add_ambient_capabilities=("SYS_ADMIN",)))


def test_privileged_gets_all_capabilities_devices_no_masks_and_rw_sysfs() -> None:
    result = spec(security(privileged=True, seccomp=SecurityProfile("runtime-default")))
    assert len(result["process"]["capabilities"]["bounding"]) == _held_capabilities()
    linux = result["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert "seccomp" not in linux
    assert linux["resources"]["devices"][0] == {"allow": True, "access": "rwm"}
    assert any(d["path"] == "/dev/null" for d in linux["devices"])
    sysfs = next(m for m in result["mounts"] if m["destination"] == "/sys")
    assert "rw" in sysfs["options"]


# --- root, hostname, annotations ---


def test_readonly_rootfs() -> None:
    assert spec(security(readonly_rootfs=True))["root"] == {"path": "rootfs", "readonly": True}
    assert spec()["root"]["readonly"] is False


def test_hostname_from_pod() -> None:
    assert spec()["hostname"] == "web-0"


def test_annotations_kept_and_identify_the_container() -> None:
    request = ContainerRequest(name="app", annotations={"team": "a"})
    annotations = spec(request)["annotations"]
    assert annotations["team"] == "a"
    assert annotations["io.kubernetes.cri.sandbox-id"] == "pod1"
    assert annotations["io.kubernetes.cri.container-name"] == "app"


# --- mounts ---


def destinations(result: dict[str, Any]) -> list[str]:
    return [m["destination"] for m in result["mounts"]]


def test_standard_mounts_and_pod_files() -> None:
    result = spec()
    for path in ("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
                 "/dev/shm", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):  # fmt: skip
        assert path in destinations(result)
    shm = next(m for m in result["mounts"] if m["destination"] == "/dev/shm")
    assert shm["source"] == POD.shm_path
    resolv = next(m for m in result["mounts"] if m["destination"] == "/etc/resolv.conf")
    assert resolv["source"] == POD.resolv_conf_file


def test_user_mount_readonly_and_sorted_parents_first(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    request = ContainerRequest(
        name="app",
        mounts=(
            MountRequest("/data/inner", str(tmp_path / "b")),
            MountRequest("/data", str(tmp_path / "a"), readonly=True),
        ),
    )
    mounts = spec(request)["mounts"]
    order = [m["destination"] for m in mounts]
    assert order.index("/data") < order.index("/data/inner")
    data = mounts[order.index("/data")]
    assert data["type"] == "bind" and data["source"] == str(tmp_path / "a")
    assert "ro" in data["options"] and "rprivate" in data["options"]


def test_user_mount_host_path_must_exist(tmp_path: Path) -> None:
    request = ContainerRequest(name="a", mounts=(MountRequest("/x", str(tmp_path / "nope")),))
    with pytest.raises(NotFound, match="does not exist"):
        spec(request)


def test_user_mount_symlinked_host_path_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    request = ContainerRequest(name="a", mounts=(MountRequest("/x", str(tmp_path / "link")),))
    mount = next(m for m in spec(request)["mounts"] if m["destination"] == "/x")
    assert mount["source"] == str(tmp_path / "real")


def test_user_mount_path_with_dotdot_is_invalid(tmp_path: Path) -> None:
    request = ContainerRequest(name="a", mounts=(MountRequest("/x/../etc", str(tmp_path)),))
    with pytest.raises(InvalidArgument, match=r"must not contain '\.\.'"):
        spec(request)


def test_user_mount_of_etc_hosts_replaces_the_pod_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    request = ContainerRequest(name="a", mounts=(MountRequest("/etc/hosts", str(hosts)),))
    mounts = [m for m in spec(request)["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in mounts] == [str(hosts)]


def test_recursive_read_only_needs_readonly_and_private(tmp_path: Path) -> None:
    good = ContainerRequest(
        name="a",
        mounts=(MountRequest("/x", str(tmp_path), readonly=True, recursive_read_only=True),),
    )
    mount = next(m for m in spec(good)["mounts"] if m["destination"] == "/x")
    assert "rro" in mount["options"]
    not_ro = ContainerRequest(
        name="a", mounts=(MountRequest("/x", str(tmp_path), recursive_read_only=True),)
    )
    with pytest.raises(InvalidArgument, match="requires readonly"):
        spec(not_ro)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Any:
    target = tmp_path / "shared"
    target.mkdir()
    subprocess.run(["mount", "--bind", str(target), str(target)], check=True)
    subprocess.run(["mount", "--make-shared", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_propagation_options_and_rootfs_propagation(shared_dir: Path, tmp_path: Path) -> None:
    request = ContainerRequest(
        name="a",
        mounts=(MountRequest("/b", str(shared_dir), propagation=Propagation.BIDIRECTIONAL),),
    )
    result = spec(request)
    mount = next(m for m in result["mounts"] if m["destination"] == "/b")
    assert "rshared" in mount["options"]
    assert result["linux"]["rootfsPropagation"] == "rshared"
    slave = ContainerRequest(
        name="a",
        mounts=(MountRequest("/s", str(shared_dir), propagation=Propagation.HOST_TO_CONTAINER),),
    )
    assert spec(slave)["linux"]["rootfsPropagation"] == "rslave"


def test_bidirectional_on_a_private_mount_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    subprocess.run(["mount", "--bind", str(private), str(private)], check=True)
    try:
        subprocess.run(["mount", "--make-private", str(private)], check=True)
        request = ContainerRequest(
            name="a",
            mounts=(MountRequest("/b", str(private), propagation=Propagation.BIDIRECTIONAL),),
        )
        with pytest.raises(FailedPrecondition, match="shared mount"):
            spec(request)
    finally:
        subprocess.run(["umount", str(private)], check=True)


def test_host_ipc_binds_the_host_dev_shm() -> None:
    request = security(namespaces=NamespaceOptions(ipc=NamespaceMode.NODE))
    shm = next(m for m in spec(request)["mounts"] if m["destination"] == "/dev/shm")
    assert shm["source"] == "/dev/shm"


# --- devices ---


def test_device_node_and_cgroup_rule() -> None:
    request = ContainerRequest(name="a", devices=(DeviceRequest("/dev/mynull", "/dev/null", "rw"),))
    linux = spec(request)["linux"]
    node = next(d for d in linux["devices"] if d["path"] == "/dev/mynull")
    assert (node["type"], node["major"], node["minor"]) == ("c", 1, 3)
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in linux[
        "resources"
    ]["devices"]


def test_device_errors() -> None:
    with pytest.raises(NotFound, match="does not exist"):
        spec(ContainerRequest(name="a", devices=(DeviceRequest("/dev/x", "/dev/nope"),)))
    with pytest.raises(InvalidArgument, match="not a device node"):
        spec(ContainerRequest(name="a", devices=(DeviceRequest("/dev/x", "/etc/hostname"),)))
    with pytest.raises(InvalidArgument, match="permissions"):
        spec(ContainerRequest(name="a", devices=(DeviceRequest("/dev/x", "/dev/null", "rx"),)))


def test_default_device_rules_deny_then_allow_basics() -> None:
    rules = spec()["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules


# --- namespaces ---


def namespaces(request: ContainerRequest, **kwargs: Any) -> dict[str, str | None]:
    return {ns["type"]: ns.get("path") for ns in spec(request, **kwargs)["linux"]["namespaces"]}


def test_pod_namespaces_joined_and_new_mount_and_pid() -> None:
    got = namespaces(ContainerRequest(name="a"))
    assert got == {
        "mount": None,
        "network": POD.network_ns,
        "ipc": POD.ipc_ns,
        "uts": POD.uts_ns,
        "pid": None,
    }


def test_pod_pid_namespace() -> None:
    got = namespaces(security(namespaces=NamespaceOptions(pid=NamespaceMode.POD)))
    assert got["pid"] == POD.pid_ns


def test_host_pid_network_ipc() -> None:
    request = security(
        namespaces=NamespaceOptions(
            pid=NamespaceMode.NODE, network=NamespaceMode.NODE, ipc=NamespaceMode.NODE
        )
    )
    assert set(namespaces(request)) == {"mount", "uts"}


def test_target_pid_namespace() -> None:
    request = security(namespaces=NamespaceOptions(pid=NamespaceMode.TARGET, target_id="c0"))
    assert namespaces(request, target_pid_ns="/proc/77/ns/pid")["pid"] == "/proc/77/ns/pid"
    with pytest.raises(NotFound, match="target container 'c0'"):
        spec(request)


def test_host_network_pod_shares_the_host_uts() -> None:
    pod = PodContext(**{**POD.__dict__, "network_ns": None, "host_network": True})
    got = namespaces(ContainerRequest(name="a"), pod=pod)
    assert "network" not in got and "uts" not in got


def test_pod_user_namespace_joined_with_its_maps_and_idmapped_binds(tmp_path: Path) -> None:
    ids = (IdMapping(0, 200000, 65536),)
    pod = PodContext(
        **{**POD.__dict__, "user_ns": "/run/p/ns/user", "uid_mappings": ids, "gid_mappings": ids}
    )
    request = ContainerRequest(
        name="a", mounts=(MountRequest(container_path="/data", host_path=str(tmp_path)),)
    )
    result = spec(request, pod=pod)
    assert namespaces(request, pod=pod)["user"] == "/run/p/ns/user"
    oci_ids = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert result["linux"]["uidMappings"] == result["linux"]["gidMappings"] == oci_ids
    binds = [m for m in result["mounts"] if m["type"] == "bind"]
    assert {m["destination"] for m in binds} == {
        "/dev/shm", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/data"
    }  # fmt: skip
    for mount in binds:
        assert "ridmap" in mount["options"], mount
        assert mount["uidMappings"] == mount["gidMappings"] == oci_ids
    assert "user" not in namespaces(request) and "uidMappings" not in spec(request)["linux"]


# --- resources and cgroups ---


def test_resources() -> None:
    request = ContainerRequest(
        name="a",
        resources=Resources(
            cpu_period=100000,
            cpu_quota=50000,
            cpu_shares=512,
            memory_limit=64 << 20,
            memory_swap_limit=128 << 20,
            cpuset_cpus="0",
            cpuset_mems="0",
            hugepage_limits=(HugepageLimit("2MB", 0),),
            unified={"memory.high": "1000000"},
        ),
    )
    resources = spec(request)["linux"]["resources"]
    assert resources["cpu"] == {
        "shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"
    }  # fmt: skip
    assert resources["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert resources["hugepageLimits"] == [{"pageSize": "2MB", "limit": 0}]
    assert resources["unified"] == {"memory.high": "1000000"}


def test_cgroups_path_under_the_pod_parent() -> None:
    assert spec()["linux"]["cgroupsPath"] == "/kubepods/pod1/crisp-c1"


# --- masked and readonly paths ---


def test_default_masked_and_readonly_paths() -> None:
    linux = spec()["linux"]
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)


def test_masked_and_readonly_paths_overridden() -> None:
    linux = spec(security(masked_paths=("/proc/x",), readonly_paths=("/proc/y",)))["linux"]
    assert linux["maskedPaths"] == ["/proc/x"]
    assert linux["readonlyPaths"] == ["/proc/y"]


# --- seccomp and apparmor ---


def test_seccomp_unset_or_unconfined_means_none() -> None:
    assert "seccomp" not in spec()["linux"]
    assert "seccomp" not in spec(security(seccomp=SecurityProfile("unconfined")))["linux"]


def test_seccomp_runtime_default() -> None:
    profile = spec(security(seccomp=SecurityProfile("runtime-default")))["linux"]["seccomp"]
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"


def test_seccomp_localhost(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}))
    request = security(seccomp=SecurityProfile("localhost", str(path)))
    assert spec(request)["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    with pytest.raises(NotFound, match="does not exist"):
        spec(security(seccomp=SecurityProfile("localhost", str(tmp_path / "nope.json"))))
    path.write_text("{not json")
    with pytest.raises(InvalidArgument, match=str(path)):
        spec(request)


def test_apparmor_localhost_is_unimplemented_here() -> None:
    request = security(apparmor=SecurityProfile("localhost", "my-profile"))
    with pytest.raises(Unimplemented, match="apparmor"):
        spec(request)
    assert spec(security(apparmor=SecurityProfile("runtime-default")))  # ignored without AppArmor


# --- stop signal ---


def test_stop_signal_config_then_image_then_sigterm() -> None:
    assert stop_signal(ContainerRequest(name="a", stop_signal="SIGINT"), IMAGE) == "SIGINT"
    assert stop_signal(ContainerRequest(name="a"), ImageFacts(stop_signal="quit")) == "SIGQUIT"
    assert stop_signal(ContainerRequest(name="a"), IMAGE) == "SIGTERM"


def test_every_default_capability_is_known() -> None:
    assert set(DEFAULT_CAPABILITIES) <= set(CAPABILITIES)
    assert os.path.exists("/proc/self/status")
