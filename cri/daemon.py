"""The daemon's life: prepare directories, take the locks, open state, serve, shut down.

Shutdown (SIGTERM/SIGINT) stops serving and closes state, but never touches containers: their
monitors are separate processes that outlive the daemon.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

from cni.network import NetworkManager
from cri.config import Config, redacted
from cri.endpoint import LockFile, StartupError, prepare_socket_path
from cri.image_service import ImageService
from cri.metrics import (
    ContainerCensus,
    ContainerCollector,
    ImagePullCollector,
    MetricsServer,
    create_metrics,
)
from cri.runtime_service import RuntimeService
from cri.server import CriServer
from cri.state import StateDB, StateError
from cri.streaming import StreamingServer
from cri.streaming_backend import DomainBackend
from imagesvc.digest import Digest
from imagesvc.endpoints import InvalidRegistryConfig, RegistryHost
from imagesvc.manager import ImageManager
from imagesvc.pull import PullOptions
from imagesvc.registry import ClientOptions
from runtime.container import Runtime
from runtime.external import ExternalRuntime
from runtime.handler import ContainerRuntime
from runtime.zygote import Zygote
from sandbox import pod_cgroups, userns_support
from sandbox.container_context import ContainerSettings
from sandbox.container_list import ContainerFilter
from sandbox.container_status import OOM_KILLED
from sandbox.containers import ContainerService
from sandbox.network import open_pod_network
from sandbox.node import Node, RuntimeHandler
from sandbox.pod_context import PodSettings
from sandbox.pods import PodService

log = logging.getLogger("crisp")

VERSION = "0.1.0"
_SIGNAL_POLL_SECONDS = 1.0
_SHUTDOWN_GRACE_SECONDS = 5.0


def _prepare_dir(path: Path, key: str, mode: int = 0o711) -> None:
    """Create `path` and prove it is writable, failing with one line naming the key."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        probe = path / f".crisp-write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StartupError(f"{key} {path} is not a writable directory: {e.strerror}") from e


