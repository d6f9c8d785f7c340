"""Errors raised by the CNI client; every message names the file or plugin at fault."""

from __future__ import annotations

from pathlib import Path

# Well-known error codes of the CNI spec (section "Error").
CODE_INCOMPATIBLE_VERSION = 1
CODE_UNSUPPORTED_FIELD = 2
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENV = 4
CODE_IO_FAILURE = 5
CODE_DECODE_FAILURE = 6
CODE_INVALID_CONFIG = 7
CODE_TRY_AGAIN_LATER = 11
CODE_PLUGIN_NOT_AVAILABLE = 50
CODE_PLUGIN_NOT_AVAILABLE_LIMITED = 51


class CNIError(Exception):
    """Base of everything this package raises on purpose."""


class ConfigError(CNIError):
    """A network configuration file (or cached config) is unusable."""

    def __init__(self, source: Path | str, reason: str) -> None:
        super().__init__(f"invalid CNI config {source}: {reason}")
        self.source = str(source)
        self.reason = reason


class PluginNotFoundError(CNIError):
    def __init__(self, plugin: str, search_dirs: list[str]) -> None:
        super().__init__(f"CNI plugin {plugin!r} not found in {':'.join(search_dirs) or '(none)'}")
        self.plugin = plugin
        self.search_dirs = list(search_dirs)


class PluginError(CNIError):
    """A plugin exited non-zero; `code`/`msg`/`details` come from its error JSON."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        text = f"CNI plugin {plugin} {command} failed (code {code}): {msg}"
        if details:
            text += f": {details}"
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details


class PluginTimeoutError(CNIError):
    def __init__(self, plugin: str, command: str, timeout: float) -> None:
        super().__init__(f"CNI plugin {plugin} {command} timed out after {timeout:g}s")
        self.plugin = plugin
        self.command = command
        self.timeout = timeout


class InvalidResultError(CNIError):
    """A plugin (or the cache) produced a result we cannot decode."""
