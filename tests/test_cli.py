"""The `diag` command as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

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
    # The raw counters each collector parsed, by the kernel's names, as the t1 files say.
    c = out["counters"]
    assert (c["stat.cpu.user"], c["stat.cpu.steal"], c["stat.cpu1.iowait"]) == (4502, 121, 181)
    assert (c["netdev.eth0.rx_bytes"], c["netdev.eth0.tx_dropped"]) == (98771556, 7)
    assert (c["diskstats.vda.reads_completed"], c["diskstats.vda.ms_writing"]) == (31957, 11268)
    assert (c["pressure.cpu.some.total"], c["pressure.io.full.total"]) == (6935977, 1970901)
    assert (c["nf_conntrack_count"], c["nf_conntrack_max"]) == (65536, 262144)
    assert (c["fs.file-nr.allocated"], c["fs.file-nr.max"], c["vmstat.oom_kill"]) == (2000, 200000, 5)


def _fs(out: dict, metric: str) -> dict[str, float]:
    return {s["labels"]["mountpoint"]: s["value"] for s in out["samples"] if s["metric"] == metric}


def test_collect_from_a_tree_without_root_reports_no_usage_of_this_machine():
    r = diag("collect", "--once", "--json", "--proc", str(T1 / "proc"), "--sys", str(T1 / "sys"),
             "--kmsg", str(FIXTURES / "kmsg" / "linux-6.18-real-faults.kmsg"), "--sample", "0.1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # statvfs("/") here would be this machine's disk under the fixture's /dev/vda label.
    assert _fs(out, "fs_usage") == {} and _fs(out, "fs_inode_usage") == {}
    ro = _fs(out, "fs_readonly")
    assert ro["/data"] == 1.0 and ro["/mnt/my disk"] == 1.0 and ro["/"] == 0.0
    assert "--root" in out["skipped"]["filesystem usage"]
    assert "kernel log" not in out["skipped"]  # --kmsg was given


def test_collect_with_root_statvfs_the_trees_mountpoints(tmp_path):
    # The fixture's filesystems "mounted" under tmp_path: directories on whatever holds it.
    top = tmp_path / "rootfs"
    for mp in ("", "run", "run/user/0", "data", "var/www", "boot", "mnt/my disk", "mnt/nfs"):
        (top / mp).mkdir(parents=True, exist_ok=True)
    r = diag("collect", "--once", "--json", "--proc", str(T1 / "proc"), "--sys", str(T1 / "sys"),
             "--root", str(top), "--kmsg", str(FIXTURES / "kmsg" / "linux-6.18-real-faults.kmsg"), "--sample", "0.1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    sv = os.statvfs(top / "mnt" / "my disk")
    used, avail = (sv.f_blocks - sv.f_bfree) * sv.f_frsize, sv.f_bavail * sv.f_frsize
    usage = _fs(out, "fs_usage")
    assert set(usage) == {"/", "/run", "/run/user/0", "/data", "/var/www", "/boot", "/mnt/my disk", "/mnt/nfs"}
    assert usage["/mnt/my disk"] == pytest.approx(used / (used + avail) * 100, abs=0.5)
    assert "filesystem usage" not in out["skipped"]
    # /mnt/broken has no directory under the root: counted as an error, not this machine's path
    assert {"collector": "filesystem", "kind": "FileNotFoundError", "count": 1} in out["errors"]
    assert str(top / "mnt" / "broken") in r.stderr


def test_collect_from_a_tree_without_kmsg_skips_the_kernel_log():
    # The live /dev/kmsg stamped with the fixture's boot time would be another machine's faults.
    r = diag("collect", "--once", "--json", "--proc", str(T1 / "proc"), "--sys", str(T1 / "sys"), "--sample", "0.1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "--kmsg" in out["skipped"]["kernel log"]
    assert out["signals"] == [] and out["errors"] == []
    assert "kernel log skipped" in r.stderr


def test_diagnose_without_history_takes_a_short_live_sample(tmp_path):
    r = diag("diagnose", "--format", "json", cwd=tmp_path)
    report = json.loads(r.stdout)
    expected = {"Ok": 0, "Warning": 1, "Impaired": 2}.get(report["health_status"], 3)
    assert r.returncode == expected, r.stderr
    from checks.catalogue import ALL

    assert sorted(c["id"] for c in report["checks"]) == sorted(c.id for c in ALL)  # every check, once


def test_diagnose_reads_a_data_dir_and_prints_text(tmp_path):
    from diag.config import load
    from diag.service import Service

    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    s.collect()
    s.close()
    r = diag("diagnose", "--data-dir", str(tmp_path / "data"), "--check", "storage.disk_usage")
    assert "storage.disk_usage" in r.stdout and r.stdout.splitlines()[0].startswith(s.instance_id)
    # "<instance>: <state>  (<window>)": the exit code is the printed state's, by the Nagios convention.
    state = r.stdout.splitlines()[0].split(": ", 1)[1].split()[0]
    assert r.returncode == {"Ok": 0, "Warning": 1, "Impaired": 2}.get(state, 3), (state, r.stderr)


def assert_unknown_exit(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 3 (UNKNOWN: not 1 = Warning, not 2 = Impaired), no report, one line that says why."""
    assert r.returncode == 3, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert r.stdout == "" and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("diag diagnose: ") and all(w in last for w in words), last


