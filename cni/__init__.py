"""CNI client: network config lists, plugin invocation, result cache, pod networking.

Knows nothing of containers beyond a network namespace path and ids, so it can be
tested (and reused) without the rest of crisp.
"""

from cni.config import (
    ConfigWatcher,
    NetworkConfigList,
    PluginConfig,
    first_valid,
    load_conf_dir,
    parse_conflist,
)
from cni.errors import (
    CNIError,
    ConfigError,
    InvalidResultError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from cni.network import (
    Bandwidth,
    NetworkManager,
    NetworkStatus,
    PodDNS,
    PodNetworkResult,
    PortMapping,
)
from cni.result import DNS, Interface, IPConfig, Result, Route

__all__ = [
    "DNS",
    "Bandwidth",
    "CNIError",
    "ConfigError",
    "ConfigWatcher",
    "IPConfig",
    "Interface",
    "InvalidResultError",
    "NetworkConfigList",
    "NetworkManager",
    "NetworkStatus",
    "PluginConfig",
    "PluginError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "PodDNS",
    "PodNetworkResult",
    "PortMapping",
    "Result",
    "Route",
    "first_valid",
    "load_conf_dir",
    "parse_conflist",
]
