"""Security context: namespaces, users and groups, read-only rootfs, privileged,
capabilities, masked and read-only paths, seccomp, no_new_privs, user namespaces (upstream
security_context_linux.go)."""

from __future__ import annotations

import json
import os

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq, skip
from critest.fixture import RPC_TIMEOUT, Fixture, expect_rpc_error
from critest.testimages import IMAGE_GROUP_GID, IMAGE_USER_GID, IMAGE_USER_UID

AREA = "security-context"
NODE, POD, CONTAINER = pb.NODE, pb.POD, pb.CONTAINER
CAP_CHOWN, CAP_NET_ADMIN, CAP_SYS_ADMIN = 0, 12, 21


def _ns(f: Fixture, container_id: str, kind: str) -> str:
    return f.exec_ok(container_id, ["readlink", f"/proc/self/ns/{kind}"]).strip()


def _host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def _namespaced_pod(
    f: Fixture, **modes: pb.NamespaceMode.ValueType
) -> tuple[str, pb.PodSandboxConfig]:
    config = f.pod_config()
    config.linux.security_context.namespace_options.CopyFrom(pb.NamespaceOption(**modes))  # type: ignore[arg-type]
    return f.run_pod(config), config


def _container(
    f: Fixture, pod: tuple[str, pb.PodSandboxConfig], **modes: pb.NamespaceMode.ValueType
) -> str:
    config = f.container_config()
    config.linux.security_context.namespace_options.CopyFrom(pb.NamespaceOption(**modes))  # type: ignore[arg-type]
    return f.run_container(pod[0], pod[1], config)


@case("host PID namespace", area=AREA, spec="runtime should support HostPID")
def host_pid(f: Fixture) -> None:
    pod = _namespaced_pod(f, pid=NODE)
    container_id = _container(f, pod, pid=NODE)
    expect_eq(_ns(f, container_id, "pid"), _host_ns("pid"), "pid namespace of a host-PID container")


