"""The agent's config: file, environment, then flags; a bad setting names the file, its
line and the setting, and the agent does not start."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.agent.config import AgentConfigError, load


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_file_env_and_flags_in_that_order(tmp_path):
    cfg = write(tmp_path, "a.yaml", "server: http://file:8080\ninterval: 30s\nlabels: {role: db}\n"
                                    "paths:\n  proc: /host/proc\n")
    got = load(cfg, env={"DIAG_INTERVAL": "5s", "DIAG_SERVER": "http://env:1"}, interval="20s")
    assert (got.server, got.interval, got.labels, got.proc) == ("http://file:8080", 20.0, {"role": "db"},
                                                                Path("/host/proc"))


@pytest.mark.parametrize("name, text, want", [
    ("a.yaml", "server: http://s:1\nlabels: {a: b}\ninterval: soon\n", ":3: interval: "),
    ("a.yaml", "server: http://s:1\n\nbuffer_batches: 0\n", ":3: buffer_batches: must be at least 1"),
    ("a.yaml", "server: http://s:1\ncolour: blue\n", ":2: unknown setting 'colour'"),
    ("a.yaml", "server: http://s:1\npaths:\n  proc: /p\n  sys: 3\n  bogus: /x\n", ":5: unknown setting 'bogus'"),
    ("a.yaml", "server: http://s:1\nlabels:\n  role: [db]\n", ":2: labels: must be a mapping of strings"),
    ("a.yaml", "server: http://s:1\nbandwidth_caps:\n  public: {inbound: fast}\n", ":2: bandwidth_caps: "),
    ("a.toml", 'server = "http://s:1"\ninterval = "10s"\ntop_processes = -1\n', ":3: top_processes: "),
    ("a.toml", 'server = "http://s:1"\n[paths]\nnope = "/x"\n', ":3: unknown setting 'nope'"),
])
def test_a_bad_setting_names_file_line_and_setting(tmp_path, name, text, want):
    path = write(tmp_path, name, text)
    with pytest.raises(AgentConfigError) as e:
        load(path, env={})
    assert str(e.value).startswith(path + want)


def test_a_bad_flag_names_the_setting_without_a_file_line(tmp_path):
    path = write(tmp_path, "a.yaml", "server: http://s:1\n")
    with pytest.raises(AgentConfigError) as e:
        load(path, env={}, interval="never")
    assert str(e.value).startswith("interval: ")


def test_the_server_is_required():
    with pytest.raises(AgentConfigError, match="server"):
        load(None, env={})
