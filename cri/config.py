"""crisp's configuration model: embedded defaults, TOML files, drop-ins and flag overrides.

The model is a tree of dataclasses. Every field carries its documentation in its metadata so
that `crisp config --reference` (and the README's configuration table) is generated from the
model itself rather than copied by hand.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

DEFAULT_CONFIG_FILE = Path("/etc/crisp/crisp.toml")
DEFAULT_CONFIG_DIR = Path("/etc/crisp/crisp.d")


class ConfigError(ValueError):
    """A configuration source is invalid; the message names the source, the key and why."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass
class GrpcConfig:
    socket: str = field(
        default="/run/crisp/crisp.sock",
        metadata=_doc("Unix socket serving RuntimeService and ImageService."),
    )
    image_socket: str = field(
        default="",
        metadata=_doc("Optional second socket serving ImageService only; empty disables it."),
    )
    socket_mode: int = field(
        default=0o660, metadata=_doc("Permission bits of the socket files (0660 = 432).")
    )
    max_message_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata=_doc("Largest gRPC message accepted or sent, in bytes (at least 16 MiB)."),
    )


@dataclass
class CgroupConfig:
    driver: Literal["cgroupfs", "systemd"] = field(
        default="cgroupfs",
        metadata=_doc("Cgroup driver reported to kubelet: cgroupfs or systemd."),
    )
    parent: str = field(
        default="/crisp",
        metadata=_doc("Cgroup parent for pods whose config names none."),
    )


@dataclass
class CniConfig:
    conf_dir: str = field(
        default="/etc/cni/net.d",
        metadata=_doc("Directory holding CNI network configurations (.conflist/.conf)."),
    )
    default_network: str = field(
        default="",
        metadata=_doc("Name of the network to use; empty takes the first valid config."),
    )
    write_default_network: bool = field(
        default=True,
        metadata=_doc(
            "At start, write crisp's bridge network into conf_dir if it holds no network."
        ),
    )
    bin_dirs: list[str] = field(
        default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"],
        metadata=_doc("Directories searched for CNI plugin binaries, in order."),
    )


@dataclass
class StreamingConfig:
    address: str = field(
        default="127.0.0.1:0",
        metadata=_doc("host:port of the exec/attach/port-forward server; port 0 picks one."),
    )
    tls_cert_file: str = field(default="", metadata=_doc("TLS certificate; empty serves HTTP."))
    tls_key_file: str = field(default="", metadata=_doc("TLS private key for tls_cert_file."))


@dataclass
class MetricsConfig:
    address: str = field(
        default="127.0.0.1:9537",
        metadata=_doc("host:port serving Prometheus /metrics; empty disables, port 0 picks one."),
    )


@dataclass
class RuntimeHandlerConfig:
    kind: Literal["embedded", "oci"] = field(
        default="oci",
        metadata=_doc("embedded: crisp's own runtime; oci: an external runc-compatible binary."),
    )
    path: str = field(default="", metadata=_doc("Binary of an external OCI runtime."))
    root: str = field(
        default="",
        metadata=_doc("State root passed to the external runtime; empty: run_dir/runtime-NAME."),
    )


@dataclass
class RuntimeConfig:
    default_handler: str = field(
        default="crisp",
        metadata=_doc("Runtime handler used when a pod names none."),
    )
    drop_infra: bool = field(
        default=False,
        metadata=_doc("Skip the pause process for pods that do not share their PID namespace."),
    )
    handlers: dict[str, RuntimeHandlerConfig] = field(
        default_factory=lambda: {"crisp": RuntimeHandlerConfig(kind="embedded")},
        metadata=_doc("Runtime handlers by name ([runtime.handlers.NAME] tables)."),
    )


@dataclass
class ContainersConfig:
    log_size_max: int = field(
        default=-1,
        metadata=_doc(
            "Largest size of a container's log file in bytes, -1 for no limit (kubelet "
            "rotates logs itself); at the limit the file starts over empty (as CRI-O's). "
            "At least 8192."
        ),
    )


@dataclass
class ImagesConfig:
    max_concurrent_downloads: int = field(
        default=3, metadata=_doc("Layers of one pull downloaded at the same time.")
    )
    pull_progress_timeout: int = field(
        default=60,
        metadata=_doc("Seconds a pull may receive no data before it is aborted."),
    )


@dataclass
class RegistryConfig:
    mirrors: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "Mirror locations tried in order before the registry: host[:port][/path prefix]."
        ),
    )
    insecure: bool = field(
        default=False,
        metadata=_doc("Allow plain HTTP and skip TLS verification (loopback always may)."),
    )
    ca_file: str = field(default="", metadata=_doc("CA bundle to verify the registry's TLS."))
    username: str = field(default="", metadata=_doc("Registry user name for Basic/token auth."))
    password: str = field(default="", metadata=_doc("Password for username."))