@case(
    "pod PID namespace is shared by the pod's containers",
    area=AREA,
    spec="runtime should support PodPID",
)
def pod_pid(f: Fixture) -> None:
    pod = _namespaced_pod(f, pid=POD)
    first, second = _container(f, pod, pid=POD), _container(f, pod, pid=POD)
    expect_eq(
        _ns(f, first, "pid"), _ns(f, second, "pid"), "pid namespaces of two containers of the pod"
    )
    expect(
        _ns(f, first, "pid") != _host_ns("pid"), "a pod-PID container is in the host's namespace"
    )
    # The pod's infrastructure (or the first container) is PID 1, not the second container.
    pids = f.exec_ok(second, ["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
    expect(int(pids) >= 3, f"only {pids.strip()} processes visible in a shared PID namespace")


@case(
    "container PID namespace: the command is PID 1",
    area=AREA,
    spec="runtime should support ContainerPID",
)
def container_pid(f: Fixture) -> None:
    pod = _namespaced_pod(f, pid=CONTAINER)
    first, second = _container(f, pod, pid=CONTAINER), _container(f, pod, pid=CONTAINER)
    expect(
        _ns(f, first, "pid") != _ns(f, second, "pid"),
        "two CONTAINER-PID containers share a namespace",
    )
    cmdline = f.exec_ok(first, ["cat", "/proc/1/cmdline"])
    expect("while" in cmdline, f"PID 1 is not the container's command: {cmdline!r}")


@case("host IPC namespace", area=AREA, spec="runtime should support HostIpc is true")
def host_ipc(f: Fixture) -> None:
    container_id = _container(f, _namespaced_pod(f, ipc=NODE), ipc=NODE)
    expect_eq(_ns(f, container_id, "ipc"), _host_ns("ipc"), "ipc namespace with host IPC")


@case(
    "pod IPC namespace is not the host's", area=AREA, spec="runtime should support HostIpc is false"
)
def pod_ipc(f: Fixture) -> None:
    container_id = _container(f, _namespaced_pod(f, ipc=POD), ipc=POD)
    expect(
        _ns(f, container_id, "ipc") != _host_ns("ipc"),
        "a pod-IPC container is in the host's IPC namespace",
    )


@case("host network namespace", area=AREA, spec="runtime should support HostNetwork is true")
def host_network(f: Fixture) -> None:
    container_id = _container(f, _namespaced_pod(f, network=NODE), network=NODE)
    expect_eq(_ns(f, container_id, "net"), _host_ns("net"), "net namespace with host network")


@case(
    "pod network namespace is not the host's",
    area=AREA,
    spec="runtime should support HostNetwork is false",
)
def pod_network(f: Fixture) -> None:
    container_id = _container(f, _namespaced_pod(f, network=POD), network=POD)
    expect(
        _ns(f, container_id, "net") != _host_ns("net"),
        "a pod-network container is in the host's namespace",
    )


def _secured(f: Fixture, image: str = "", **security: object) -> str:
    """A running container with the given LinuxContainerSecurityContext fields."""
    config = f.container_config(image=image)
    config.linux.security_context.CopyFrom(pb.LinuxContainerSecurityContext(**security))  # type: ignore[arg-type]
    _, container_id = f.pod_with_container(config)
    return container_id


@case("run as user", area=AREA, spec="runtime should support RunAsUser")
def run_as_user(f: Fixture) -> None:
    container_id = _secured(f, run_as_user=pb.Int64Value(value=1001))
    expect_eq(f.exec_ok(container_id, ["id", "-u"]).strip(), "1001", "uid")


@case("run as user name", area=AREA, spec="runtime should support RunAsUserName")
def run_as_username(f: Fixture) -> None:
    container_id = _secured(f, run_as_username="www-data")
    expect_eq(f.exec_ok(container_id, ["id", "-u"]).strip(), "33", "uid of www-data")
    expect_eq(
        f.exec_ok(container_id, ["id", "-g"]).strip(), "33", "gid of www-data from /etc/passwd"
    )


@case("run as user and group", area=AREA, spec="runtime should support RunAsGroup")
def run_as_group(f: Fixture) -> None:
    container_id = _secured(
        f, run_as_user=pb.Int64Value(value=1001), run_as_group=pb.Int64Value(value=2002)
    )
    expect_eq(f.exec_ok(container_id, ["id", "-u"]).strip(), "1001", "uid")
    expect_eq(f.exec_ok(container_id, ["id", "-g"]).strip(), "2002", "gid")


@case(
    "run as group without user is refused",
    area=AREA,
    spec="runtime should return error if RunAsGroup is set without RunAsUser",
)
def run_as_group_alone(f: Fixture) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    config = f.container_config()
    config.linux.security_context.run_as_group.value = 2002
    expect_rpc_error(
        lambda: f.create_container(pod_id, pod_config, config),
        "CreateContainer with run_as_group alone",
    )


@case("supplemental groups", area=AREA, spec="runtime should support SupplementalGroups")
def supplemental_groups(f: Fixture) -> None:
    container_id = _secured(
        f, run_as_user=pb.Int64Value(value=1001), supplemental_groups=[1234, 5678]
    )
    groups = f.exec_ok(container_id, ["id", "-G"]).split()
    expect({"1234", "5678"} <= set(groups), f"supplemental groups missing from {groups}")


def _groups_policy(f: Fixture, policy: pb.SupplementalGroupsPolicy.ValueType) -> set[int]:
    """The groups of the image's user under ``policy``; the ContainerStatus.user that
    runtimes with the policy feature report must agree."""
    reported = f.runtime_status().features.supplemental_groups_policy
    if policy == pb.Strict and not reported:
        skip("the runtime does not report the supplemental_groups_policy feature")
    container_id = _secured(
        f,
        image=f.env.images.groups.ref,
        run_as_user=pb.Int64Value(value=IMAGE_USER_UID),
        supplemental_groups=[60000],
        supplemental_groups_policy=policy,
    )
    groups = {int(g) for g in f.exec_ok(container_id, ["id", "-G"]).split()}
    if reported:
        user = f.status(container_id).user.linux
        expect_eq(set(user.supplemental_groups), groups, "ContainerStatus.user groups")
    return groups


@case(
    "supplemental groups policy Merge adds the image's groups",
    area=AREA,
    spec="SupplementalGroupsPolicy=Merge",
)
def groups_merge(f: Fixture) -> None:
    # Merge is the default, so runtimes that predate the policy field behave this way too.
    groups = _groups_policy(f, pb.Merge)
    expect_eq(groups, {IMAGE_USER_GID, IMAGE_GROUP_GID, 60000}, "groups with Merge")


@case(
    "supplemental groups policy Strict ignores the image's groups",
    area=AREA,
    spec="SupplementalGroupsPolicy=Strict",
)
def groups_strict(f: Fixture) -> None:
    groups = _groups_policy(f, pb.Strict)
    expect_eq(groups, {IMAGE_USER_GID, 60000}, "groups with Strict")


@case(
    "read-only root filesystem",
    area=AREA,
    spec="runtime should support that ReadOnlyRootfs is true",
)
def readonly_rootfs(f: Fixture) -> None:
    container_id = _secured(f, readonly_rootfs=True)
    expect(
        f.exec_sync(container_id, ["touch", "/file"]).exit_code != 0, "wrote to a read-only rootfs"
    )


@case(
    "writable root filesystem",
    area=AREA,
    spec="runtime should support that ReadOnlyRootfs is false",
)
def writable_rootfs(f: Fixture) -> None:
    container_id = _secured(f, readonly_rootfs=False)
    f.exec_ok(container_id, ["touch", "/file"])


def _cap_mask(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise ValueError(f"no {field} in /proc/self/status")


def _caps(f: Fixture, container_id: str) -> int:
    return _cap_mask(f.exec_ok(container_id, ["cat", "/proc/self/status"]), "CapEff")


def _host_bounding() -> int:
    with open("/proc/self/status") as status:
        return _cap_mask(status.read(), "CapBnd")


def _privileged_container(f: Fixture, privileged: bool) -> str:
    pod_config = f.pod_config()
    pod_config.linux.security_context.privileged = privileged
    pod_id = f.run_pod(pod_config)
    config = f.container_config()
    config.linux.security_context.privileged = privileged
    return f.run_container(pod_id, pod_config, config)


@case("privileged container", area=AREA, spec="runtime should support Privileged is true")
def privileged(f: Fixture) -> None:
    container_id = _privileged_container(f, True)
    expect_eq(
        _caps(f, container_id), _host_bounding(), "effective capabilities of a privileged container"
    )
    f.shell(container_id, "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && umount /mnt/t")


@case("unprivileged container", area=AREA, spec="runtime should support Privileged is false")
def unprivileged(f: Fixture) -> None:
    container_id = _privileged_container(f, False)
    expect(
        not _caps(f, container_id) & (1 << CAP_SYS_ADMIN),
        "CAP_SYS_ADMIN in an unprivileged container",
    )
    answer = f.exec_sync(
        container_id, ["sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t"]
    )
    expect(answer.exit_code != 0, "an unprivileged container mounted a tmpfs")


def _with_caps(f: Fixture, add: list[str], drop: list[str]) -> int:
    caps = pb.Capability(add_capabilities=add, drop_capabilities=drop)
    return _caps(f, _secured(f, capabilities=caps))


@case("add a capability", area=AREA, spec="runtime should support adding capability")
def cap_add(f: Fixture) -> None:
    expect(
        _with_caps(f, ["NET_ADMIN"], []) & (1 << CAP_NET_ADMIN),
        "NET_ADMIN not effective after adding it",
    )


@case("drop a capability", area=AREA, spec="runtime should support dropping capability")
def cap_drop(f: Fixture) -> None:
    expect(
        not _with_caps(f, [], ["CHOWN"]) & (1 << CAP_CHOWN),
        "CHOWN still effective after dropping it",
    )


@case("add ALL capabilities", area=AREA, spec="runtime should support adding ALL capabilities")
def cap_add_all(f: Fixture) -> None:
    expect_eq(_with_caps(f, ["ALL"], []), _host_bounding(), "effective capabilities with ALL added")


@case("drop ALL capabilities", area=AREA, spec="runtime should support dropping ALL capabilities")
def cap_drop_all(f: Fixture) -> None:
    expect_eq(_with_caps(f, [], ["ALL"]), 0, "effective capabilities with ALL dropped")


@case("masked paths", area=AREA, spec="runtime should support MaskedPaths")
def masked_paths(f: Fixture) -> None:
    container_id = _secured(f, masked_paths=["/etc/group", "/var/www"])
    expect_eq(f.exec_ok(container_id, ["cat", "/etc/group"]), "", "content of a masked file")
    expect_eq(
        f.exec_ok(container_id, ["ls", "-A", "/var/www"]), "", "content of a masked directory"
    )


@case("read-only paths", area=AREA, spec="runtime should support ReadonlyPaths")
def readonly_paths(f: Fixture) -> None:
    container_id = _secured(f, readonly_paths=["/var/www"])
    expect(
        f.exec_sync(container_id, ["touch", "/var/www/x"]).exit_code != 0,
        "wrote into a read-only path",
    )
    f.exec_ok(container_id, ["touch", "/tmp/x"])


def _seccomp_mode(f: Fixture, container_id: str) -> str:
    status = f.exec_ok(container_id, ["cat", "/proc/self/status"])
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Seccomp:"))


@case("seccomp unconfined", area=AREA, spec="should support seccomp unconfined on the container")
def seccomp_unconfined(f: Fixture) -> None:
    profile = pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)
    expect_eq(_seccomp_mode(f, _secured(f, seccomp=profile)), "0", "Seccomp mode")


@case("seccomp runtime default", area=AREA, spec="should support seccomp default on the container")
def seccomp_default(f: Fixture) -> None:
    profile = pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    container_id = _secured(f, seccomp=profile)
    expect_eq(_seccomp_mode(f, container_id), "2", "Seccomp mode")


def _blocking_profile(f: Fixture) -> str:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
    }
    path = f.host_dir("seccomp-") / "block-hostname.json"
    path.write_text(json.dumps(profile))
    return str(path)


@case(
    "seccomp localhost profile blocks sethostname even with SYS_ADMIN",
    area=AREA,
    spec="should support seccomp localhost profile on the container",
)
def seccomp_localhost(f: Fixture) -> None:
    profile = pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref=_blocking_profile(f)
    )
    container_id = _secured(
        f, seccomp=profile, capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"])
    )
    answer = f.exec_sync(container_id, ["hostname", "critest-blocked"])
    expect(answer.exit_code != 0, "sethostname succeeded under a profile that blocks it")
    expect(b"Operation not permitted" in answer.stderr, f"unexpected error: {answer.stderr!r}")
    expect_eq(_seccomp_mode(f, container_id), "2", "Seccomp mode")


