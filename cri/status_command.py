"""`crisp status`: what a running daemon says about itself, asked over its own socket."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sized

import grpc

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc


def _count(listing: Callable[[], Sized]) -> int | None:
    """How many objects a list RPC returns; None when the daemon does not serve it."""
    try:
        return len(listing())
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise


def print_status(socket_path: str, timeout: float, as_json: bool) -> int:
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        stub = pb_grpc.RuntimeServiceStub(channel)
        images = pb_grpc.ImageServiceStub(channel)
        try:
            version = stub.Version(pb.VersionRequest(), timeout=timeout)
            status = stub.Status(pb.StatusRequest(verbose=False), timeout=timeout)
            counts = {
                "pods": _count(
                    lambda: stub.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=timeout).items
                ),
                "containers": _count(
                    lambda: (
                        stub.ListContainers(pb.ListContainersRequest(), timeout=timeout).containers
                    )
                ),
                "images": _count(
                    lambda: images.ListImages(pb.ListImagesRequest(), timeout=timeout).images
                ),
            }
        except grpc.RpcError as e:
            print(
                f"crisp: cannot reach the daemon at {socket_path}: {e.code().name}: {e.details()}",
                file=sys.stderr,
            )
            return 1
    finally:
        channel.close()
    conditions = [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
        for c in status.status.conditions
    ]
    handlers = [h.name or "(default)" for h in status.runtime_handlers]
    if as_json:
        answer = {
            "socket": socket_path,
            "runtimeName": version.runtime_name,
            "runtimeVersion": version.runtime_version,
            "runtimeApiVersion": version.runtime_api_version,
            "conditions": conditions,
            "runtimeHandlers": handlers,
            "counts": counts,
        }
        print(json.dumps(answer, indent=2))
    else:
        print(f"socket:     {socket_path}")
        print(
            f"runtime:    {version.runtime_name} {version.runtime_version} "
            f"(CRI {version.runtime_api_version})"
        )
        for c in conditions:
            line = f"{c['type']}: {'true' if c['status'] else 'false'}"
            if not c["status"]:
                line += f" ({c['reason']}: {c['message']})"
            print(f"condition:  {line}")
        print(f"handlers:   {', '.join(handlers)}")
        print(
            "objects:    "
            + ", ".join(f"{n if n is not None else 'n/a'} {what}" for what, n in counts.items())
        )
    return 0
