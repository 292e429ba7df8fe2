"""Plugin checks through a real Service: config, schedule-free runs, the report, the store."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from diag.config import ConfigError, load
from tests.collectors.test_plugin_runs import plugin_dir, processes_with, script  # noqa: F401 - the fixture
from tests.conftest import collected_service, own_kmsg


def service_with(tmp_path, plugins: dict, **flags):
    return collected_service(tmp_path / "data", plugins=plugins, paths={"kmsg": str(own_kmsg(tmp_path))}, **flags)


def check_of(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_a_plugin_that_exits_2_makes_its_check_critical_with_its_message(tmp_path, plugin_dir):
    cmd = script(plugin_dir, "queue.sh", 'echo "QUEUE CRITICAL - 812 jobs waiting | jobs=812;100;500;0 age=95s"\n'
                                         'echo "oldest: invoice-4411"\nexit 2\n')
    s = service_with(tmp_path, {"queue": {"command": [cmd, "--warn", "100"], "timeout": "5s", "interval": "1m",
                                          "recommendation": "Restart the queue worker (systemctl restart qw)."}})
    try:
        assert [c.to_json()["category"] for c in s.checks if c.id == "plugin.queue"] == ["plugin"]
        s.plugins.run("queue")
        report = s.diagnose()
        r = check_of(report, "plugin.queue")
        assert (r["status"], r["message"], r["category"], r["severity"]) == (
            "critical", "QUEUE CRITICAL - 812 jobs waiting", "plugin", "critical")
        assert r["recommendation"] == "Restart the queue worker (systemctl restart qw)."
        assert r["evidence"]["exit_code"] == 2 and r["evidence"]["output"] == ["oldest: invoice-4411"]
        assert report["summary"]["critical"] >= 1 and report["health_status"] == "Impaired"
        # The perfdata are series of the instance, read like any pushed metric.
        jobs = s.store.latest("plugin_queue_jobs", instance_id=s.instance_id)
        assert jobs["value"].tolist() == [812.0]
        assert "plugin_queue_age" in s.store.metric_names()
        # Only this check, asked for by id.
        assert [c["id"] for c in s.diagnose(check_ids=["plugin.queue"])["checks"]] == ["plugin.queue"]
    finally:
        s.close()


def test_non_critical_severity_caps_at_warning_and_ok_clears(tmp_path, plugin_dir):
    flag = plugin_dir / "state"
    cmd = script(plugin_dir, "flip.sh", f'cat {flag}\nexit $(cut -c1 {flag})\n')
    flag.write_text("2 broken\n")
    flag.chmod(0o644)
    s = service_with(tmp_path, {"flip": {"command": [cmd], "severity": "non_critical"}})
    try:
        assert check_of(s.diagnose(), "plugin.flip")["status"] == "unknown"  # not run yet
        s.plugins.run("flip")
        assert check_of(s.diagnose(), "plugin.flip")[("status")] == "warning"
        flag.write_text("0 fine\n")
        s.plugins.run("flip")
        r = check_of(s.diagnose(), "plugin.flip")
        assert (r["status"], r["message"], r["recommendation"]) == ("ok", "0 fine", "")
    finally:
        s.close()


def test_a_hanging_plugin_is_killed_unknown_and_never_delays_a_collection(tmp_path, plugin_dir):
    tag = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    cmd = script(plugin_dir, "hang.sh", f"sleep {tag}\n")
    s = service_with(tmp_path, {"hang": {"command": [cmd, tag], "timeout": "2s"}})
    try:
        runs: list = []
        t = threading.Thread(target=lambda: runs.append(s.plugins.run("hang")))
        t.start()
        deadline = time.monotonic() + 5
        while not processes_with(tag) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_with(tag)
        assert s.plugins.run("hang") is None  # still running: not started again
        t0 = time.monotonic()
        s.collect()
        assert time.monotonic() - t0 < 1.5 and t.is_alive()
        t.join(10)
        assert processes_with(tag) == []
        r = check_of(s.diagnose(), "plugin.hang")
        assert r["status"] == "unknown" and "timed out" in r["message"]
    finally:
        s.close()


def test_the_last_result_survives_a_restart_and_goes_stale(tmp_path, plugin_dir):
    cmd = script(plugin_dir, "ok.sh", 'echo "OK - fine"\n')
    plugins = {"fine": {"command": [cmd], "interval": "30s", "timeout": "5s"}}
    s = service_with(tmp_path, plugins)
    s.plugins.run("fine")
    s.close()
    s = service_with(tmp_path, plugins)
    try:
        assert check_of(s.diagnose(), "plugin.fine")["status"] == "ok"
        later = time.time() + 2 * 30 + 5 + 31
        r = check_of(s.diagnose(now=later), "plugin.fine")
        assert r["status"] == "unknown" and "last ran" in r["message"]
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root service switches users")
def test_through_the_service_a_plugin_runs_as_its_user_unless_run_as_root(tmp_path, plugin_dir):
    cmd = script(plugin_dir, "id.sh", 'echo "uid $(id -u)"\n')
    s = service_with(tmp_path, {"who": {"command": [cmd]}, "daemon": {"command": [cmd], "user": "daemon"},
                                "root": {"command": [cmd], "run_as_root": True}})
    try:
        s.plugins.run_all()
        report = s.diagnose()
        import pwd

        assert check_of(report, "plugin.who")["message"] == f"uid {pwd.getpwnam('nobody').pw_uid}"
        assert check_of(report, "plugin.daemon")["message"] == f"uid {pwd.getpwnam('daemon').pw_uid}"
        assert check_of(report, "plugin.root")["message"] == "uid 0"
    finally:
        s.close()


# -- config ----------------------------------------------------------------------------------------

def refused(tmp_path, name: str, text: str) -> ConfigError:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    return e.value


def test_a_good_entry_in_yaml_and_toml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("plugins:\n  disk:\n    command: [/usr/lib/nagios/plugins/check_disk, -w, '10%']\n"
                 "    timeout: 15s\n    user: daemon\n    severity: non_critical\n")
    p = load(f, env={}).plugins["disk"]
    assert (p.command[2], p.timeout, p.interval, p.user, p.severity) == ("10%", 15, 60, "daemon", "non_critical")
    f = tmp_path / "c.toml"
    f.write_text('[plugins.disk]\ncommand = ["/bin/true"]\ninterval = "5m"\nrun_as_root = true\n')
    p = load(f, env={}).plugins["disk"]
    assert (p.interval, p.run_as_root, p.user) == (300, True, None)


@pytest.mark.parametrize("text,line,field,says", [
    ("port: 8081\nplugins:\n  disk:\n    command: [check_disk, -w, 10]\n", 4, "plugins.disk.command",
     "absolute path"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    user: root\n", 4, "plugins.disk.user", "run_as_root"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    user: no-such-user-here\n", 4, "plugins.disk.user",
     "no user"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    run_as_root: true\n    user: daemon\n", 5,
     "plugins.disk.user", "leave user out"),
    ("plugins:\n  disk:\n    command: []\n", 3, "plugins.disk.command", "at least 1"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    timeout: 2h\n", 4, "plugins.disk.timeout", "3600"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    severity: high\n", 4, "plugins.disk.severity", "critical"),
    ("plugins:\n  disk:\n    command: [/bin/true]\n    shell: true\n", 4, "plugins.disk.shell", "unknown setting"),
    ("plugins:\n  disk:\n    interval: 1m\n", 2, "plugins.disk.command", "Field required"),
    ("plugins:\n  Bad-Name:\n    command: [/bin/true]\n", 2, "plugins.Bad-Name", "pattern"),
])
def test_a_bad_yaml_entry_is_refused_with_file_line_and_field(tmp_path, text, line, field, says):
    e = refused(tmp_path, "c.yaml", text)
    assert (e.path, e.line, e.field) == (str(tmp_path / "c.yaml"), line, field)
    assert says in e.message


def test_a_bad_toml_entry_is_refused_with_file_line_and_field(tmp_path):
    e = refused(tmp_path, "c.toml", 'port = 8081\n\n[plugins.disk]\ncommand = ["/bin/true"]\ntimeout = "soon"\n')
    assert (e.path, e.line, e.field) == (str(tmp_path / "c.toml"), 5, "plugins.disk.timeout")
    e = refused(tmp_path, "c.toml", '[plugins.disk]\ncommand = ["sh", "-c", "df"]\n')
    assert (e.line, e.field) == (2, "plugins.disk.command") and "absolute path" in e.message
    assert str(e).startswith(f"{tmp_path / 'c.toml'}:2: plugins.disk.command: ")


def test_perfdata_are_queried_like_custom_metrics_with_their_unit_and_the_api_lists_the_check(tmp_path, plugin_dir):
    from diag.web.app import create_app

    cmd = script(plugin_dir, "web.sh", "echo \"HTTP OK | time=0.25s;1;2;0 size=2KB 'hit rate'=97.5%\"\n")
    s = service_with(tmp_path, {"web": {"command": [cmd], "recommendation": "Look at the web server."}})
    try:
        s.plugins.run("web")
        client = create_app(s).test_client()
        got = client.get("/api/v1/query?metric=plugin_web_time&start=-10m").get_json()
        assert got["unit"] == "s" and [p[1] for p in got["series"][0]["points"]] == [0.25]
        got = client.get("/api/v1/query?metric=plugin_web_hit_rate&start=-10m").get_json()
        assert got["unit"] == "percent" and [p[1] for p in got["series"][0]["points"]] == [97.5]
        assert client.get("/api/v1/query?metric=plugin_web_size&start=-10m").get_json()["unit"] == "bytes"
        listed = {c["id"]: c for c in client.get("/api/v1/checks").get_json()["checks"]}
        assert (listed["plugin.web"]["category"], listed["plugin.web"]["recommendation"]) == (
            "plugin", "Look at the web server.")
        r = client.post("/api/v1/diagnoses", json={"checks": ["plugin.web"]})
        assert r.status_code == 201 and [c["status"] for c in r.get_json()["checks"]] == ["ok"]
    finally:
        s.close()


def test_the_scheduler_runs_plugins_in_their_own_pool_never_stacked(tmp_path, plugin_dir):
    from diag import scheduler

    cmd = script(plugin_dir, "ok.sh", "echo OK\n")
    s = service_with(tmp_path, {"a": {"command": [cmd], "interval": "15s"}, "b": {"command": [cmd]}})
    try:
        sched = scheduler.build(s)
        jobs = {j.id: j for j in sched.get_jobs()}
        assert {jobs["plugin.a"].executor, jobs["plugin.b"].executor} == {"plugins"}
        assert jobs["collect"].executor == "default"
        assert (jobs["plugin.a"].max_instances, jobs["plugin.a"].trigger.interval.total_seconds()) == (1, 15)
    finally:
        s.close()