@case(
    "sethostname works with SYS_ADMIN when unconfined",
    area=AREA,
    spec="should support seccomp unconfined on the container",
)
def seccomp_control(f: Fixture) -> None:
    profile = pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)
    container_id = _secured(
        f, seccomp=profile, capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"])
    )
    f.exec_ok(container_id, ["hostname", "critest-allowed"])


@case(
    "seccomp localhost profile that does not exist is refused",
    area=AREA,
    spec="should fail with a non-existent localhost seccomp profile",
)
def seccomp_missing(f: Fixture) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    config = f.container_config()
    config.linux.security_context.seccomp.CopyFrom(
        pb.SecurityProfile(
            profile_type=pb.SecurityProfile.Localhost,
            localhost_ref=str(f.env.work_dir / "missing.json"),
        )
    )
    expect_rpc_error(
        lambda: f.create_container(pod_id, pod_config, config),
        "CreateContainer with a missing profile",
    )


def _no_new_privs(f: Fixture, on: bool) -> str:
    container_id = _secured(f, no_new_privs=on, run_as_user=pb.Int64Value(value=1000))
    status = f.exec_ok(container_id, ["cat", "/proc/self/status"])
    return next(line.split()[1] for line in status.splitlines() if line.startswith("NoNewPrivs:"))


