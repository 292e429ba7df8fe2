"""The `diag` command as a user runs it."""

import json
import subprocess
import sys

from collectors.base import read_header_pairs, read_key_values
from tests.conftest import FIXTURES, ROOT

T1 = FIXTURES / "host" / "t1"


def diag(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diag.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_collect_once_reads_the_given_tree():
    r = diag("collect", "--once", "--json", "--proc", str(T1 / "proc"), "--sys", str(T1 / "sys"),
             "--kmsg", str(FIXTURES / "kmsg" / "linux-6.18-real-faults.kmsg"), "--sample", "0.1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    netstat = read_header_pairs(T1 / "proc" / "net" / "netstat")
    assert out["counters"]["TcpExt.ListenOverflows"] == netstat["TcpExt.ListenOverflows"]
    mem_total = next(s["value"] for s in out["samples"] if s["metric"] == "mem_total")
    assert mem_total == read_key_values(T1 / "proc" / "meminfo")["MemTotal"] * 1024
    kinds = {s["kind"] for s in out["signals"]}
    assert {"hung_task", "io_error", "readonly_remount", "oom_kill"} <= kinds
    assert out["errors"] == []


def test_diagnose_without_history_takes_a_short_live_sample(tmp_path):
    r = diag("diagnose", "--format", "json", cwd=tmp_path)
    report = json.loads(r.stdout)
    expected = {"Ok": 0, "Warning": 1, "Impaired": 2}.get(report["health_status"], 3)
    assert r.returncode == expected, r.stderr
    assert len(report["checks"]) == 30


def test_diagnose_reads_a_data_dir_and_prints_text(tmp_path):
    from diag.config import load
    from diag.service import Service

    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    s.collect()
    s.close()
    r = diag("diagnose", "--data-dir", str(tmp_path / "data"), "--check", "storage.disk_usage")
    assert r.returncode in (0, 1, 2, 3)
    assert "storage.disk_usage" in r.stdout and r.stdout.splitlines()[0].startswith(s.instance_id)


def test_a_bad_config_names_file_line_and_field(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 8080\ninterval: often\n")
    r = diag("serve", "--config", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:2: interval: not a duration" in r.stderr


def test_refuses_a_public_address_without_a_token(tmp_path):
    r = diag("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "without a token" in r.stderr
