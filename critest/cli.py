"""``python -m critest``: start the loopback registries, push the test images, run the
selected cases against a CRI endpoint, print one line per case and the summary last.
``python -m critest benchmark ...`` runs the benchmark instead (critest/bench.py)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import grpc

from criapi import api_pb2 as pb
from critest import bench
from critest.case import Case, discover
from critest.client import Client
from critest.fixture import RPC_TIMEOUT, Env, describe
from critest.junit import write_junit
from critest.registry import Registry
from critest.runner import Result, exit_code, make_env_fixture, run_all, select, summary
from critest.testimages import TestImages, build_and_push


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m critest", description="CRI conformance cases against any runtime."
    )
    parser.add_argument("--runtime-endpoint", default="unix:///run/crisp/crisp.sock")
    parser.add_argument("--image-endpoint", default="", help="defaults to the runtime endpoint")
    parser.add_argument("--runtime-handler", default="", help="RuntimeClass handler to use")
    parser.add_argument(
        "--cgroup-parent", default=None, help="cgroup parent of the pods (default: by driver)"
    )
    parser.add_argument("--focus", default="", help="run only cases matching this regex")
    parser.add_argument("--skip", default="", help="leave out cases matching this regex")
    parser.add_argument("--junit", type=Path, help="write JUnit XML here")
    parser.add_argument("--parallel", type=int, default=1, help="cases run at once")
    parser.add_argument("--list", action="store_true", help="print the selected cases and exit")
    parser.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="push test images here instead of starting registries on loopback (repeat "
        "once for the second registry of the two-registry case)",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def registries(given: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """The registries given, or two started on loopback for the length of the run."""
    if given:
        yield tuple(given)
        return
    with Registry() as first, Registry() as second:
        yield first.host, second.host


def cgroup_parent(client: Client) -> str:
    """A parent matching the runtime's cgroup driver, as kubelet would give one."""
    try:
        answer = client.runtime.RuntimeConfig(pb.RuntimeConfigRequest(), timeout=RPC_TIMEOUT)
    except grpc.RpcError:
        return ""
    return "system.slice" if answer.linux.cgroup_driver == pb.SYSTEMD else ""


def prepull(client: Client, test_images: TestImages) -> list[str]:
    refs = [test_images.default.ref, test_images.groups.ref]
    for ref in refs:
        client.image.PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT * 3
        )
    return refs


def remove_images(client: Client, refs: Sequence[str], out: TextIO) -> None:
    for ref in refs:
        try:
            client.image.RemoveImage(
                pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as error:
            print(f"warning: removing {ref}: {describe(error)}", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["benchmark"]:
        return bench.main(arguments[1:], out)
    args = parse_args(arguments)
    cases = select(discover(), args.focus, args.skip)
    if args.list:
        for case in cases:
            print(f"{case.title}  <- {case.spec or '(crisp)'}", file=out)
        print(f"{len(cases)} cases", file=out)
        return 0
    with Client(args.runtime_endpoint, args.image_endpoint) as client:
        try:
            version = client.runtime.Version(pb.VersionRequest(), timeout=RPC_TIMEOUT)
        except grpc.RpcError as error:
            print(f"cannot reach {args.runtime_endpoint}: {describe(error)}", file=out)
            return 2
        print(f"runtime: {version.runtime_name} {version.runtime_version}", file=out, flush=True)
        results = run_session(args, cases, client, out)
    if args.junit:
        write_junit(args.junit, results)
    print(summary(results), file=out, flush=True)
    return exit_code(results)


def run_session(
    args: argparse.Namespace, cases: Sequence[Case], client: Client, out: TextIO
) -> list[Result]:
    """Registries, test images, the run; the images it pulled and its work directory are
    removed however the run ends."""
    work_dir = Path(tempfile.mkdtemp(prefix="critest-"))
    pulled: list[str] = []
    try:
        with registries(args.registry) as hosts:
            test_images = build_and_push(hosts[0], hosts[1] if len(hosts) > 1 else "")
            pulled = prepull(client, test_images)
            parent = cgroup_parent(client) if args.cgroup_parent is None else args.cgroup_parent
            env = Env(
                runtime_endpoint=args.runtime_endpoint,
                image_endpoint=args.image_endpoint,
                images=test_images,
                work_dir=work_dir,
                runtime_handler=args.runtime_handler,
                cgroup_parent=parent,
            )
            return run_all(cases, make_env_fixture(env), out, args.parallel)
    finally:
        remove_images(client, pulled, out)
        shutil.rmtree(work_dir, ignore_errors=True)
