from pathlib import Path

import pytest

from diag.config import ConfigError, check_listen, instance_id_from, load


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_are_the_documented_ones():
    c = load(env={})
    assert (c.host, c.port, c.interval, str(c.data_dir)) == ("127.0.0.1", 8080, 10, "data")
    assert c.store.retention.raw == 48 * 3600 and c.store.retention.d1 == 180 * 86400


def test_yaml_file_then_env_then_flags(tmp_path):
    f = write(tmp_path, "c.yaml", "port: 8081\ninterval: 30s\nnetwork:\n  bandwidth_caps:\n    public: {inbound: 100Mbit}\n")
    c = load(f, env={"DIAG_PORT": "9000"}, interval="5s")
    assert c.port == 9000 and c.interval == 5
    assert c.collector_settings().bandwidth_caps["public"].inbound == 100e6


def test_toml_file(tmp_path):
    f = write(tmp_path, "c.toml", 'port = 8082\n[store]\nsize_cap = "1GiB"\n')
    c = load(f, env={})
    assert c.port == 8082 and c.store.size_cap == 2**30


def test_bad_yaml_value_names_file_line_and_field(tmp_path):
    f = write(tmp_path, "c.yaml", "port: 8081\nnetwork:\n  bandwidth_caps:\n    public:\n      outbound: fast\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 5, "network.bandwidth_caps.public.outbound")
    assert str(e.value).startswith(f"{f}:5: network.bandwidth_caps.public.outbound: not a bit rate")


def test_bad_toml_value_names_its_line(tmp_path):
    f = write(tmp_path, "c.toml", 'port = 8081\n\n[store.retention]\nraw = "soon"\n')
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 4, "store.retention.raw")
    assert str(e.value).startswith(f"{f}:4: store.retention.raw: ")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    # Python 3.11's TOMLDecodeError has no lineno: the position is in its text only.
    f = write(tmp_path, "c.toml", 'port = 8081\n\n[store]\nhead_span = \n')
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line) == (str(f), 4)
    assert e.value.message == "Invalid value (column 13)"
    assert str(e.value) == f"{f}:4: Invalid value (column 13)"


def test_toml_error_at_end_of_document_names_the_last_line(tmp_path):
    f = write(tmp_path, "c.toml", 'port = 8081\nservice_ports = [22,\n')
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.message) == (str(f), 2, "Invalid value")


def test_unknown_setting_is_refused(tmp_path):
    f = write(tmp_path, "c.yaml", "port: 8081\nintervl: 5s\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.line, e.value.field, e.value.message) == (2, "intervl", "unknown setting")


def test_syntax_error_names_its_line(tmp_path):
    f = write(tmp_path, "c.yaml", "port: 8081\nnetwork: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert e.value.path == str(f) and e.value.line is not None and e.value.line >= 2


def test_bad_env_value_names_the_field():
    with pytest.raises(ConfigError) as e:
        load(env={"DIAG_PORT": "eighty"})
    assert e.value.field == "port"


def test_non_loopback_needs_a_token():
    with pytest.raises(ConfigError, match="without a token"):
        check_listen(load(env={}, host="0.0.0.0"))
    check_listen(load(env={"DIAG_TOKEN": "s3cret"}, host="0.0.0.0"))
    check_listen(load(env={}, host="127.0.0.1"))


def test_instance_id_is_stable_and_hides_the_machine_id(tmp_path):
    (tmp_path / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    a, b = instance_id_from(tmp_path), instance_id_from(tmp_path)
    assert a == b and a.startswith("i-") and "0123456789abcdef" not in a


def test_check_thresholds_can_be_overridden_and_typos_are_refused(tmp_path):
    c = load(write(tmp_path, "ok.yaml", "checks:\n  storage.disk_usage: {warning: 85}\n"), env={})
    assert c.checks == {"storage.disk_usage": {"warning": 85}}
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, "bad.yaml", "checks:\n  storage.disk_usage: {warnig: 85}\n"), env={})
    assert e.value.line == 2 and "has no threshold 'warnig'" in e.value.message
    with pytest.raises(ConfigError, match="unknown check 'storage.nope'"):
        load(write(tmp_path, "bad2.yaml", "checks:\n  storage.nope: {warning: 85}\n"), env={})
