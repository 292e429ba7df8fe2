"""The local executor: timeouts kill the process group, output is capped, users are honoured."""

import os
import pwd
import time
import uuid
from pathlib import Path

import pytest

from diag.commands import cgroups, sendfile
from diag.commands.runner import OUTPUT_CAP, Execution


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"sleep 600 &\necho $! > {pidfile}\nsleep 600\n"
    started = time.monotonic()
    r = Execution(script, timeout=10).run()
    assert r.status == "Failed" and r.error_code == "ExecutionTimeout"
    assert 10 <= time.monotonic() - started < 60
    child = int(pidfile.read_text())
    assert not alive(child)


def test_finished_whatever_the_exit_code():
    ok = Execution("echo ok", timeout=10).run()
    assert (ok.status, ok.exit_code, ok.output, ok.error_code) == ("Finished", 0, b"ok\n", None)
    bad = Execution("echo oops >&2; exit 7", timeout=10).run()
    assert (bad.status, bad.exit_code, bad.output, bad.error_code) == ("Finished", 7, b"oops\n", "ExitCodeNonzero")


def test_output_is_cut_at_24_kib_with_dropped():
    total = 100_000
    r = Execution(f"head -c {total} /dev/zero | tr '\\0' a", timeout=30).run()
    assert len(r.output) == OUTPUT_CAP == 24 * 1024
    assert r.dropped == total - OUTPUT_CAP
    assert r.output == b"a" * OUTPUT_CAP


def test_runs_from_a_private_file_in_the_working_directory(tmp_path):
    r = Execution('pwd; stat -c %a "$0"; stat -c %a "$(dirname "$0")"', timeout=10, working_dir=str(tmp_path)).run()
    assert r.output.decode().split() == [str(tmp_path), "700", "700"]


def test_missing_working_directory_fails_clearly(tmp_path):
    r = Execution("true", timeout=10, working_dir=str(tmp_path / "nope")).run()
    assert r.status == "Failed" and r.error_code == "ExecutionException" and "nope" in r.error_info


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_runs_as_the_configured_user():
    r = Execution("id -un", timeout=10, username="nobody").run()
    assert r.output.decode().strip() == pwd.getpwnam("nobody").pw_name


def test_unknown_user_is_refused():
    r = Execution("true", timeout=10, username="no_such_user_zz").run()
    assert r.status == "Failed" and "unknown user" in r.error_info


def test_stop_kills_it():
    import threading

    ex = Execution("sleep 600", timeout=600)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", ex.run()))
    t.start()
    while ex.pid is None:
        time.sleep(0.01)
    ex.stop()
    t.join(30)
    assert out["r"].status == "Stopped"
    assert not alive(ex.pid)


def test_send_file_modes_and_overwrite(tmp_path):
    r = sendfile.write("a.conf", b"x=1\n", str(tmp_path), "0640", "nobody" if os.geteuid() == 0 else "", "", False)
    assert r.status == "Finished"
    st = (tmp_path / "a.conf").stat()
    assert oct(st.st_mode & 0o777) == "0o640" and (tmp_path / "a.conf").read_bytes() == b"x=1\n"
    if os.geteuid() == 0:
        assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    again = sendfile.write("a.conf", b"y", str(tmp_path), "0644", "", "", False)
    assert again.status == "Failed" and again.error_code == "FileAlreadyExists"
    assert (tmp_path / "a.conf").read_bytes() == b"x=1\n"
    over = sendfile.write("a.conf", b"y", str(tmp_path), "0644", "", "", True)
    assert over.status == "Finished" and (tmp_path / "a.conf").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]  # no temp file left


def _sleepers(tag: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", tag.encode()] and alive(int(d)):
                    pids.append(int(d))
        except (OSError, ValueError):
            pass
    return pids


def _only(version, controller):
    real = cgroups._hierarchies

    def pick(proc):
        return [h for h in real(proc) if h[2] == version and (controller is None or h[0].name == controller)]
    return pick


@pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root")
@pytest.mark.parametrize("hierarchy", [None, (2, None), (1, "freezer"), (1, "pids")])
def test_timeout_kills_a_child_that_left_the_session(hierarchy, monkeypatch):
    # setsid puts the child in a new session and process group: killpg never reaches it.
    if hierarchy:
        monkeypatch.setattr(cgroups, "_hierarchies", _only(*hierarchy))
        if not cgroups._hierarchies(Path("/proc")):
            pytest.skip(f"no writable {hierarchy} hierarchy here")
    tag = str(300 + uuid.uuid4().int % 1000 / 1000)  # a unique `sleep 300.xyz`
    r = Execution(f"setsid sleep {tag} &\nsetsid -f sleep {tag}\nsleep {tag}\n", timeout=2).run()
    assert r.status == "Failed" and r.error_code == "ExecutionTimeout" and "cgroup" in r.error_info
    deadline = time.monotonic() + 5
    while _sleepers(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleepers(tag) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root")
def test_a_daemon_left_by_a_finished_run_keeps_running_and_its_cgroup_goes():
    tag = str(300 + uuid.uuid4().int % 1000 / 1000)
    r = Execution(f"setsid -f sleep {tag}\necho started", timeout=10).run()
    try:
        assert r.status == "Finished" and r.output == b"started\n"
        # setsid -f returns before its child has exec'd sleep: give the exec a moment.
        deadline = time.monotonic() + 3
        while not _sleepers(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_sleepers(tag)) == 1
        for mount, own, _, _ in cgroups._hierarchies(Path("/proc")):
            runs = mount / own.lstrip("/") / cgroups.DIR_NAME
            assert not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()]
    finally:
        for pid in _sleepers(tag):
            os.kill(pid, 9)


def test_parameters_come_as_diag_variables_only():
    r = Execution('printf "%s|%s" "$DIAG_P_v" "$PATH"', timeout=10,
                  env={"DIAG_P_v": "$(id)", "PATH": "/evil", "LD_PRELOAD": "/evil.so"}).run()
    assert r.output.decode().split("|") == ["$(id)", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_send_file_where_no_file_can_be_made_fails_with_the_reason(tmp_path):
    # What an agent does with a task whose directory the server could not judge: /proc is a
    # directory, yet no file can be created there.
    for name, target in [("x", "/proc/self"), ("n" * 255, str(tmp_path))]:
        r = sendfile.write(name, b"data", target)
        assert r.status in ("Failed", "Finished"), r
        if r.status == "Failed":
            assert r.error_code == "ExecutionException" and "cannot" in r.error_info
    assert sendfile.write("x", b"", "/proc/self").status == "Failed"
    assert (tmp_path / ("n" * 255)).read_bytes() == b"data"