def test_diagnose_errors_exit_3_with_one_line(tmp_path):
    assert_unknown_exit(diag("diagnose", "--window", "often", cwd=tmp_path), "--window", "not a duration")
    assert_unknown_exit(diag("diagnose", "--window", "0s", cwd=tmp_path), "--window")
    assert_unknown_exit(diag("diagnose", "--data-dir", str(tmp_path / "nothing-here")), "--data-dir", "no history")
    assert_unknown_exit(diag("diagnose", "--check", "storage.nope", cwd=tmp_path), "unknown check", "storage.nope")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 8080\ninterval: often\n")
    assert_unknown_exit(diag("diagnose", "--config", str(cfg), cwd=tmp_path), f"{cfg}:2: interval: not a duration")


def test_diagnose_of_an_unknown_instance_exits_3(tmp_path):
    from diag.config import load
    from diag.service import Service

    Service(load(env={}, data_dir=str(tmp_path / "data"))).close()
    (tmp_path / "data" / "metrics.db").touch()  # a data dir with history, but not of this instance
    r = diag("diagnose", "--data-dir", str(tmp_path / "data"), "--instance-id", "i-nobody")
    assert_unknown_exit(r, "--instance-id", "i-nobody")


def test_diagnose_of_an_unreachable_server_exits_3(tmp_path):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert_unknown_exit(diag("diagnose", "--server", url, cwd=tmp_path), "cannot reach", url)


def test_diagnose_refused_by_the_server_exits_3(serve, tmp_path):
    p = serve()
    assert_unknown_exit(diag("diagnose", "--server", p.url, "--check", "storage.nope", cwd=tmp_path),
                   "the server answered 4")
    r = diag("diagnose", "--server", p.url, "--check", "storage.disk_usage", "--format", "json", cwd=tmp_path)
    report = json.loads(r.stdout)
    assert r.returncode == {"Ok": 0, "Warning": 1, "Impaired": 2}.get(report["health_status"], 3), r.stderr


def test_a_bad_config_names_file_line_and_field(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 8080\ninterval: often\n")
    r = diag("serve", "--config", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:2: interval: not a duration" in r.stderr


def test_refuses_a_public_address_without_a_token(tmp_path):
    r = diag("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "without a token" in r.stderr


def option_help(command: str) -> dict[str, str]:
    """Each --flag of `diag <command> --help` -> its help, on one line."""
    # Wide, so that argparse does not break a default such as agent-data at its hyphen.
    r = subprocess.run([sys.executable, "-m", "diag.cli", command, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    help_text = r.stdout
    out: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        words = line.split()
        if line.startswith("  -") and words:
            flag = words[0].rstrip(",")
            out[flag] = " ".join(words[1:])
        elif flag and line.startswith("     "):
            out[flag] += " " + line.strip()
        else:
            flag = None
    return {f: " ".join(h.split()) for f, h in out.items()}


def test_serve_help_gives_each_flag_its_help_and_default():
    flags = option_help("serve")
    assert "(default: 127.0.0.1; env DIAG_HOST)" in flags["--host"] and "address to listen on" in flags["--host"]
    assert "(default: 8080; env DIAG_PORT)" in flags["--port"]
    assert "(default: data; env DIAG_DATA_DIR)" in flags["--data-dir"]
    assert "(default: 10s; env DIAG_INTERVAL)" in flags["--interval"]
    assert "(default: none; env DIAG_STORE_URL)" in flags["--store-url"]
    assert "(default: /proc)" in flags["--proc"] and "(default: /)" in flags["--root"]
    # Remote commands run scripts as root: the flag itself says they need the admin token.
    assert "needs an admin token (DIAG_TOKEN)" in flags["--enable-commands"]
    assert "(default: false; env DIAG_COMMANDS)" in flags["--enable-commands"]
    for flag, text in flags.items():
        assert flag == "-h" or "(default: " in text, (flag, text)


def test_agent_help_gives_the_agent_s_own_defaults():
    flags = option_help("agent")
    assert "(default: agent-data; env DIAG_AGENT_DATA_DIR)" in flags["--data-dir"]
    assert "(default: none; env DIAG_SERVER)" in flags["--server"] and "URL" in flags["--server"]
    assert all(flag == "-h" or "(default: " in text for flag, text in flags.items())


def test_a_bad_flag_is_refused_by_the_model_with_its_field(tmp_path):
    r = diag("serve", "--port", "eighty", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("diag: port: ")


def test_collect_alone_prints_what_once_json_prints():
    tree = ("--proc", str(T1 / "proc"), "--sys", str(T1 / "sys"), "--sample", "0.1")
    alone, explicit = diag("collect", *tree), diag("collect", "--once", "--json", *tree)
    assert alone.returncode == 0 and explicit.returncode == 0, alone.stderr
    a, b = json.loads(alone.stdout), json.loads(explicit.stdout)
    assert a.keys() == b.keys() and a["instance_id"] == b["instance_id"]
    assert a["counters"]["TcpExt.ListenOverflows"] == b["counters"]["TcpExt.ListenOverflows"]
    assert {s["metric"] for s in a["samples"]} == {s["metric"] for s in b["samples"]}
