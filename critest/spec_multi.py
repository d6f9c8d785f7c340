"""Several containers in one pod share its network and keep their own logs and execs
(upstream multi_container_linux.go)."""

from __future__ import annotations

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import Fixture
from critest.logformat import messages, read_log

AREA = "multi-container"
SPEC = "should support network, logs, exec for multiple containers in a pod"
PORT = 8080
SERVER_SCRIPT = (
    "mkdir -p /www && echo served > /www/index.html && echo server-up && "
    f"exec httpd -f -p {PORT} -h /www"
)


@case("containers of a pod share the network, keep their logs and execs", area=AREA, spec=SPEC)
def multi(f: Fixture) -> None:
    log_dir = f.host_dir("multi-logs-")
    pod_config = f.pod_config(log_directory=str(log_dir))
    pod_id = f.run_pod(pod_config)
    server = f.container_config(
        "server-",
        command=["sh", "-c", SERVER_SCRIPT],
        log_path="server.log",
    )
    client = f.container_config(
        "client-",
        command=["sh", "-c", "echo client-up; while :; do sleep 1; done"],
        log_path="client.log",
    )
    server_id = f.run_container(pod_id, pod_config, server)
    client_id = f.run_container(pod_id, pod_config, client)
    fetched = f.wait_for(
        lambda: (
            f.exec_sync(client_id, ["wget", "-qO-", f"http://127.0.0.1:{PORT}/"]).stdout or None
        ),
        30,
        "the server container to answer on the pod's loopback",
    )
    expect_eq(fetched, b"served\n", "page fetched from the other container over localhost")
    expect_eq(
        f.exec_ok(server_id, ["hostname"]),
        f.exec_ok(client_id, ["hostname"]),
        "hostname of the two containers",
    )
    expect_eq(messages(read_log(log_dir / "server.log"), "stdout"), [b"server-up"], "server log")
    expect_eq(messages(read_log(log_dir / "client.log"), "stdout"), [b"client-up"], "client log")
    expect(f.exec_ok(server_id, ["cat", "/www/index.html"]) == "served\n", "exec in the server")
    expect(
        f.exec_sync(client_id, ["cat", "/www/index.html"]).exit_code != 0,
        "the client sees the server's rootfs",
    )
    states = {f.status(c).state for c in (server_id, client_id)}
    expect_eq(states, {pb.CONTAINER_RUNNING}, "states of both containers")
