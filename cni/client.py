"""Network-list operations over plugin chains, as the spec orders them: ADD in order with
each result fed to the next plugin, DEL in reverse with the cached result, CHECK, and the
1.1.0 STATUS and GC verbs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence

from cni import version as cniver
from cni.attachment import Attachment
from cni.cache import ResultCache
from cni.config import NetworkConfigList, PluginConfig
from cni.errors import CNIError, InvalidResultError
from cni.invoke import Runner, VersionCache, build_stdin, decode_result, find_plugin, plugin_env
from cni.result import Result

log = logging.getLogger(__name__)

# Both keys carry the same list: libcni sends both because an early 1.1.0 draft named
# the field `cni.dev/attachments`, and plugins built against it still read that one.
GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


class CNIClient:
    def __init__(
        self, bin_dirs: Sequence[str], cache: ResultCache, runner: Runner | None = None
    ) -> None:
        self.bin_dirs = list(bin_dirs)
        self.cache = cache
        self.runner = runner or Runner()
        self.versions = VersionCache()

    def find(self, plugin: PluginConfig) -> str:
        return find_plugin(plugin.type, self.bin_dirs)

    def supports(self, plugin: PluginConfig, version: str) -> bool:
        return version in self.versions.supported(self.find(plugin), self.runner, self.bin_dirs)

    def add(self, net: NetworkConfigList, att: Attachment) -> Result:
        result: Result | None = None
        for plugin in net.plugins:
            stdin = build_stdin(plugin, net.name, net.cni_version, result, att.capability_args)
            out = self._run(plugin, "ADD", stdin, att)
            result = decode_result(plugin.type, out)
        if result is None:  # unreachable: configs have at least one plugin
            raise InvalidResultError(f"network {net.name} produced no result")
        self.cache.save(net, att, result)
        return result

    def delete(self, net: NetworkConfigList, att: Attachment) -> None:
        """DEL in reverse order; drops the cache entry only when every plugin succeeded,
        so a retry still has the prevResult."""
        prev: Result | None = None
        # prevResult on DEL exists since 0.4.0; older plugins would choke on it.
        if cniver.at_least(net.cni_version, "0.4.0"):
            prev = self.cached_result(net, att)
        for plugin in reversed(net.plugins):
            stdin = build_stdin(plugin, net.name, net.cni_version, prev, att.capability_args)
            self._run(plugin, "DEL", stdin, att)
        self.cache.delete(net.name, att.container_id, att.ifname)

    def check(self, net: NetworkConfigList, att: Attachment) -> None:
        if not cniver.at_least(net.cni_version, "0.4.0"):
            raise CNIError(f"network {net.name}: cniVersion {net.cni_version} has no CHECK")
        if net.disable_check:
            return
        prev = self.cached_result(net, att)
        if prev is None:
            raise CNIError(
                f"network {net.name}: no cached ADD result for {att.container_id}/{att.ifname}"
            )
        for plugin in net.plugins:
            stdin = build_stdin(plugin, net.name, net.cni_version, prev, att.capability_args)
            self._run(plugin, "CHECK", stdin, att)

    def status(self, net: NetworkConfigList) -> None:
        """Raises the first plugin's error; lists before 1.1.0 have no STATUS and are
        taken as ready, as are plugins that do not speak 1.1.0."""
        if not cniver.at_least(net.cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            if not self.supports(plugin, net.cni_version):
                continue
            self._run(plugin, "STATUS", build_stdin(plugin, net.name, net.cni_version), None)

    def gc(self, net: NetworkConfigList, valid: Iterable[tuple[str, str]]) -> None:
        """DEL cached attachments of `net` not in `valid` (container id, ifname), then
        let 1.1.0 plugins collect what they leaked. Every failure is attempted and
        reported together."""
        if net.disable_gc:
            return
        keep = set(valid)
        errors: list[str] = []
        for entry in self.cache.entries():
            if entry.network_name != net.name or (entry.container_id, entry.ifname) in keep:
                continue
            try:
                self.delete(entry.network(), entry.attachment(netns=""))
            except CNIError as exc:
                errors.append(f"stale attachment {entry.container_id}/{entry.ifname}: {exc}")
        if cniver.at_least(net.cni_version, "1.1.0"):
            attachments = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
            extra = dict.fromkeys(GC_KEYS, attachments)
            for plugin in net.plugins:
                try:
                    if not self.supports(plugin, net.cni_version):
                        continue
                    stdin = build_stdin(plugin, net.name, net.cni_version, extra=extra)
                    self._run(plugin, "GC", stdin, None)
                except CNIError as exc:
                    errors.append(str(exc))
        if errors:
            raise CNIError(f"GC of network {net.name}: " + "; ".join(errors))

    def cached_result(self, net: NetworkConfigList, att: Attachment) -> Result | None:
        try:
            entry = self.cache.load(net.name, att.container_id, att.ifname)
        except CNIError as exc:
            # A corrupt entry must not block DEL forever: plugins clean up without it.
            log.warning("ignoring CNI cache entry: %s", exc)
            return None
        return entry.result if entry else None

    def _run(
        self, plugin: PluginConfig, command: str, stdin: bytes, att: Attachment | None
    ) -> bytes:
        path = self.find(plugin)
        env = plugin_env(command, self.bin_dirs, att)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("CNI %s %s: %s", plugin.type, command, json.loads(stdin))
        return self.runner.run(path, command, stdin, env).stdout
