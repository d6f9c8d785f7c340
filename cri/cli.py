"""The `crisp` command: serve (default), config, version, check, status, wipe.

Serving starts the fork server (runtime/zygote.py) before this module imports anything
else: every module loaded before that fork is memory each container's monitor shares with
the zygote, and the objects a monitor touches are scattered over that memory. So the
imports below are few, and the rest come inside the functions that need them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from cri.config import Config
    from runtime.zygote import Zygote

# flag → config key; each flag is a shortcut for `--set KEY=VALUE`.
_PATH_FLAGS: dict[str, str] = {
    "--root": "root_dir",
    "--run-dir": "run_dir",
    "--log-dir": "log_dir",
    "--log-level": "log_level",
    "--socket": "grpc.socket",
    "--image-socket": "grpc.image_socket",
    "--cni-conf-dir": "cni.conf_dir",
    "--cgroup-driver": "cgroup.driver",
    "--cgroup-parent": "cgroup.parent",
    "--streaming-address": "streaming.address",
    "--metrics-address": "metrics.address",
}


def _config_flags() -> argparse.ArgumentParser:
    import argparse

    from cri.config import DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_FILE

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration")
    group.add_argument(
        "--config", type=Path, help=f"configuration file (default {DEFAULT_CONFIG_FILE})"
    )
    group.add_argument(
        "--config-dir", type=Path, help=f"drop-in directory (default {DEFAULT_CONFIG_DIR})"
    )
    for flag, key in _PATH_FLAGS.items():
        group.add_argument(flag, metavar="VALUE", help=f"sets {key}")
    group.add_argument(
        "--cni-bin-dir", action="append", metavar="DIR", help="sets cni.bin_dirs (repeatable)"
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "sets any configuration key, VALUE in TOML syntax "
            "(e.g. grpc.max_message_bytes=33554432)"
        ),
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    import argparse

    config_flags = _config_flags()
    parser = argparse.ArgumentParser(
        prog="crisp", description="crisp: a Kubernetes CRI container runtime"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[config_flags], help="run the daemon (the default)")
    show = commands.add_parser(
        "config", parents=[config_flags], help="print the effective configuration as TOML"
    )
    show.add_argument(
        "--reference", action="store_true", help="print the configuration reference as Markdown"
    )
    commands.add_parser("version", help="print crisp's version")
    commands.add_parser(
        "check", parents=[config_flags], help="preflight: can this host run crisp? (OK/WARN/FAIL)"
    )
    commands.add_parser(
        "wipe",
        parents=[config_flags],
        help="remove all of crisp's state (refuses while the daemon or any pod runs)",
    )
    status = commands.add_parser(
        "status", parents=[config_flags], help="ask a running daemon for its version and status"
    )
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon")
    status.add_argument("--json", action="store_true", help="print the answer as JSON")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    from cri.config import (
        DEFAULT_CONFIG_DIR,
        DEFAULT_CONFIG_FILE,
        ConfigSources,
        load,
        parse_override,
    )

    overrides: list[tuple[str, dict[str, Any]]] = []
    for flag, key in _PATH_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append((f"flag {flag}", _nested(key, value)))
    if args.cni_bin_dir:
        overrides.append(("flag --cni-bin-dir", {"cni": {"bin_dirs": list(args.cni_bin_dir)}}))
    for assignment in args.set:
        overrides.append((f"flag --set {assignment}", parse_override(assignment)))
    sources = ConfigSources(
        file=args.config or DEFAULT_CONFIG_FILE,
        drop_in_dir=args.config_dir or DEFAULT_CONFIG_DIR,
        file_required=args.config is not None,
        overrides=tuple(overrides),
    )
    return load(sources)


def _nested(key: str, value: Any) -> dict[str, Any]:
    table: dict[str, Any] = {}
    node = table
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return table


def _setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _check(config: Config) -> int:
    from sandbox.preflight import HostSettings, Verdict, run_checks

    settings = HostSettings(
        root_dir=Path(config.root_dir),
        cni_conf_dir=config.cni.conf_dir,
        cni_bin_dirs=config.cni.bin_dirs,
        cni_default_network=config.cni.default_network,
        cni_write_default_network=config.cni.write_default_network,
        cgroup_driver=config.cgroup.driver,
    )
    failed = False
    for finding in run_checks(settings):
        print(f"{finding.verdict.value:<5} {finding.check}: {finding.detail}")
        if finding.hint and finding.verdict is not Verdict.OK:
            print(f"      hint: {finding.hint}")
        failed |= finding.verdict is Verdict.FAIL
    return 1 if failed else 0


def _start_fork_server() -> Zygote:
    """Before any thread exists, and before the imports of argument parsing, configuration
    and the daemon (gRPC, protobuf), whose memory every spawned monitor would share."""
    import runtime.entry_points  # noqa: F401  (registers the zygote entry points)
    from runtime.zygote import Zygote

    return Zygote()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "serve")
    zygote = _start_fork_server() if arguments[0] == "serve" else None
    try:
        return _run(arguments, zygote)
    finally:
        if zygote is not None:
            zygote.close()  # the daemon closed it already, unless it never got that far


def _run(arguments: list[str], zygote: Zygote | None) -> int:
    from cri.config import ConfigError, reference_markdown, to_toml
    from cri.endpoint import StartupError

    args = build_parser().parse_args(arguments)
    try:
        if args.command == "version":
            from cri.daemon import VERSION

            print(f"crisp {VERSION}")
            return 0
        config = config_from_args(args)
        if args.command == "config":
            print(reference_markdown() if args.reference else to_toml(config), end="")
            return 0
        if args.command == "check":
            return _check(config)
        if args.command == "wipe":
            from cri.wipe_command import run_wipe

            return run_wipe(config)
        if args.command == "status":
            from cri.status_command import print_status

            return print_status(config.grpc.socket, args.timeout, args.json)
        assert zygote is not None  # `serve` is the only command left
        _setup_logging(config.log_level)
        from cri.daemon import serve

        return serve(config, zygote)
    except (ConfigError, StartupError) as e:
        print(f"crisp: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