class Daemon:
    def __init__(self, config: Config, zygote: Zygote) -> None:
        self.config = config
        self.zygote = zygote
        self._stop = threading.Event()
        self._locks: list[LockFile] = []
        self._servers: list[CriServer] = []
        self._metrics_server: MetricsServer | None = None
        self._db: StateDB | None = None
        self._node: Node | None = None
        self._pods: PodService | None = None
        self._containers: ContainerService | None = None
        self._streaming: StreamingServer | None = None

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.shutdown()
            raise

    def _start(self) -> None:
        config = self.config
        root, run = Path(config.root_dir), Path(config.run_dir)
        _prepare_dir(root, "root_dir", 0o711)
        _prepare_dir(run, "run_dir", 0o711)
        _prepare_dir(Path(config.log_dir), "log_dir", 0o755)
        self._locks.append(LockFile(run / "crisp.lock", f"run_dir {run}"))
        self._locks.append(LockFile(root / "crisp.lock", f"root_dir {root}"))
        sockets = [Path(config.grpc.socket)]
        if config.grpc.image_socket:
            sockets.append(Path(config.grpc.image_socket))
        for path in sockets:
            if not path.parent.is_dir():
                raise StartupError(f"socket {path}: directory {path.parent} does not exist")
            self._locks.append(LockFile(path.with_name(path.name + ".lock"), f"socket {path}"))
            prepare_socket_path(path)  # fail before any work if the path is not ours to take

        try:
            self._db = StateDB(root / "crisp.db")
        except StateError as e:
            raise StartupError(str(e)) from e

        metrics = create_metrics()
        if config.metrics.address:
            try:
                self._metrics_server = MetricsServer(metrics, config.metrics.address)
            except OSError as e:
                raise StartupError(
                    f"metrics.address {config.metrics.address}: cannot listen: {e.strerror}"
                ) from e

        userns = self._user_namespace_support(config)
        handlers = [
            RuntimeHandler(
                name=name,
                kind=h.kind,
                path=h.path,
                # The embedded runtime applies "rro" with mount_setattr (Linux 5.12+).
                recursive_read_only_mounts=h.kind == "embedded",
                user_namespaces=h.kind == "embedded" and userns,
            )
            for name, h in sorted(config.runtime.handlers.items())
        ]
        try:
            pod_network = open_pod_network(
                config.cni.conf_dir,
                config.cni.bin_dirs,
                config.cni.default_network,
                root,
                write_default=config.cni.write_default_network,
            )
        except OSError as e:
            raise StartupError(
                f"cni.conf_dir {config.cni.conf_dir}: cannot write the default network: "
                f"{e.strerror}"
            ) from e
        node = Node(
            handlers=handlers,
            default_handler=config.runtime.default_handler,
            cgroup_driver=config.cgroup.driver,
            settings=self._db,
            network_probe=pod_network.status,
        )
        self._node = node
        self._pods = self._open_pods(config, node, pod_network)
        images = self._open_images(config, self._db, self._layers_in_use)
        self._containers = self._open_containers(config, images, self._pods)
        try:
            self._streaming = StreamingServer(
                DomainBackend(self._containers, self._pods),
                config.streaming.address,
                tls_cert_file=config.streaming.tls_cert_file,
                tls_key_file=config.streaming.tls_key_file,
            )
        except (OSError, ValueError) as e:
            raise StartupError(f"streaming.address {config.streaming.address}: {e}") from e
        self._streaming.start()
        # The generated servicer bases declare every RPC abstract; the ones crisp does not
        # serve yet are answered UNIMPLEMENTED by the base class (see cri/interceptors.py).
        runtime_service = RuntimeService(  # type: ignore[abstract]
            node,
            VERSION,
            self._verbose_info,
            pods=self._pods,
            containers=self._containers,
            image_fs=str(Path(config.root_dir) / "containers"),
            streaming=self._streaming,
        )
        metrics.registry.register(ImagePullCollector(images.stats))
        metrics.registry.register(ContainerCollector(self._container_census))
        image_service = ImageService(images)
        self._servers.append(
            CriServer(
                Path(config.grpc.socket),
                config.grpc.socket_mode,
                config.grpc.max_message_bytes,
                metrics,
                runtime_service,
                image_service,
            )
        )
        if config.grpc.image_socket:
            self._servers.append(
                CriServer(
                    Path(config.grpc.image_socket),
                    config.grpc.socket_mode,
                    config.grpc.max_message_bytes,
                    metrics,
                    None,
                    image_service,
                )
            )
        for server in self._servers:
            server.start()
        log.info(
            "crisp %s serving on %s (metrics: %s)",
            VERSION,
            ", ".join(str(s.socket_path) for s in self._servers),
            self.metrics_address or "disabled",
        )

    def _user_namespace_support(self, config: Config) -> bool:
        """Whether the embedded runtime can run pods in user namespaces here (probed)."""
        if not any(h.kind == "embedded" for h in config.runtime.handlers.values()):
            return False
        problem = userns_support.problem(self.zygote, Path(config.root_dir) / "containers")
        if problem is not None:
            log.warning("pods with their own user namespace are not supported: %s", problem)
        return problem is None

    def _open_pods(self, config: Config, node: Node, network: NetworkManager) -> PodService:
        assert self._db is not None
        settings = PodSettings(
            pods_dir=Path(config.run_dir) / "pods",
            cgroup_driver=config.cgroup.driver,
            cgroup_parent=config.cgroup.parent,
            drop_infra=config.runtime.drop_infra,
        )
        pods = PodService(self._db, self.zygote, network, node, settings)
        pods.reconcile()
        return pods

    def _open_containers(
        self, config: Config, images: ImageManager, pods: PodService
    ) -> ContainerService:
        assert self._db is not None
        settings = ContainerSettings(
            containers_dir=Path(config.root_dir) / "containers",
            log_dir=Path(config.log_dir),
            cgroup_parent=config.cgroup.parent,
        )
        containers = ContainerService(
            self._db,
            self._runtimes(config),
            config.runtime.default_handler,
            images,
            pods,
            settings,
            pod_cgroups.managers(),
        )
        containers.reconcile()
        pods.attach_containers(containers)
        return containers

    def _runtimes(self, config: Config) -> dict[str, ContainerRuntime]:
        """One runtime per handler. All keep their containers' monitor state in one short
        directory (each monitor's socket lies below it, and sun_path holds 107 bytes)."""
        run = Path(config.run_dir)
        runtimes: dict[str, ContainerRuntime] = {}
        for name, handler in config.runtime.handlers.items():
            if handler.kind == "embedded":
                runtimes[name] = Runtime(
                    run / "c", self.zygote, max_log_size=config.containers.log_size_max
                )
            else:
                runtimes[name] = ExternalRuntime(
                    name,
                    Path(handler.path),
                    Path(handler.root) if handler.root else run / f"runtime-{name}",
                    run / "c",
                    self.zygote,
                    max_log_size=config.containers.log_size_max,
                )
        return runtimes

    def _container_census(self) -> list[ContainerCensus]:
        if self._containers is None:
            return []
        return [
            ContainerCensus(listed.observed.state, listed.observed.reason == OOM_KILLED)
            for listed in self._containers.list(ContainerFilter())
        ]

    def _layers_in_use(self) -> list[Digest]:
        """Image layers under containers' overlays: image garbage collection keeps them."""
        if self._containers is not None:
            layers = self._containers.layers_in_use()
        elif self._db is not None:
            layers = ContainerService.recorded_layers(self._db)
        else:
            layers = set()
        return [Digest.parse(layer) for layer in layers]

    @staticmethod
    def _open_images(
        config: Config, db: StateDB, layers_in_use: Callable[[], Iterable[Digest]]
    ) -> ImageManager:
        registries = {
            host: RegistryHost(
                mirrors=tuple(r.mirrors),
                insecure=r.insecure,
                ca_file=r.ca_file,
                username=r.username,
                password=r.password,
            )
            for host, r in config.registries.items()
        }
        try:
            images = ImageManager(
                Path(config.root_dir) / "images",
                db,
                registries=registries,
                client_options=ClientOptions(
                    progress_timeout=float(config.images.pull_progress_timeout)
                ),
                pull_options=PullOptions(
                    max_concurrent_downloads=config.images.max_concurrent_downloads
                ),
                layers_in_use=layers_in_use,
            )
        except InvalidRegistryConfig as e:
            raise StartupError(str(e)) from e
        temporaries, blobs, layers = images.recover()
        if temporaries or blobs or layers:
            log.info(
                "interrupted pulls left %d temporaries, %d blobs, %d layers: removed",
                temporaries,
                blobs,
                layers,
            )
        return images

    @property
    def metrics_address(self) -> str:
        return self._metrics_server.address if self._metrics_server else ""

    def _verbose_info(self) -> dict[str, object]:
        return {
            "config": redacted(dataclasses.asdict(self.config)),
            "endpoints": {
                "socket": self.config.grpc.socket,
                "imageSocket": self.config.grpc.image_socket,
                "metrics": self.metrics_address,
                "streaming": self._streaming.base_url if self._streaming else "",
            },
            "pid": os.getpid(),
            "podCIDR": self._node.pod_cidr() if self._node else "",
        }

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        self._stop.set()

    def wait(self) -> None:
        # With a timeout: a signal the kernel hands to another thread (gRPC's own threads
        # do not block signals) does not wake a main thread asleep in a plain wait, and its
        # Python handler runs only once the main thread runs again.
        while not self._stop.wait(_SIGNAL_POLL_SECONDS):
            pass

    def shutdown(self) -> None:
        for server in self._servers:
            server.stop(_SHUTDOWN_GRACE_SECONDS)
        self._servers.clear()
        if self._streaming is not None:
            self._streaming.close()
            self._streaming = None
        if self._containers is not None:
            self._containers.close()
            self._containers = None
        if self._pods is not None:
            self._pods.close()
            self._pods = None
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self._db is not None:
            self._db.close()
            self._db = None
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()
        self.zygote.close()


def serve(config: Config, zygote: Zygote) -> int:
    daemon = Daemon(config, zygote)
    # Handlers first: a signal during start-up must still lead to a clean shutdown.
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    daemon.start()
    # What start-up made lives as long as the daemon: out of the collector's sight, a full
    # collection (every few thousand calls under load) scans only what requests made.
    gc.freeze()
    try:
        daemon.wait()
    finally:
        daemon.shutdown()
    log.info("crisp stopped")
    return 0
