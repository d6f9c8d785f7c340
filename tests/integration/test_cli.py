"""The `crisp` command's non-daemon subcommands, run as a user would run them."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from tests.crisp_daemon import DaemonPaths, RunningDaemon, crisp_command, write_config


def run_crisp(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(crisp_command(*args), capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    result = run_crisp("version")
    assert result.returncode == 0
    assert result.stdout == "crisp 0.1.0\n"


def test_config_prints_the_effective_configuration(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths, 'log_level = "warning"\n[grpc]\nmax_message_bytes = 33554432\n')
    (daemon_paths.config_dir / "90-late.toml").write_text('[cgroup]\nparent = "/late"\n')
    result = run_crisp(
        "config",
        "--config", str(daemon_paths.config_file),
        "--config-dir", str(daemon_paths.config_dir),
        "--root", "/srv/crisp",
        "--cni-bin-dir", "/a", "--cni-bin-dir", "/b",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["log_level"] == "warning"
    assert effective["grpc"]["max_message_bytes"] == 33554432
    assert effective["cgroup"]["parent"] == "/late"
    assert effective["root_dir"] == "/srv/crisp"
    assert effective["cni"]["bin_dirs"] == ["/a", "/b"]
    assert effective["grpc"]["socket"] == "/run/crisp/crisp.sock"


def test_config_reference_matches_the_readme() -> None:
    result = run_crisp("config", "--config-dir", "/nonexistent", "--reference")
    assert result.returncode == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert result.stdout in readme


def test_bad_config_is_one_line_for_every_subcommand(daemon_paths: DaemonPaths) -> None:
    write_config(daemon_paths, "bogus = 1\n")
    for command in ("config", "status", "check", "wipe", "serve"):
        result = run_crisp(
            command,
            "--config", str(daemon_paths.config_file),
            "--config-dir", str(daemon_paths.config_dir),
        )  # fmt: skip
        assert result.returncode == 1, command
        assert result.stderr.count("\n") == 1, result.stderr
        assert "unknown key 'bogus'" in result.stderr


def test_status_against_a_running_daemon(crisp: RunningDaemon) -> None:
    result = run_crisp("status", "--socket", str(crisp.paths.socket), "--config-dir", "/none")
    assert result.returncode == 0, result.stderr
    assert "crisp 0.1.0 (CRI v1)" in result.stdout
    assert "RuntimeReady: true" in result.stdout
    assert re.search(r"^objects: +0 pods, (0|n/a) containers, 0 images$", result.stdout, re.M)
    as_json = run_crisp(
        "status", "--json", "--socket", str(crisp.paths.socket), "--config-dir", "/none"
    )
    answer = json.loads(as_json.stdout)
    assert answer["runtimeName"] == "crisp"
    assert {c["type"] for c in answer["conditions"]} == {"RuntimeReady", "NetworkReady"}
    assert answer["counts"]["pods"] == 0 and answer["counts"]["images"] == 0


def test_status_without_a_daemon_fails_clearly(tmp_path: Path) -> None:
    socket = tmp_path / "none.sock"
    result = run_crisp("status", "--timeout", "1", "--socket", str(socket), "--config-dir", "/none")
    assert result.returncode == 1
    assert f"cannot reach the daemon at {socket}" in result.stderr