@dataclass
class Config:
    root_dir: str = field(
        default="/var/lib/crisp",
        metadata=_doc("Persistent state: database, images, container layers."),
    )
    run_dir: str = field(
        default="/run/crisp",
        metadata=_doc("Volatile state: namespace pins, monitor sockets, lock files."),
    )
    log_dir: str = field(
        default="/var/log/crisp/pods",
        metadata=_doc("Container logs of pods whose config gives no log directory."),
    )
    log_level: Literal["debug", "info", "warning", "error"] = field(
        default="info", metadata=_doc("Daemon log verbosity.")
    )
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    cgroup: CgroupConfig = field(default_factory=CgroupConfig)
    cni: CniConfig = field(default_factory=CniConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    containers: ContainersConfig = field(default_factory=ContainersConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    registries: dict[str, RegistryConfig] = field(
        default_factory=dict,
        metadata=_doc('Per-registry settings by host ([registries."host"] tables).'),
    )


MIN_MESSAGE_BYTES = 16 * 1024 * 1024
MIN_LOG_SIZE = 8192  # CRI-O's floor too: a log capped lower would hold a record or two


# --- loading -----------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return "array of " + _type_name(get_args(tp)[0]) + "s"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", bool: "boolean", float: "float"}.get(tp, str(tp))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, tp: Any, key: str, source: str, current: Any) -> Any:
    """Check `value` against the declared type `tp`; tables merge into `current`."""

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"{source}: key '{key}': {reason}")

    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise fail(f"expected a table, got {type(value).__name__}")
        base = current if current is not None else tp()
        return _merge_table(base, value, source, prefix=key + ".")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise fail(f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        (item_type,) = get_args(tp)
        if not isinstance(value, list):
            raise fail(f"expected {_type_name(tp)}, got {type(value).__name__}")
        return [_convert(v, item_type, f"{key}[{i}]", source, None) for i, v in enumerate(value)]
    if origin is dict:
        _, value_type = get_args(tp)
        if not isinstance(value, Mapping):
            raise fail(f"expected a table, got {type(value).__name__}")
        merged = dict(current or {})
        for name, item in value.items():
            merged[name] = _convert(item, value_type, f"{key}.{name}", source, merged.get(name))
        return merged
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected boolean, got {type(value).__name__}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected integer, got {type(value).__name__}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected string, got {type(value).__name__}")
        return value
    if isinstance(tp, types.UnionType):
        raise fail("unsupported union type in model")
    raise fail(f"unsupported type {tp!r} in model")


def _merge_table(base: Any, table: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    hints = _hints(type(base))
    updates: dict[str, Any] = {}
    for name, value in table.items():
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{source}: unknown key '{prefix}{name}' (known: {known})")
        updates[name] = _convert(value, hints[name], prefix + name, source, getattr(base, name))
    return dataclasses.replace(base, **updates)


def merge(config: Config, table: Mapping[str, Any], source: str) -> Config:
    """Return `config` with the TOML table from `source` laid over it."""
    merged: Config = _merge_table(config, table, source)
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


def parse_override(assignment: str) -> dict[str, Any]:
    """Turn `KEY=VALUE` into a table: KEY is a TOML dotted key (quote parts holding dots, as in
    `registries."my.host".insecure`), VALUE is TOML, and a bare word is taken as a string."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    for value_text in (raw, json.dumps(raw)):
        try:
            return tomllib.loads(f"{key} = {value_text}")
        except tomllib.TOMLDecodeError:
            continue
    raise ConfigError(f"--set {assignment!r}: {key!r} is not a valid TOML key")


_SECRET_KEYS = frozenset({"password", "auth", "identity_token", "registry_token"})


def redacted(data: Any) -> Any:
    """`data` (plain dicts and lists) with every secret value replaced, for logs and Status."""
    if isinstance(data, dict):
        return {
            k: "<redacted>" if k in _SECRET_KEYS and v else redacted(v) for k, v in data.items()
        }
    if isinstance(data, list):
        return [redacted(v) for v in data]
    return data


@dataclass(frozen=True)
class ConfigSources:
    """Where configuration comes from; missing default files are fine, missing named ones not."""

    file: Path = DEFAULT_CONFIG_FILE
    drop_in_dir: Path = DEFAULT_CONFIG_DIR
    file_required: bool = False
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()


def load(sources: ConfigSources) -> Config:
    config = Config()
    if sources.file.exists() or sources.file_required:
        config = merge(config, _read_toml(sources.file), str(sources.file))
    if sources.drop_in_dir.is_dir():
        for drop_in in sorted(sources.drop_in_dir.glob("*.toml")):
            config = merge(config, _read_toml(drop_in), str(drop_in))
    for origin, table in sources.overrides:
        config = merge(config, table, origin)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field checks that the type system cannot express."""
    for key, value in (
        ("root_dir", config.root_dir),
        ("run_dir", config.run_dir),
        ("log_dir", config.log_dir),
        ("grpc.socket", config.grpc.socket),
        ("cni.conf_dir", config.cni.conf_dir),
    ):
        if not value.startswith("/"):
            raise ConfigError(f"key '{key}': must be an absolute path, got {value!r}")
    if config.grpc.image_socket and not config.grpc.image_socket.startswith("/"):
        raise ConfigError("key 'grpc.image_socket': must be an absolute path")
    if config.grpc.max_message_bytes < MIN_MESSAGE_BYTES:
        raise ConfigError(
            f"key 'grpc.max_message_bytes': must be at least {MIN_MESSAGE_BYTES}, "
            f"got {config.grpc.max_message_bytes}"
        )
    if not 0 <= config.grpc.socket_mode <= 0o777:
        raise ConfigError("key 'grpc.socket_mode': must be permission bits between 0 and 0777")
    for key, address in (
        ("streaming.address", config.streaming.address),
        ("metrics.address", config.metrics.address),
    ):
        if address or key == "streaming.address":
            split_address(address, key)
    if config.runtime.default_handler not in config.runtime.handlers:
        raise ConfigError(
            f"key 'runtime.default_handler': {config.runtime.default_handler!r} is not one of "
            f"the configured handlers ({', '.join(sorted(config.runtime.handlers))})"
        )
    for name, handler in config.runtime.handlers.items():
        if handler.kind == "oci" and not handler.path:
            raise ConfigError(f"key 'runtime.handlers.{name}.path': required for kind 'oci'")
    log_size_max = config.containers.log_size_max
    if log_size_max != -1 and log_size_max < MIN_LOG_SIZE:
        raise ConfigError(
            f"key 'containers.log_size_max': must be -1 (no limit) or at least {MIN_LOG_SIZE}, "
            f"got {log_size_max}"
        )
    if config.images.max_concurrent_downloads < 1:
        raise ConfigError("key 'images.max_concurrent_downloads': must be at least 1")
    if config.images.pull_progress_timeout < 1:
        raise ConfigError("key 'images.pull_progress_timeout': must be at least 1 second")
    for host, registry in config.registries.items():
        for position, mirror in enumerate(registry.mirrors):
            location = mirror.removeprefix("https://").removeprefix("http://")
            if not location.partition("/")[0]:
                raise ConfigError(
                    f"key 'registries.{host}.mirrors[{position}]': {mirror!r} names no host"
                )
        if registry.ca_file and not registry.ca_file.startswith("/"):
            raise ConfigError(f"key 'registries.{host}.ca_file': must be an absolute path")


def split_address(address: str, key: str = "address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"key '{key}': expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


# --- output ------------------------------------------------------------------------------


def to_table(config: Any) -> dict[str, Any]:
    """The configuration as plain TOML-ready data, scalars before tables as TOML wants."""
    data = dataclasses.asdict(config)

    def order(table: dict[str, Any]) -> dict[str, Any]:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: order(v) for k, v in table.items() if isinstance(v, dict)}
        return scalars | tables

    return order(data)


def to_toml(config: Config) -> str:
    import tomli_w

    return tomli_w.dumps(to_table(config))


@dataclass(frozen=True)
class ReferenceRow:
    key: str
    type_name: str
    default: str
    doc: str


def reference_rows(cls: type = Config, prefix: str = "") -> Iterable[ReferenceRow]:
    instance = cls()
    for f in dataclasses.fields(instance):
        tp = _hints(cls)[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            yield from reference_rows(tp, key + ".")
            continue
        if get_origin(tp) is dict:
            _, value_type = get_args(tp)
            default = getattr(instance, f.name)
            yield ReferenceRow(key, "table", _toml_inline(default), f.metadata.get("doc", ""))
            if dataclasses.is_dataclass(value_type) and isinstance(value_type, type):
                yield from reference_rows(value_type, key + ".NAME.")
            continue
        default = getattr(instance, f.name)
        yield ReferenceRow(key, _type_name(tp), _toml_inline(default), f.metadata.get("doc", ""))


def _toml_inline(value: Any) -> str:
    import tomli_w

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        value = {
            k: dataclasses.asdict(v)
            if dataclasses.is_dataclass(v) and not isinstance(v, type)
            else v
            for k, v in value.items()
        }
    if isinstance(value, list):
        return "[" + ", ".join(_toml_inline(item) for item in value) + "]"
    rendered = tomli_w.dumps({"v": value}).strip()
    if rendered.startswith("v = "):
        return rendered[4:]
    # nested tables render over several lines; a compact sketch is enough for a reference
    return "{ " + ", ".join(sorted(value)) + " }" if isinstance(value, dict) else rendered


def reference_markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for row in reference_rows():
        default = row.default.replace("|", "\\|")
        lines.append(f"| `{row.key}` | {row.type_name} | `{default}` | {row.doc} |")
    return "\n".join(lines) + "\n"
