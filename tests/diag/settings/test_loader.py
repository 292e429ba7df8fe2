"""One loader and one locator for server and agent files: a bad line names the file, the
line and the field, whichever of the two reads it."""

from pathlib import Path

import pytest

from diag.agent.config import load as load_agent
from diag.settings.agent import AgentConfig
from diag.settings.loader import SERVER_ENV, load, load_model
from diag.settings.locator import ConfigError
from diag.settings.model import Collection, Config


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_server_and_agent_share_the_collection_settings():
    assert issubclass(Config, Collection) and issubclass(AgentConfig, Collection)
    shared = set(Collection.model_fields)
    assert {"interval", "facts_every", "paths", "network", "log_patterns", "app_groups"} <= shared
    # The same key has the same default on both sides, except where each keeps its data.
    for name in shared - {"data_dir"}:
        assert Config.model_fields[name].default == AgentConfig.model_fields[name].default, name
    assert (str(Config().data_dir), str(AgentConfig().data_dir)) == ("data", "agent-data")


def test_every_interval_the_scheduler_uses_is_a_setting():
    c = Config()
    assert (c.interval, c.facts_every, c.diagnose_every, c.store.maintain_every) == (10, 300, 300, 300)
    assert (c.alerting.deliver_every, c.alerting.expire_every, c.commands.tick_every) == (2, 3600, 1)


@pytest.mark.parametrize("name, text, line, field", [
    ("s.yaml", "port: 8081\nfacts_every: often\n", 2, "facts_every"),
    ("s.yaml", "alerting:\n  smtp:\n    port: 1\n  expire_every: 0s\n", 4, "alerting.expire_every"),
    ("s.toml", 'port = 8081\n\n[commands]\nworkers = 2\ntick_every = "never"\n', 5, "commands.tick_every"),
])
def test_a_bad_server_line_names_file_line_and_field(tmp_path, name, text, line, field):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as e:
        load(path, env={})
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)
    assert str(e.value).startswith(f"{path}:{line}: {field}: ")


@pytest.mark.parametrize("name, text, line, field", [
    ("a.yaml", "server: http://s:1\nfacts_every: often\n", 2, "facts_every"),
    ("a.yaml", "server: http://s:1\nnetwork:\n  bandwidth_caps:\n    public: {outbound: fast}\n", 4,
     "network.bandwidth_caps.public.outbound"),
    ("a.toml", 'server = "http://s:1"\n[paths]\nproc = "/p"\n\n[network.interface_scopes]\neth0 = "galaxy"\n', 6,
     "network.interface_scopes.eth0"),
])
def test_a_bad_agent_line_names_file_line_and_field(tmp_path, name, text, line, field):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as e:
        load_agent(path, env={})
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)


def test_bounds_read_the_same_on_both_sides(tmp_path):
    for loader, head in ((load, ""), (load_agent, "server: http://s:1\n")):
        with pytest.raises(ConfigError) as e:
            loader(write(tmp_path, "b.yaml", head + "top_apps: 51\n"), env={})
        assert e.value.message == "must be at most 50"


def test_an_agent_file_takes_the_server_s_sections_and_its_old_top_level_keys(tmp_path):
    new = load_agent(write(tmp_path, "new.yaml", "server: http://s:1\npaths: {proc: /host/proc}\n"
                                                 "network:\n  bandwidth_caps: {public: {inbound: 100Mbit}}\n"), env={})
    old = load_agent(write(tmp_path, "old.yaml", "server: http://s:1\nproc: /host/proc\n"
                                                 "bandwidth_caps: {public: {inbound: 100Mbit}}\n"), env={})
    for cfg in (new, old):
        assert cfg.roots.proc == Path("/host/proc")
        assert cfg.collector_settings().bandwidth_caps["public"].inbound == 100e6


def test_the_environment_overrides_the_server_file_and_a_flag_both(tmp_path):
    path = write(tmp_path, "s.yaml", "port: 8081\ninterval: 30s\n")
    c = load_model(Config, path, {"DIAG_PORT": "9000", "DIAG_INTERVAL": "20s"}, SERVER_ENV, {"interval": "5s"})
    assert (c.port, c.interval) == (9000, 5)


def test_a_bad_flag_names_its_field_and_no_line_of_the_file(tmp_path):
    path = write(tmp_path, "s.yaml", "port: 8081\n")
    with pytest.raises(ConfigError) as e:
        load(path, env={}, port="eighty")
    assert (e.value.path, e.value.line, e.value.field) == (None, None, "port")
