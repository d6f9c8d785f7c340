"""Streaming benchmark: exec round-trip latency and port-forward throughput on loopback.

    python -m tests.streaming.bench_streaming [--rounds N] [--megabytes M]

Prints numbers; never pass/fail. Exec latency is URL → connection → streams → process →
exit status, against the local test backend (a plain local process, no container), so it
measures the streaming path alone. Throughput pushes bytes through a port-forward into an
echo server in a private network namespace and back.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from cri.streaming import ExecRequest, PortForwardRequest, StreamingServer
from tests.streaming.backends import EXEC_CONTAINER, LocalBackend
from tests.streaming.clients import SpdyClient, WsClient, exit_code, read_all, spdy_remotecommand
from tests.streaming.conftest import EchoServer
from tests.streaming.netns import NetNs


def _exec_round_trips(server: StreamingServer, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        s = spdy_remotecommand(server.url_for(ExecRequest(EXEC_CONTAINER, ("true",))))
        assert exit_code(read_all(s.error)) == 0
        times.append(time.perf_counter() - start)
        s.client.close()
    return times


def _spdy_throughput(server: StreamingServer, port: int, total: int, flow: bool) -> float:
    client = SpdyClient(
        server.url_for(PortForwardRequest("bench")), ["portforward.k8s.io"], flow_control=flow
    )
    headers = {"port": str(port), "requestid": "0"}
    client.open({"streamtype": "error", **headers})
    data = client.open({"streamtype": "data", **headers})
    chunk = b"x" * 65536
    received = 0

    def drain() -> None:
        nonlocal received
        while piece := data.read(1 << 20):
            received += len(piece)
            if received >= total:
                return

    start = time.perf_counter()
    reader = threading.Thread(target=drain)
    reader.start()
    for _ in range(total // len(chunk)):
        data.write(chunk)
    reader.join()
    elapsed = time.perf_counter() - start
    client.close()
    return total / elapsed / 1e6


def _ws_throughput(server: StreamingServer, port: int, total: int) -> float:
    url = server.url_for(PortForwardRequest("bench")) + f"?port={port}"
    ws = WsClient(url, ["v4.channel.k8s.io"], channels=2)
    ws.channels[0].read()
    ws.channels[1].read()
    chunk = b"x" * 65536
    received = 0

    def drain() -> None:
        nonlocal received
        while received < total:
            received += len(ws.channels[0].read())

    start = time.perf_counter()
    reader = threading.Thread(target=drain)
    reader.start()
    for _ in range(total // len(chunk)):
        ws.send(0, chunk)
    reader.join()
    elapsed = time.perf_counter() - start
    ws.drop()
    return total / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()
    backend = LocalBackend()
    server = StreamingServer(backend, "127.0.0.1:0")
    server.start()
    netns = NetNs()
    echo = EchoServer(netns.listen())
    backend.pods["bench"] = netns.fd
    total = args.megabytes * 1024 * 1024
    try:
        times = sorted(_exec_round_trips(server, args.rounds))
        p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
        print(
            f"exec round trip (SPDY, `true`): median {p50 * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms, "
            f"mean {statistics.mean(times) * 1e3:.2f} ms over {len(times)}"
        )
        for flow in (True, False):
            rate = _spdy_throughput(server, echo.port, total, flow)
            kind = "flow-controlled client" if flow else "spdystream-like client"
            print(f"port-forward SPDY ({kind}): {rate:.0f} MB/s echoed ({args.megabytes} MiB)")
        rate = _ws_throughput(server, echo.port, total)
        print(f"port-forward WebSocket: {rate:.0f} MB/s echoed ({args.megabytes} MiB)")
    finally:
        server.close()
        echo.close()
        netns.close()


if __name__ == "__main__":
    main()
