"""Capability names, OCI parsing, and applying a set to a real child process."""

from __future__ import annotations

import json
import textwrap

import pytest

from runtime import capabilities
from runtime.capabilities import CapabilitySet, UnknownCapabilityError
from tests.runtime.processes import needs_root, run_python


def test_names_and_numbers_are_a_bijection_up_to_checkpoint_restore() -> None:
    assert capabilities.number("CAP_CHOWN") == 0
    assert capabilities.number("CAP_SYS_ADMIN") == 21
    assert capabilities.number("CAP_CHECKPOINT_RESTORE") == 40
    assert sorted(capabilities.CAPABILITIES.values()) == list(range(41))
    assert all(capabilities.NAMES[n] == name for name, n in capabilities.CAPABILITIES.items())


def test_last_cap_is_read_from_the_kernel() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert capabilities.last_cap() == int(f.read())


def test_unknown_names_are_listed_in_the_error() -> None:
    with pytest.raises(UnknownCapabilityError, match="CAP_FOO, chown") as info:
        capabilities.to_mask(["CAP_CHOWN", "chown", "CAP_FOO"], "process.capabilities.bounding")
    assert "process.capabilities.bounding" in str(info.value)
    with pytest.raises(UnknownCapabilityError):
        capabilities.number("CAP_chown")


def test_mask_round_trip() -> None:
    mask = capabilities.to_mask(["CAP_KILL", "CAP_NET_RAW", "CAP_KILL"])
    assert mask == (1 << 5) | (1 << 13)
    assert capabilities.to_names(mask) == ["CAP_KILL", "CAP_NET_RAW"]
    assert capabilities.to_names(1 << 63) == ["CAP_63"]


def test_from_oci_treats_missing_lists_as_empty_and_checks_types() -> None:
    caps = CapabilitySet.from_oci({"bounding": ["CAP_CHOWN"], "effective": None})
    assert caps == CapabilitySet(bounding=1)
    with pytest.raises(ValueError, match=r"capabilities\.ambient must be a list"):
        CapabilitySet.from_oci({"ambient": "CAP_CHOWN"})
    with pytest.raises(UnknownCapabilityError, match="permitted"):
        CapabilitySet.from_oci({"permitted": ["CAP_NOPE"]})


def test_current_reflects_this_process() -> None:
    now = capabilities.current()
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    assert now.bounding == int(status["CapBnd"], 16)
    assert now.effective == int(status["CapEff"], 16)
    assert now.ambient == int(status["CapAmb"], 16)


DEFAULT_CONTAINER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_KILL",
]


@needs_root
def test_apply_sets_every_set_in_a_child() -> None:
    spec = {
        "bounding": DEFAULT_CONTAINER_CAPS,
        "effective": DEFAULT_CONTAINER_CAPS,
        "permitted": DEFAULT_CONTAINER_CAPS,
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    }
    code = f"""
        import json
        from runtime import capabilities
        caps = capabilities.CapabilitySet.from_oci(json.loads({json.dumps(spec)!r}))
        capabilities.apply(caps)
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status") if ":\\t" in l)
        print(json.dumps({{k: int(status[k], 16) for k in
                          ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")}}))
    """
    result = run_python(textwrap.dedent(code))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    full = capabilities.to_mask(DEFAULT_CONTAINER_CAPS)
    assert seen["CapBnd"] == full
    assert seen["CapEff"] == full
    assert seen["CapPrm"] == full
    assert seen["CapInh"] == capabilities.to_mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert seen["CapAmb"] == capabilities.to_mask(["CAP_NET_BIND_SERVICE"])


@needs_root
def test_ambient_without_inheritable_fails_with_eperm() -> None:
    code = """
        from runtime import capabilities
        caps = capabilities.CapabilitySet.from_oci(
            {"bounding": ["CAP_KILL", "CAP_SETPCAP"], "effective": ["CAP_KILL"],
             "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]})
        try:
            capabilities.apply(caps)
        except PermissionError as exc:
            print(exc)
    """
    result = run_python(textwrap.dedent(code))
    assert result.returncode == 0, result.stderr
    assert "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 5)" in result.stdout
