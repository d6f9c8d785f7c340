"""Pod networking: DNS config, hostname, port mappings (upstream networking.go). Traffic
goes only to loopback and to the address of the pod the case made."""

from __future__ import annotations

import socket
import urllib.request

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import Fixture

AREA = "networking"
PAGE = "critest page"
SERVE = f"mkdir -p /www && echo '{PAGE}' > /www/index.html && exec httpd -f -p 80 -h /www"


@case(
    "DNS config lands in resolv.conf",
    area=AREA,
    spec="runtime should support DNS config [Conformance]",
)
def dns_config(f: Fixture) -> None:
    dns = pb.DNSConfig(servers=["10.10.10.10"], searches=["google.com"], options=["ndots:8"])
    config = f.pod_config(dns_config=dns)
    pod_id = f.run_pod(config)
    container_id = f.run_container(pod_id, config)
    lines = {
        line.strip() for line in f.exec_ok(container_id, ["cat", "/etc/resolv.conf"]).splitlines()
    }
    for wanted in ("nameserver 10.10.10.10", "search google.com", "options ndots:8"):
        expect(wanted in lines, f"/etc/resolv.conf lacks {wanted!r}: {sorted(lines)}")


@case("pod hostname", area=AREA, spec="runtime should support set hostname [Conformance]")
def hostname(f: Fixture) -> None:
    name = f.unique("host-")
    config = f.pod_config(hostname=name)
    pod_id = f.run_pod(config)
    container_id = f.run_container(pod_id, config)
    expect_eq(f.exec_ok(container_id, ["hostname"]).strip(), name, "hostname in the container")
    hosts = f.exec_ok(container_id, ["cat", "/etc/hostname"]).strip()
    expect_eq(hosts, name, "/etc/hostname")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body: bytes = answer.read()
            return body.decode()
    except OSError:
        return None


def _serve(f: Fixture, mapping: pb.PortMapping) -> str:
    config = f.pod_config(port_mappings=[mapping])
    pod_id = f.run_pod(config)
    f.run_container(pod_id, config, f.container_config(command=["sh", "-c", SERVE]))
    return pod_id


@case(
    "port mapping with only a container port",
    area=AREA,
    spec="runtime should support port mapping with only container port [Conformance]",
)
def port_container_only(f: Fixture) -> None:
    pod_id = _serve(f, pb.PortMapping(protocol=pb.TCP, container_port=80))
    ip = f.pod_status(pod_id).network.ip
    expect(ip, "the pod has no IP")
    body = f.wait_for(lambda: _fetch(f"http://{ip}:80/"), 30, f"the page on the pod IP {ip}")
    expect_eq(body.strip(), PAGE, "page served on the pod IP")


@case(
    "port mapping with a host port",
    area=AREA,
    spec="runtime should support port mapping with host port and container port [Conformance]",
)
def port_host(f: Fixture) -> None:
    host_port = _free_port()
    _serve(
        f,
        pb.PortMapping(
            protocol=pb.TCP, container_port=80, host_port=host_port, host_ip="127.0.0.1"
        ),
    )
    body = f.wait_for(
        lambda: _fetch(f"http://127.0.0.1:{host_port}/"), 30, f"the page on 127.0.0.1:{host_port}"
    )
    expect_eq(body.strip(), PAGE, "page served through the host port")