@case("no_new_privs set", area=AREA, spec="should not allow privilege escalation when true")
def no_new_privs_on(f: Fixture) -> None:
    expect_eq(_no_new_privs(f, True), "1", "NoNewPrivs")


@case("no_new_privs unset", area=AREA, spec="should allow privilege escalation when false")
def no_new_privs_off(f: Fixture) -> None:
    expect_eq(_no_new_privs(f, False), "0", "NoNewPrivs")


# Upstream's mapping for the user namespace cases: root of the pod is host uid/gid 1000.
_USERNS_MAPPING = pb.IDMapping(container_id=0, host_id=1000, length=100000)


def _needs_user_namespaces(f: Fixture) -> None:
    features = f.handler_features()
    if features is None or not features.user_namespaces:
        skip("the runtime does not report user_namespaces for its handler")


def _userns_pod(f: Fixture, userns: pb.UserNamespace) -> tuple[str, pb.PodSandboxConfig]:
    config = f.pod_config()
    config.linux.security_context.namespace_options.userns_options.CopyFrom(userns)
    return f.run_pod(config), config


def _userns_container(f: Fixture, pod: tuple[str, pb.PodSandboxConfig]) -> str:
    """A container with its pod's namespace options, as kubelet makes them."""
    container = f.container_config()
    container.linux.security_context.namespace_options.CopyFrom(
        pod[1].linux.security_context.namespace_options
    )
    return f.run_container(pod[0], pod[1], container)


