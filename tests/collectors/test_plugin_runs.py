"""Nagios plugin output and exit codes (collectors/plugins.py), with real processes."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from collectors import plugins
from collectors.plugins import PluginSpec, metric_name, parse_output, parse_perfdata


@pytest.fixture
def plugin_dir():
    # pytest's tmp_path is 0700 under root's: a plugin run as nobody could not read its script there.
    d = Path(tempfile.mkdtemp(prefix="diag-plugins-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def script(d: Path, name: str, body: str) -> str:
    path = d / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def processes_with(tag: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if tag.encode() in cmdline:
                found.append(int(entry.name))
    return found


# -- output and perfdata -------------------------------------------------------------------------

def test_first_line_is_the_message_and_perfdata_follows_the_bar():
    msg, long_lines, perf = parse_output("DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968\n")
    assert msg == "DISK OK - free space: / 3326 MB (56%)"
    assert long_lines == []
    [p] = perf
    assert (p.label, p.value, p.unit, p.kind) == ("/", 2643 * 1024 ** 2, "bytes", "gauge")
    assert (p.warn, p.crit, p.min, p.max) == ("5948", "5958", 0.0, 5968 * 1024 ** 2)


def test_long_output_and_perfdata_over_several_lines():
    # The guidelines' own example shape: text | perf, long text, long text | perf, perf lines.
    text = ("DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
            "/ 15272 MB (77%);\n"
            "/boot 68 MB (69%);\n"
            "/home 69357 MB (27%);\n"
            "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
            "/home=69357MB;253404;253409;0;253414 \n"
            "/var/log=818MB;970;975;0;980\n")
    msg, long_lines, perf = parse_output(text)
    assert msg == "DISK OK - free space: / 3326 MB (56%);"
    assert long_lines == ["/ 15272 MB (77%);", "/boot 68 MB (69%);", "/home 69357 MB (27%);", "/var/log 819 MB (84%);"]
    assert [p.label for p in perf] == ["/", "/boot", "/home", "/var/log"]
    assert perf[-1].value == 818 * 1024 ** 2


def test_units_quoted_labels_and_bad_items():
    perf = parse_perfdata("time=0.012s;1;2 'load 1''m'=0.5;; rta=12.5ms pl=0% hits=1234c x=U junk "
                          "bad=abc;1 used=2KB big=1e3B")
    got = {p.label: (p.value, p.unit, p.kind) for p in perf}
    assert got == {"time": (0.012, "s", "gauge"), "load 1'm": (0.5, "", "gauge"), "rta": (0.0125, "s", "gauge"),
                   "pl": (0.0, "percent", "gauge"), "hits": (1234.0, "count", "counter"),
                   "used": (2048.0, "bytes", "gauge"), "big": (1000.0, "bytes", "gauge")}


def test_metric_names_are_sanitized():
    assert metric_name("disk", "/var/log") == "plugin_disk_var_log"
    assert metric_name("ping", "load 1'm") == "plugin_ping_load_1_m"
    assert metric_name("x", "///") == "plugin_x_value"


def test_a_samples_per_label_named_by_plugin():
    run = plugins.PluginRun("web", "ok", "fine", 0, 100.0, 0.5, "nobody",
                            perfdata=parse_perfdata("time=0.2s size=3KB"))
    assert [(s.metric, s.value, s.ts) for s in plugins.samples(run)] == [
        ("plugin_web_time", 0.2, 100.5), ("plugin_web_size", 3072.0, 100.5)]


# -- real runs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code,status", [(0, "ok"), (1, "warning"), (2, "critical"), (3, "unknown"),
                                         (4, "unknown"), (127, "unknown")])
def test_exit_codes(plugin_dir, code, status):
    cmd = script(plugin_dir, "p.sh", f'echo "SERVICE said {code} | v=1;2;3"\necho "detail line"\nexit {code}\n')
    r = plugins.run(PluginSpec("p", (cmd,), timeout=10))
    assert (r.status, r.exit_code, r.message, r.long_output) == (status, code, f"SERVICE said {code}", ["detail line"])
    assert [(p.label, p.value) for p in r.perfdata] == [("v", 1.0)]
    assert not r.timed_out


def test_no_output_and_a_missing_program(plugin_dir):
    cmd = script(plugin_dir, "quiet.sh", "echo oops >&2\nexit 2\n")
    r = plugins.run(PluginSpec("q", (cmd,)))
    assert (r.status, r.message, r.stderr) == ("critical", "exit 2 with no output (oops)", "oops")
    r = plugins.run(PluginSpec("m", (str(plugin_dir / "absent"),)))
    assert r.status == "unknown" and r.message.startswith(f"cannot run {plugin_dir / 'absent'}: No such file")


def test_a_plugin_past_its_timeout_is_killed_with_its_whole_group(plugin_dir):
    tag = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"  # a sleep length no other process has
    cmd = script(plugin_dir, "hang.sh", f"echo starting\nsleep {tag} &\nsleep {tag}\n")
    t0 = time.monotonic()
    r = plugins.run(PluginSpec("hang", (cmd, tag), timeout=1))
    assert time.monotonic() - t0 < 5
    assert (r.status, r.timed_out, r.exit_code) == ("unknown", True, None)
    assert "timed out" in r.message
    assert processes_with(tag) == []


def test_what_a_plugin_leaves_running_is_killed_when_it_exits(plugin_dir):
    tag = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    cmd = script(plugin_dir, "fork.sh", f"sleep {tag} &\necho forked\nexit 0\n")
    r = plugins.run(PluginSpec("fork", (cmd,), timeout=5))
    assert (r.status, r.message) == ("ok", "forked")
    assert processes_with(tag) == []


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root can run a plugin as another user")


@root_only
def test_as_root_a_plugin_runs_as_nobody_by_default_or_its_user(plugin_dir):
    cmd = script(plugin_dir, "id.sh", 'echo "uid $(id -u) gid $(id -g) groups $(id -G)"\n')
    nobody = pwd.getpwnam("nobody")
    r = plugins.run(PluginSpec("id", (cmd,)))
    assert r.message == f"uid {nobody.pw_uid} gid {nobody.pw_gid} groups {nobody.pw_gid}" and r.user == "nobody"
    other = next(p for p in pwd.getpwall() if p.pw_uid not in (0, nobody.pw_uid) and p.pw_name != "nobody")
    r = plugins.run(PluginSpec("id", (cmd,), user=other.pw_name))
    assert r.message.startswith(f"uid {other.pw_uid} ") and r.user == other.pw_name


@root_only
def test_as_root_only_run_as_root_runs_as_root(plugin_dir):
    cmd = script(plugin_dir, "id.sh", 'echo "uid $(id -u)"\n')
    assert plugins.run(PluginSpec("id", (cmd,), run_as_root=True)).message == "uid 0"
    r = plugins.run(PluginSpec("id", (cmd,), user="root"))
    assert r.status == "unknown" and "run_as_root" in r.message
