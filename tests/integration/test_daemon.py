"""The daemon foundation against a real crisp process on temporary paths."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from tests.crisp_daemon import (
    DaemonPaths,
    RunningDaemon,
    assert_nothing_left,
    crisp_command,
    start_daemon,
    write_config,
)


def test_version(crisp: RunningDaemon) -> None:
    answer = crisp.runtime.Version(pb.VersionRequest(version="v1"))
    assert answer.version == "0.1.0"
    assert answer.runtime_name == "crisp"
    assert answer.runtime_version == "0.1.0"
    assert answer.runtime_api_version == "v1"


def test_status_conditions_handlers_and_verbose_info(crisp: RunningDaemon) -> None:
    answer = crisp.runtime.Status(pb.StatusRequest(verbose=True))
    conditions = {c.type: c for c in answer.status.conditions}
    assert conditions["RuntimeReady"].status is True
    network = conditions["NetworkReady"]
    if not network.status:
        assert network.reason and network.message
    names = [h.name for h in answer.runtime_handlers]
    assert names == ["", "crisp"]
    config = json.loads(answer.info["config"])
    assert config["root_dir"] == str(crisp.paths.root)
    assert json.loads(answer.info["endpoints"])["socket"] == str(crisp.paths.socket)
    assert crisp.runtime.Status(pb.StatusRequest()).info == {}


def test_runtime_config_reports_cgroup_driver(crisp: RunningDaemon) -> None:
    answer = crisp.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert answer.linux.cgroup_driver == pb.CGROUPFS


def test_update_runtime_config_stores_pod_cidr_across_restarts(daemon_paths: DaemonPaths) -> None:
    daemon = start_daemon(daemon_paths)
    try:
        request = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(
                network_config=pb.NetworkConfig(pod_cidr="10.244.0.0/24,fd00:10:244::/64")
            )
        )
        daemon.runtime.UpdateRuntimeConfig(request)
        bad = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.0.0/99"))
        )
        with pytest.raises(grpc.RpcError) as err:
            daemon.runtime.UpdateRuntimeConfig(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "10.0.0/99" in (err.value.details() or "")
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(daemon_paths)
    try:
        info = daemon.runtime.Status(pb.StatusRequest(verbose=True)).info
        assert json.loads(info["podCIDR"]) == "10.244.0.0/24,fd00:10:244::/64"
    finally:
        assert daemon.stop() == 0
    assert_nothing_left(daemon)


@pytest.mark.parametrize("service_name", ["RuntimeService", "ImageService"])
def test_every_rpc_answers_an_empty_request_clearly(
    crisp: RunningDaemon, service_name: str
) -> None:
    """An empty request is bad input for most RPCs: each must say so (or that it is not
    implemented, naming itself), never fail with INTERNAL or the generic gRPC message."""
    service = pb.DESCRIPTOR.services_by_name[service_name]
    for method in service.methods:
        path = f"/runtime.v1.{service_name}/{method.name}"
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        try:
            if method.server_streaming:
                call = crisp.channel.unary_stream(
                    path,
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString,
                )
                list(call(request_class(), timeout=10))
            else:
                unary = crisp.channel.unary_unary(
                    path,
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString,
                )
                unary(request_class(), timeout=10)
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
            assert code != grpc.StatusCode.INTERNAL, f"{method.name}: {details}"
            assert details and "Method not implemented" not in details, method.name
            if code == grpc.StatusCode.UNIMPLEMENTED:
                assert f"{service_name}/{method.name}" in details, method.name


def test_health_service_reports_serving(crisp: RunningDaemon) -> None:
    health = health_pb2_grpc.HealthStub(crisp.channel)
    for service in ("", "runtime.v1.RuntimeService", "runtime.v1.ImageService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_socket_is_a_socket_with_mode_0660(crisp: RunningDaemon) -> None:
    mode = os.stat(crisp.paths.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


def _metric(address: str, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_operations_errors_and_latency(crisp: RunningDaemon) -> None:
    address = crisp.metrics_address
    before = _metric(address, "crisp_operations_total", 'operation="Version"')
    for _ in range(3):
        crisp.runtime.Version(pb.VersionRequest())
    assert _metric(address, "crisp_operations_total", 'operation="Version"') == before + 3
    assert _metric(address, "crisp_operations_latency_seconds_count", 'operation="Version"') >= 3
    with pytest.raises(grpc.RpcError):
        crisp.image.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="Bad Name")))
    errors = _metric(
        address, "crisp_operations_errors_total", 'code="INVALID_ARGUMENT",operation="ImageStatus"'
    )
    assert errors == 1
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        assert "process_resident_memory_bytes" in response.read().decode()


def test_large_messages_up_to_the_configured_limit(crisp: RunningDaemon) -> None:
    # gRPC's own default would refuse anything over 4 MiB.
    request = pb.VersionRequest(version="x" * (12 * 1024 * 1024))
    assert crisp.runtime.Version(request, timeout=10).runtime_name == "crisp"
    too_big = pb.VersionRequest(version="x" * (17 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as err:
        crisp.runtime.Version(too_big, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_second_daemon_on_the_same_socket_refuses(crisp: RunningDaemon, tmp_path: Path) -> None:
    other = DaemonPaths(tmp_path / "other")
    write_config(other)
    result = subprocess.run(
        crisp_command("serve", *other.flags(), "--socket", str(crisp.paths.socket)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "in use by another crisp" in result.stderr
    assert str(crisp.paths.socket) in result.stderr
    # the running daemon is untouched
    assert crisp.runtime.Version(pb.VersionRequest()).runtime_name == "crisp"


def test_sigkill_then_restart_reuses_stale_socket_and_database(daemon_paths: DaemonPaths) -> None:
    daemon = start_daemon(daemon_paths)
    daemon.runtime.UpdateRuntimeConfig(
        pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.1.0.0/16"))
        )
    )
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert daemon_paths.socket.exists(), "SIGKILL cannot remove the socket; the test needs it stale"
    restarted = start_daemon(daemon_paths)
    try:
        info = restarted.runtime.Status(pb.StatusRequest(verbose=True)).info
        assert json.loads(info["podCIDR"]) == "10.1.0.0/16"
    finally:
        assert restarted.stop() == 0
    assert_nothing_left(restarted)


def test_sigint_stops_cleanly(daemon_paths: DaemonPaths) -> None:
    daemon = start_daemon(daemon_paths)
    assert daemon.stop(signal.SIGINT) == 0
    assert_nothing_left(daemon)


def test_image_socket_serves_only_the_image_service(daemon_paths: DaemonPaths) -> None:
    image_socket = daemon_paths.run / "image.sock"
    daemon = start_daemon(daemon_paths, ["--image-socket", str(image_socket)])
    try:
        with grpc.insecure_channel(f"unix://{image_socket}") as channel:
            info = pb_grpc.ImageServiceStub(channel).ImageFsInfo(pb.ImageFsInfoRequest(), timeout=5)
            assert info.image_filesystems
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stat.S_IMODE(os.stat(image_socket).st_mode) == 0o660
    finally:
        assert daemon.stop() == 0
    assert not image_socket.exists()
    assert_nothing_left(daemon)


# --- start-up failures: fast, one line, nothing left ---


def _fail_to_start(paths: DaemonPaths, *extra: str) -> str:
    result = subprocess.run(
        crisp_command("serve", *paths.flags(), *extra),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crisp: ")
    return lines[0]


def test_unknown_key_fails_start_naming_file_and_key(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths, "[grpc]\nmax_msg = 5\n")
    line = _fail_to_start(daemon_paths)
    assert str(daemon_paths.config_file) in line and "unknown key 'grpc.max_msg'" in line


def test_wrong_type_in_drop_in_fails_start(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths)
    (daemon_paths.config_dir / "10-bad.toml").write_text('[runtime]\ndrop_infra = "yes"\n')
    line = _fail_to_start(daemon_paths)
    assert "10-bad.toml" in line and "'runtime.drop_infra'" in line and "expected boolean" in line


def test_wrong_flag_value_fails_start(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths)
    line = _fail_to_start(daemon_paths, "--set", "grpc.socket_mode=true")
    assert "flag --set grpc.socket_mode=true" in line and "expected integer" in line


def test_unwritable_root_dir_fails_start(daemon_paths: DaemonPaths, tmp_path: Path) -> None:
    write_config(daemon_paths)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        line = _fail_to_start(daemon_paths, "--root", str(readonly))
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert f"root_dir {readonly} is not a writable directory" in line
    assert "Read-only file system" in line
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    line = _fail_to_start(daemon_paths, "--root", str(not_a_dir / "root"))
    assert "root_dir" in line and "Not a directory" in line


def test_socket_in_missing_directory_fails_start(daemon_paths: DaemonPaths, tmp_path: Path) -> None:
    write_config(daemon_paths)
    missing = tmp_path / "no-such-dir" / "crisp.sock"
    line = _fail_to_start(daemon_paths, "--socket", str(missing))
    assert f"directory {missing.parent} does not exist" in line
    assert not missing.parent.exists()


def test_regular_file_at_socket_path_is_not_replaced(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths)
    daemon_paths.run.mkdir(parents=True)
    daemon_paths.socket.write_text("precious")
    line = _fail_to_start(daemon_paths)
    assert "not a socket" in line
    assert daemon_paths.socket.read_text() == "precious"


def test_socket_held_by_a_foreign_listener_is_not_replaced(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths)
    daemon_paths.run.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(daemon_paths.socket))
        listener.listen(1)
        line = _fail_to_start(daemon_paths)
        assert "served by another process" in line
    finally:
        listener.close()
        daemon_paths.socket.unlink()


def _network_condition(daemon: RunningDaemon) -> pb.RuntimeCondition:
    conditions = daemon.runtime.Status(pb.StatusRequest()).status.conditions
    return next(c for c in conditions if c.type == "NetworkReady")


def test_network_ready_follows_the_cni_conf_dir(crisp: RunningDaemon) -> None:
    conf_dir = crisp.paths.base / "net.d"
    network = _network_condition(crisp)
    assert network.status is False
    assert network.reason == "NetworkPluginNotReady"
    assert str(conf_dir) in network.message
    conf_dir.mkdir()
    (conf_dir / "10-test.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "crisp-status-test",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "crtest0",
                        "ipam": {"type": "host-local", "subnet": "10.199.250.0/24"},
                    }
                ],
            }
        )
    )
    network = _network_condition(crisp)
    assert network.status is True, network.message
    (conf_dir / "10-test.conflist").write_text('{"cniVersion": "1.0.0", "name": "x"}')
    network = _network_condition(crisp)
    assert network.status is False and "10-test.conflist" in network.message


def test_default_network_is_written_into_an_empty_conf_dir(daemon_paths: DaemonPaths) -> None:
    conf_dir = daemon_paths.base / "net.d"
    daemon = start_daemon(daemon_paths, ["--set", "cni.write_default_network=true"])
    try:
        written = conf_dir / "10-crisp-bridge.conflist"
        network = json.loads(written.read_text())
        assert network["name"] == "crisp"
        assert [p["type"] for p in network["plugins"]] == [
            "bridge",
            "portmap",
            "firewall",
            "tuning",
        ]
        assert _network_condition(daemon).status is True
    finally:
        assert daemon.stop() == 0
    # An operator's own network is never touched, and nothing is added beside it.
    written.unlink()
    (conf_dir / "50-mine.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "bridge"}]})
    )
    daemon = start_daemon(daemon_paths, ["--set", "cni.write_default_network=true"])
    try:
        assert sorted(p.name for p in conf_dir.iterdir()) == ["50-mine.conflist"]
    finally:
        assert daemon.stop() == 0
    assert_nothing_left(daemon)


def test_default_network_switched_off_writes_nothing(crisp: RunningDaemon) -> None:
    assert not (crisp.paths.base / "net.d").exists()
