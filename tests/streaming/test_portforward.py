"""Port forwarding end to end into a network namespace the test made (and the host's, for a
host-network pod), over SPDY and WebSocket."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from cri.streaming import PortForwardRequest, StreamingServer
from tests.streaming.clients import SpdyClient, WsClient, read_all
from tests.streaming.conftest import PageHandler, Pod
from tests.streaming.netns import dial


def _pair(client: SpdyClient, port: int, request_id: int) -> tuple[object, object]:
    headers = {"port": str(port), "requestid": str(request_id)}
    error = client.open({"streamtype": "error", **headers})
    data = client.open({"streamtype": "data", **headers})
    return error, data


def _http_get(client: SpdyClient, port: int, request_id: int) -> bytes:
    headers = {"port": str(port), "requestid": str(request_id)}
    error = client.open({"streamtype": "error", **headers})
    data = client.open({"streamtype": "data", **headers})
    data.write(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
    response = read_all(data)
    assert read_all(error) == b""
    data.close()
    return response


def test_the_pod_is_really_in_another_namespace(pod: Pod) -> None:
    assert pod.netns and pod.netns.fd is not None
    assert pod.netns.inode != os.stat("/proc/self/ns/net").st_ino
    # The namespace's listener is not reachable from the host's.
    with pytest.raises(ConnectionRefusedError):
        dial(None, pod.echo.port, timeout=1).close()


def test_spdy_fetches_a_page_from_a_pod(server: StreamingServer, pod: Pod) -> None:
    client = SpdyClient(server.url_for(PortForwardRequest("pod-netns")), ["portforward.k8s.io"])
    assert client.protocol == "portforward.k8s.io"
    response = _http_get(client, pod.web_port, 0)
    assert response.startswith(b"HTTP/1.0 200") and response.endswith(PageHandler.page)
    # A second connection on the same session.
    assert _http_get(client, pod.web_port, 1).endswith(PageHandler.page)
    client.close()


def test_spdy_fetches_a_page_from_a_host_network_pod(
    server: StreamingServer, host_pod: Pod
) -> None:
    client = SpdyClient(server.url_for(PortForwardRequest("pod-host")), ["portforward.k8s.io"])
    assert _http_get(client, host_pod.web_port, 0).endswith(PageHandler.page)
    client.close()


def test_fifty_concurrent_connections(server: StreamingServer, pod: Pod) -> None:
    client = SpdyClient(server.url_for(PortForwardRequest("pod-netns")), ["portforward.k8s.io"])
    results: dict[int, bytes] = {}

    def one(i: int) -> None:
        headers = {"port": str(pod.echo.port), "requestid": str(i)}
        error = client.open({"streamtype": "error", **headers})
        data = client.open({"streamtype": "data", **headers})
        payload = f"connection {i} ".encode() * (1000 + i * 100)
        data.write(payload)
        data.close()
        results[i] = read_all(data)
        assert read_all(error) == b""
        assert results[i] == payload

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == list(range(50))
    client.close()


def test_refused_port_is_reported_on_the_error_stream(server: StreamingServer, pod: Pod) -> None:
    client = SpdyClient(server.url_for(PortForwardRequest("pod-netns")), ["portforward.k8s.io"])
    headers = {"port": "1", "requestid": "0"}
    error = client.open({"streamtype": "error", **headers})
    data = client.open({"streamtype": "data", **headers})
    message = read_all(error).decode()
    assert message.startswith("error forwarding port 1 to pod pod-netns:")
    assert "Connection refused" in message
    assert read_all(data) == b""
    client.close()


def test_unpaired_stream_times_out(server: StreamingServer, pod: Pod) -> None:
    client = SpdyClient(server.url_for(PortForwardRequest("pod-netns")), ["portforward.k8s.io"])
    error = client.open({"streamtype": "error", "port": str(pod.echo.port), "requestid": "9"})
    # The server's stream creation timeout is 3 s in these tests.
    assert b"timed out waiting for the streams of request 9" in read_all(error)
    client.close()


def test_websocket_forwards_each_port_on_its_channel_pair(
    server: StreamingServer, pod: Pod
) -> None:
    url = server.url_for(PortForwardRequest("pod-netns"))
    url += f"?port={pod.echo.port}&port={pod.web_port}"
    ws = WsClient(url, ["v4.channel.k8s.io"], channels=4)
    for channel, port in ((0, pod.echo.port), (1, pod.echo.port), (2, pod.web_port)):
        assert ws.channels[channel].read() == struct.pack("<H", port)
    assert ws.channels[3].read() == struct.pack("<H", pod.web_port)
    ws.send(0, b"echo me")
    assert ws.channels[0].read() == b"echo me"
    ws.send(2, b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n")
    page = b""
    while not page.endswith(PageHandler.page):
        page += ws.channels[2].read()
    ws.drop()


def test_websocket_base64_and_missing_ports(server: StreamingServer, pod: Pod) -> None:
    url = server.url_for(PortForwardRequest("pod-netns")) + f"?port={pod.echo.port}"
    ws = WsClient(url, ["v4.base64.channel.k8s.io"], channels=2)
    assert ws.channels[0].read() == struct.pack("<H", pod.echo.port)
    ws.send(0, b"\x00\xffbinary")
    assert ws.channels[0].read() == b"\x00\xffbinary"
    ws.drop()
