from __future__ import annotations

from pathlib import Path

import pytest

from cri.config import (
    Config,
    ConfigError,
    ConfigSources,
    load,
    parse_override,
    reference_markdown,
    to_toml,
)


def sources(
    tmp_path: Path,
    main: str | None = None,
    drop_ins: dict[str, str] | None = None,
    overrides: tuple[tuple[str, dict[str, object]], ...] = (),
) -> ConfigSources:
    file = tmp_path / "crisp.toml"
    if main is not None:
        file.write_text(main)
    drop_in_dir = tmp_path / "crisp.d"
    drop_in_dir.mkdir(exist_ok=True)
    for name, text in (drop_ins or {}).items():
        (drop_in_dir / name).write_text(text)
    return ConfigSources(file=file, drop_in_dir=drop_in_dir, overrides=overrides)


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config = load(sources(tmp_path))
    assert config == Config()
    assert config.grpc.socket == "/run/crisp/crisp.sock"
    assert config.root_dir == "/var/lib/crisp"
    assert config.grpc.max_message_bytes >= 16 * 1024 * 1024


def test_file_then_sorted_drop_ins_then_flags(tmp_path: Path) -> None:
    config = load(
        sources(
            tmp_path,
            main='root_dir = "/a"\nlog_level = "debug"\n[grpc]\nsocket = "/s/main.sock"\n',
            drop_ins={
                "20-late.toml": 'root_dir = "/c"\n',
                "10-early.toml": 'root_dir = "/b"\n[cni]\nbin_dirs = ["/x"]\n',
                "ignored.conf": 'root_dir = "/never"\n',
            },
            overrides=(("flag --socket", {"grpc": {"socket": "/s/flag.sock"}}),),
        )
    )
    assert config.root_dir == "/c"  # later drop-in wins
    assert config.log_level == "debug"  # untouched by drop-ins
    assert config.cni.bin_dirs == ["/x"]
    assert config.grpc.socket == "/s/flag.sock"  # flags override files
    assert config.grpc.max_message_bytes == 16 * 1024 * 1024  # defaults fill the rest


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(sources(tmp_path, main="[grpc]\nsockt = '/x'\n"))
    message = str(err.value)
    assert str(tmp_path / "crisp.toml") in message
    assert "unknown key 'grpc.sockt'" in message


def test_wrong_type_names_file_key_and_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(sources(tmp_path, drop_ins={"50.toml": "[grpc]\nmax_message_bytes = 'big'\n"}))
    message = str(err.value)
    assert "50.toml" in message
    assert "'grpc.max_message_bytes'" in message
    assert "expected integer, got str" in message


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected integer, got bool"):
        load(sources(tmp_path, main="[grpc]\nmax_message_bytes = true\n"))


def test_enumerated_value_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cgroup.driver.*one of 'cgroupfs', 'systemd'"):
        load(sources(tmp_path, main="[cgroup]\ndriver = 'upstart'\n"))


def test_table_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'grpc': expected a table"):
        load(sources(tmp_path, main="grpc = 3\n"))


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"crisp.toml: invalid TOML"):
        load(sources(tmp_path, main="root_dir = \n"))


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    missing = ConfigSources(file=tmp_path / "nope.toml", drop_in_dir=tmp_path, file_required=True)
    with pytest.raises(ConfigError, match=r"nope.toml: cannot read"):
        load(missing)


def test_relative_path_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"root_dir.*absolute"):
        load(sources(tmp_path, main='root_dir = "var/lib"\n'))


def test_message_limit_floor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"at least 16777216"):
        load(sources(tmp_path, main="[grpc]\nmax_message_bytes = 1024\n"))


def test_log_size_max_is_unlimited_or_at_least_8192(tmp_path: Path) -> None:
    assert load(sources(tmp_path)).containers.log_size_max == -1
    config = load(sources(tmp_path, main="[containers]\nlog_size_max = 8192\n"))
    assert config.containers.log_size_max == 8192
    for value in (0, 100, -2):
        with pytest.raises(ConfigError, match=r"containers.log_size_max.*at least 8192"):
            load(sources(tmp_path, main=f"[containers]\nlog_size_max = {value}\n"))


def test_handlers_merge_and_validate(tmp_path: Path) -> None:
    config = load(
        sources(tmp_path, main='[runtime.handlers.runc]\nkind = "oci"\npath = "/usr/bin/runc"\n')
    )
    assert set(config.runtime.handlers) == {"crisp", "runc"}
    assert config.runtime.handlers["runc"].path == "/usr/bin/runc"
    with pytest.raises(ConfigError, match=r"runtime.handlers.crun.path"):
        load(sources(tmp_path, main='[runtime.handlers.crun]\nkind = "oci"\n'))
    with pytest.raises(ConfigError, match=r"default_handler.*'nope'"):
        load(sources(tmp_path, main='[runtime]\ndefault_handler = "nope"\n'))


def test_address_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metrics.address.*host:port"):
        load(sources(tmp_path, main='[metrics]\naddress = "9537"\n'))
    assert load(sources(tmp_path, main='[metrics]\naddress = ""\n')).metrics.address == ""


def test_set_override_parses_toml_values() -> None:
    assert parse_override("grpc.max_message_bytes=33554432") == {
        "grpc": {"max_message_bytes": 33554432}
    }
    assert parse_override("runtime.drop_infra=true") == {"runtime": {"drop_infra": True}}
    assert parse_override("root_dir=/srv/crisp") == {"root_dir": "/srv/crisp"}
    with pytest.raises(ConfigError, match=r"KEY=VALUE"):
        parse_override("root_dir")


def test_printed_toml_loads_back_to_the_same_config(tmp_path: Path) -> None:
    original = load(
        sources(tmp_path, main='log_level = "warning"\n[runtime.handlers.runc]\npath = "/r"\n')
    )
    again = tmp_path / "again"
    again.mkdir()
    assert load(sources(again, main=to_toml(original))) == original


def test_reference_lists_every_leaf_key() -> None:
    table = reference_markdown()
    for key in (
        "root_dir",
        "grpc.socket",
        "grpc.image_socket",
        "cni.bin_dirs",
        "cgroup.parent",
        "streaming.address",
        "metrics.address",
        "runtime.handlers.NAME.path",
    ):
        assert f"| `{key}` |" in table


def test_set_override_with_quoted_dotted_host() -> None:
    assert parse_override('registries."my.registry:5000".insecure=true') == {
        "registries": {"my.registry:5000": {"insecure": True}}
    }
    with pytest.raises(ConfigError, match="not a valid TOML key"):
        parse_override("a..b=1")


def test_redacted_hides_secrets_only() -> None:
    from cri.config import redacted

    data = {"registries": {"r": {"username": "u", "password": "p"}}, "root_dir": "/x"}
    assert redacted(data) == {
        "registries": {"r": {"username": "u", "password": "<redacted>"}},
        "root_dir": "/x",
    }
