from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from cni.errors import InvalidResultError
from cni.result import DNS, Interface, IPConfig, Result, Route, parse_result

ResultDoc = Callable[..., dict[str, Any]]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_parse_each_version(version: str, result_doc: ResultDoc) -> None:
    res = parse_result(result_doc(version=version))
    assert res.cni_version == version
    assert res.interfaces[1] == Interface("eth0", "aa:bb:cc:dd:ee:01", "/var/run/netns/x")
    assert res.ips == [
        IPConfig(ipaddress.ip_interface("10.88.0.5/24"), ipaddress.ip_address("10.88.0.1"), 1)
    ]
    assert res.routes == [
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.88.0.1"))
    ]
    assert res.dns == DNS(nameservers=["10.96.0.10"])


def test_legacy_to_current_and_back(result_doc: ResultDoc) -> None:
    legacy = result_doc(version="0.3.1")
    res = parse_result(legacy)
    current = res.to_dict("1.0.0")
    assert current["cniVersion"] == "1.0.0"
    assert "version" not in current["ips"][0]
    again = res.to_dict("0.4.0")
    assert again["ips"][0]["version"] == "4"
    assert parse_result(again).ips == res.ips


def test_ipv6_legacy_version_field() -> None:
    doc = {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "fd00::5/64"}]}
    res = parse_result(doc)
    assert res.to_dict("0.3.1")["ips"] == [{"version": "6", "address": "fd00::5/64"}]
    assert res.to_dict("1.0.0")["ips"] == [{"address": "fd00::5/64"}]


def test_v110_fields_round_trip_and_are_dropped_for_older() -> None:
    doc = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mtu": 1400, "socketPath": "/s", "pciID": "0000:01"}],
        "ips": [{"address": "10.0.0.2/24", "interface": 0}],
        "routes": [{"dst": "10.1.0.0/16", "mtu": 1300, "advmss": 1200, "table": 5, "scope": 0}],
    }
    res = parse_result(doc)
    assert res.interfaces[0].mtu == 1400 and res.routes[0].table == 5
    assert res.to_dict() == doc
    old = res.to_dict("1.0.0")
    assert old["interfaces"] == [{"name": "eth0"}]
    assert old["routes"] == [{"dst": "10.1.0.0/16"}]


def test_ips_of_pod_interface(result_doc: ResultDoc) -> None:
    doc = result_doc()
    doc["ips"].append({"address": "fd00::5/64", "interface": 1})
    doc["ips"].append({"address": "192.168.0.9/24", "interface": 0})  # host side
    res = parse_result(doc)
    assert [str(ip.address) for ip in res.ips_of("eth0")] == ["10.88.0.5/24", "fd00::5/64"]


def test_ips_without_interfaces_belong_to_pod() -> None:
    res = parse_result({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]})
    assert [str(ip.address.ip) for ip in res.ips_of("eth0")] == ["10.0.0.2"]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "not a JSON object"),
        ({"ips": []}, "unsupported cniVersion None"),
        ({"cniVersion": "0.2.0", "ip4": {}}, "unsupported cniVersion '0.2.0'"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}, "malformed"),
        ({"cniVersion": "1.0.0", "ips": [{}]}, "malformed"),
        ({"cniVersion": "1.0.0", "ips": {}}, "not a list"),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": 2}]},
            "interface 2",
        ),
        ({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/8"}]}, "declares"),
        ({"cniVersion": "1.0.0", "dns": {"nameservers": "1.1.1.1"}}, "list of strings"),
    ],
)
def test_invalid_results(doc: Any, reason: str) -> None:
    with pytest.raises(InvalidResultError) as info:
        parse_result(doc, "CNI plugin bridge")
    assert reason in str(info.value)
    assert "CNI plugin bridge" in str(info.value)


def test_encode_to_unsupported_version() -> None:
    with pytest.raises(InvalidResultError):
        Result("1.0.0").to_dict("0.2.0")
