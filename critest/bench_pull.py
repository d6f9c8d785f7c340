"""Image pull benchmark against any CRI endpoint, from a registry started on loopback.

``python -m critest.bench_pull --endpoint unix:///run/crisp/crisp.sock --daemon-pid PID``

Prints: the cold pull of a large multi-layer image (default 10 layers of 20 MiB of
incompressible data, gzip) in MB/s, the daemon's RSS before and its peak (VmHWM) after when
its PID is given, and medians of pulling, ImageStatus and RemoveImage of a small
single-layer busybox image. Numbers only; never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import grpc

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from critest import images
from critest.registry import Registry


def _proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critest.bench_pull")
    parser.add_argument("--endpoint", default="unix:///run/crisp/crisp.sock")
    parser.add_argument("--daemon-pid", type=int, default=0)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--layer-mib", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)

    channel = grpc.insecure_channel(args.endpoint)
    image_service = pb_grpc.ImageServiceStub(channel)

    def spec(ref: str) -> pb.ImageSpec:
        return pb.ImageSpec(image=ref)

    with Registry() as registry:
        layers = [
            [images.file(f"data/layer-{n}", os.urandom(args.layer_mib << 20))]
            for n in range(args.layers)
        ]
        big = images.build_image([[images.directory("data")], *layers], compression="gzip")
        small = images.busybox_image()
        pusher = images.Pusher(registry.host)
        pusher.push_image("bench/big", big, "v1")
        pusher.push_image("bench/small", small, "v1")
        big_ref, small_ref = f"{registry.host}/bench/big:v1", f"{registry.host}/bench/small:v1"
        compressed = sum(layer.size for layer in big.layers)

        rss_before = _proc_status(args.daemon_pid, "VmRSS") if args.daemon_pid else 0
        seconds = _timed(lambda: image_service.PullImage(pb.PullImageRequest(image=spec(big_ref))))
        peak = _proc_status(args.daemon_pid, "VmHWM") if args.daemon_pid else 0
        image_service.RemoveImage(pb.RemoveImageRequest(image=spec(big_ref)))
        print(
            f"large pull: {len(big.layers)} layers, {compressed / 1e6:.1f} MB in "
            f"{seconds:.2f} s = {compressed / 1e6 / seconds:.1f} MB/s"
        )
        if args.daemon_pid:
            print(
                f"daemon RSS before: {rss_before / 2**20:.1f} MiB, "
                f"peak (VmHWM) after: {peak / 2**20:.1f} MiB"
            )

        pulls, statuses, removes = [], [], []
        for _ in range(args.runs):
            pulls.append(
                _timed(lambda: image_service.PullImage(pb.PullImageRequest(image=spec(small_ref))))
            )
            statuses.append(
                _timed(
                    lambda: image_service.ImageStatus(pb.ImageStatusRequest(image=spec(small_ref)))
                )
            )
            removes.append(
                _timed(
                    lambda: image_service.RemoveImage(pb.RemoveImageRequest(image=spec(small_ref)))
                )
            )
        size = small.layers[0].size / 1e6
        print(
            f"small image ({size:.1f} MB, 1 layer), median of {args.runs}: "
            f"pull {statistics.median(pulls) * 1000:.1f} ms, "
            f"ImageStatus {statistics.median(statuses) * 1000:.2f} ms, "
            f"RemoveImage {statistics.median(removes) * 1000:.1f} ms"
        )
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
