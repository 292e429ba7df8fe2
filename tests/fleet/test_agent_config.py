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
    assert (got.server, got.interval, got.labels, got.paths.proc) == ("http://file:8080", 20.0, {"role": "db"},
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
    ("a.yaml", "server: http://s:1\ntop_containers: 51\n", ":2: top_containers: must be at most 50"),
    ("a.yaml", "server: http://s:1\ncontainers_over_percent: 0\n", ":2: containers_over_percent: must be more than 0"),
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


# The server's own cases (tests/collectors/test_log_files.py), refused the same way here.
@pytest.mark.parametrize("name, text, want", [
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  NfsTimeout:\n    source: /var/log/syslog\n"
               "    pattern: 'nfs: server (?P<server>\\S+ not responding'\n",
     ":5: log_patterns.NfsTimeout.pattern: regex does not compile: missing ), unterminated subpattern at position 12"),
    ("a.toml", 'server = "http://s:1"\n\n[log_patterns.Ok]\npattern = "fine"\n\n[log_patterns.NfsTimeout]\n'
               "level = \"WARN\"\nclear = '('\ntype = \"permanent\"\npattern = 'x'\n",
     ":8: log_patterns.NfsTimeout.clear: regex does not compile"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    pattern: x\n    source: var/log/syslog\n",
     ":5: log_patterns.Bad.source: \"kernel\", \"journal\" or an absolute path"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    pattern: x\n    level: ERROR\n",
     ":5: log_patterns.Bad.level: Input should be 'CRITICAL' or 'WARN' or 'INFO'"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    pattern: x\n    clear: y\n",
     ":5: log_patterns.Bad.clear: clear ends a condition: only a permanent rule has one"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    pattern: '(?P<type>x)'\n",
     ":4: log_patterns.Bad.pattern: group name 'type' is a label the service sets itself"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  bad-name:\n    pattern: x\n", ":3: log_patterns.bad-name: "),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    pattern: x\n    colour: red\n",
     ":5: log_patterns.Bad.colour: unknown setting"),
    ("a.yaml", "server: http://s:1\nlog_patterns:\n  Bad:\n    source: journal\n", ":3: log_patterns.Bad.pattern: "),
])
def test_a_bad_log_pattern_names_file_line_and_field(tmp_path, name, text, want):
    path = write(tmp_path, name, text)
    with pytest.raises(AgentConfigError) as e:
        load(path, env={})
    assert str(e.value).startswith(path + want), str(e.value)


def test_the_server_refuses_what_the_agent_refuses(tmp_path):
    """One set of checks: each bad rule above is refused by the server's config too."""
    from diag.config import ConfigError, load as server_load

    for body in ("  Bad:\n    pattern: '(x'\n", "  Bad:\n    pattern: x\n    level: ERROR\n",
                 "  Bad:\n    pattern: x\n    clear: y\n", "  bad-name:\n    pattern: x\n"):
        agent_file = write(tmp_path, "agent.yaml", "server: http://s:1\nlog_patterns:\n" + body)
        server_file = write(tmp_path, "serve.yaml", "log_patterns:\n" + body)
        with pytest.raises(AgentConfigError):
            load(agent_file, env={})
        with pytest.raises(ConfigError):
            server_load(server_file, env={})


def test_good_log_patterns_become_the_collectors_rules(tmp_path):
    path = write(tmp_path, "a.yaml", "server: http://s:1\nlog_patterns:\n  AppCrash:\n    source: /var/log/app.log\n"
                                     "    pattern: 'panic: (?P<what>\\w+)'\n    level: CRITICAL\n"
                                     "  NfsDown:\n    pattern: 'nfs: server \\S+ not responding'\n"
                                     "    type: permanent\n    clear: 'nfs: server \\S+ OK'\n")
    rules = {r.name: r for r in load(path, env={}).collector_settings().log_rules}
    assert set(rules) == {"AppCrash", "NfsDown"}
    crash, nfs = rules["AppCrash"], rules["NfsDown"]
    assert (crash.source, crash.level, crash.permanent, crash.event) == ("/var/log/app.log", "CRITICAL", False,
                                                                         "Custom.AppCrash")
    assert crash.regex.search("panic: boom").group("what") == "boom"
    assert (nfs.source, nfs.level, nfs.permanent) == ("kernel", "WARN", True)
    assert nfs.clear is not None and nfs.clear.search("nfs: server filer OK")


def test_container_bounds_reach_the_collectors(tmp_path):
    path = write(tmp_path, "a.yaml", "server: http://s:1\ntop_containers: 12\ncontainers_over_percent: 65\n")
    settings = load(path, env={}).collector_settings()
    assert (settings.top_containers, settings.containers_over_percent) == (12, 65.0)
    defaults = load(write(tmp_path, "b.yaml", "server: http://s:1\n"), env={}).collector_settings()
    assert (defaults.top_containers, defaults.containers_over_percent) == (5, 80.0)