def _id_map(f: Fixture, container_id: str, name: str) -> list[list[str]]:
    text = f.exec_ok(container_id, ["cat", f"/proc/self/{name}"])
    return [line.split() for line in text.splitlines() if line.strip()]


def _pod_refused(f: Fixture, userns: pb.UserNamespace, what: str) -> None:
    config = f.pod_config()
    config.linux.security_context.namespace_options.userns_options.CopyFrom(userns)

    def run() -> None:
        response = f.rt.RunPodSandbox(
            pb.RunPodSandboxRequest(config=config, runtime_handler=f.env.runtime_handler),
            timeout=RPC_TIMEOUT,
        )
        f.defer("remove the pod", lambda: f.remove_pod(response.pod_sandbox_id))

    expect_rpc_error(run, f"RunPodSandbox with {what}")


@case(
    "user namespace of the pod maps root to an unprivileged host id",
    area=AREA,
    spec="runtime should support NamespaceMode_POD",
)
def user_namespace(f: Fixture) -> None:
    _needs_user_namespaces(f)
    userns = pb.UserNamespace(mode=POD, uids=[_USERNS_MAPPING], gids=[_USERNS_MAPPING])
    pod = _userns_pod(f, userns)
    container_id = _userns_container(f, pod)
    expected = [["0", "1000", "100000"]]
    expect_eq(_id_map(f, container_id, "uid_map"), expected, "/proc/self/uid_map")
    expect_eq(_id_map(f, container_id, "gid_map"), expected, "/proc/self/gid_map")
    expect(
        _ns(f, container_id, "user") != _host_ns("user"),
        "the container is in the host's user namespace",
    )
    expect_eq(f.pod_status(pod[0]).id, pod[0], "PodSandboxStatus of a user-namespaced pod")


@case(
    "user namespace of the node: the container sees the host's id maps",
    area=AREA,
    spec="runtime should support NamespaceMode_NODE",
)
def user_namespace_node(f: Fixture) -> None:
    _needs_user_namespaces(f)
    container_id = _userns_container(f, _userns_pod(f, pb.UserNamespace(mode=NODE)))
    with open("/proc/self/uid_map") as host_map:
        expected = [line.split() for line in host_map if line.strip()]
    expect_eq(_id_map(f, container_id, "uid_map"), expected, "/proc/self/uid_map")
    expect_eq(_ns(f, container_id, "user"), _host_ns("user"), "user namespace")


@case(
    "user namespace with more than one mapping is refused",
    area=AREA,
    spec="runtime should fail if more than one mapping provided",
)
def user_namespace_many_mappings(f: Fixture) -> None:
    _needs_user_namespaces(f)
    mappings = [_USERNS_MAPPING, pb.IDMapping(container_id=0, host_id=2000, length=100000)]
    userns = pb.UserNamespace(mode=POD, uids=mappings, gids=mappings)
    _pod_refused(f, userns, "two uid and two gid mappings")


@case(
    "user namespace that leaves root unmapped is refused",
    area=AREA,
    spec="runtime should fail if container ID 0 is not mapped",
)
def user_namespace_unmapped_root(f: Fixture) -> None:
    _needs_user_namespaces(f)
    mapping = pb.IDMapping(container_id=1, host_id=1000, length=100000)
    _pod_refused(f, pb.UserNamespace(mode=POD, uids=[mapping], gids=[mapping]), "root unmapped")


@case(
    "user namespace mode CONTAINER is refused for a pod",
    area=AREA,
    spec="runtime should fail with NamespaceMode_CONTAINER",
)
def user_namespace_container_mode(f: Fixture) -> None:
    _needs_user_namespaces(f)
    _pod_refused(f, pb.UserNamespace(mode=CONTAINER), "user namespace mode CONTAINER")


@case(
    "user namespace mode TARGET is refused for a pod",
    area=AREA,
    spec="runtime should fail with NamespaceMode_TARGET",
)
def user_namespace_target_mode(f: Fixture) -> None:
    _needs_user_namespaces(f)
    _pod_refused(f, pb.UserNamespace(mode=pb.TARGET), "user namespace mode TARGET")
