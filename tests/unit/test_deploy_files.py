"""The deploy/ files must agree with crisp's embedded defaults, since operators use them as is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cri.config import Config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def test_kubelet_configuration_points_at_the_default_socket_and_driver() -> None:
    (kubelet,) = _documents("kubelet-config.yaml")
    defaults = Config()
    assert kubelet["kind"] == "KubeletConfiguration"
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{defaults.grpc.socket}"
    assert kubelet["imageServiceEndpoint"] == f"unix://{defaults.grpc.socket}"
    assert kubelet["cgroupDriver"] == defaults.cgroup.driver


def test_kubeadm_configurations_use_the_default_socket() -> None:
    socket = f"unix://{Config().grpc.socket}"
    for name, kind in (
        ("kubeadm-init.yaml", "InitConfiguration"),
        ("kubeadm-join.yaml", "JoinConfiguration"),
    ):
        documents = {d["kind"]: d for d in _documents(name)}
        assert documents[kind]["nodeRegistration"]["criSocket"] == socket


def test_runtime_classes_include_the_default_handler() -> None:
    handlers = {d["handler"] for d in _documents("runtimeclasses.yaml")}
    assert Config().runtime.default_handler in handlers


def test_default_cni_network_is_a_valid_conflist() -> None:
    from cni.config import parse_conflist
    from sandbox.network import default_network

    network = parse_conflist(json.dumps(default_network()).encode(), "default")
    assert network.name == "crisp"
    assert [p.type for p in network.plugins] == ["bridge", "portmap", "firewall", "tuning"]
    assert network.cni_version == "1.0.0"


def test_systemd_unit_keeps_containers_across_restarts() -> None:
    unit = (DEPLOY / "crisp.service").read_text().splitlines()
    assert "KillMode=process" in unit
    assert "Delegate=yes" in unit
    assert "Before=kubelet.service" in unit


def test_prometheus_scrape_job_targets_the_default_metrics_address() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-scrape.yaml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "crisp"
    assert job["static_configs"][0]["targets"] == [Config().metrics.address]


def test_install_scripts_document_their_environment() -> None:
    for name in ("install.sh", "uninstall.sh"):
        script = (DEPLOY / name).read_text()
        assert script.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in script
        assert "CRISP_PREFIX" in script.split("set -euo pipefail")[0], name
    assert "CRISP_SKIP_APT=1" in (DEPLOY / "install.sh").read_text().split("set -euo")[0]
    assert "CRISP_ENABLE_KSM=0" in (DEPLOY / "install.sh").read_text().split("set -euo")[0]
