"""sshd facts against fixture trees, and the live machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from collectors.facts import snapshot
from collectors.roots import Roots

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def sshd_of(case: str) -> dict:
    return snapshot(Roots.under(FIX / case), 1000.0)["sshd"]


def test_running_with_included_port():
    s = sshd_of("running")
    assert s["installed"] is True and s["binary"] == "/usr/sbin/sshd"
    assert s["running"] is True
    assert s["pids"] == [812]  # 2301 is a session child of 812
    assert s["ports"] == [2222]  # from the listening sockets of 812
    assert s["socket_activated"] is False
    assert s["config_exists"] is True
    assert s["config_files"][1] == "/etc/ssh/sshd_config.d/50-port.conf"
    assert s["settings"]["permitrootlogin"] == "no"
    assert [k["path"] for k in s["host_keys"]] == [
        "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"]
    assert all(k["exists"] for k in s["host_keys"])
    assert s["privsep_dir"] == {"path": "/run/sshd", "exists": True}
    assert s["error"] is None and s["config_error"] is None


def test_config_problem_keeps_the_rest_of_the_part(tmp_path):
    (tmp_path / "etc" / "ssh").mkdir(parents=True)
    (tmp_path / "etc" / "ssh" / "sshd_config").write_text("Port ssh\nPort 2200\n")
    s = snapshot(Roots.under(tmp_path), 0.0)["sshd"]
    assert s["error"] is None and "Port" in s["config_error"]
    assert s["installed"] is True and s["settings"]["port"] == [2200]


def test_installed_not_running_rhel():
    s = sshd_of("stopped")
    assert (s["installed"], s["running"], s["pids"]) == (True, False, [])
    assert s["ports"] == [22]  # from the configuration: nothing listens
    assert s["settings"]["permitrootlogin"] == "prohibit-password"
    assert s["privsep_dir"] == {"path": "/var/empty/sshd", "exists": True}


def test_missing_host_key_and_privsep_dir():
    s = sshd_of("broken")
    assert s["installed"] is True and s["running"] is False
    assert s["host_keys"] == [
        {"path": "/etc/ssh/ssh_host_ed25519_key", "exists": False},
        {"path": "/etc/ssh/ssh_host_rsa_key", "exists": True},
    ]
    assert s["privsep_dir"] == {"path": "/run/sshd", "exists": False}
    assert s["ports"] == [2022, 2023]


def test_no_sshd_at_all():
    s = sshd_of("bare")
    assert s["installed"] is False and s["binary"] is None and s["config_exists"] is False
    assert s["running"] is False and s["ports"] == []
    assert s["privsep_dir"] == {"path": None, "exists": False}


def test_socket_activation_is_told_apart():
    s = sshd_of("socket")
    assert s["running"] is False
    assert s["socket_activated"] is True
    assert s["ports"] == [22]


def test_live_installed_matches_the_filesystem():
    s = snapshot(Roots(), 0.0)["sshd"]
    expected = bool(shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")
                    or os.path.isfile("/etc/ssh/sshd_config"))  # the contract also counts a config
    assert s["installed"] is expected
    running = any(_comm(p) == "sshd" for p in os.listdir("/proc") if p.isdigit())
    assert s["running"] is running


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
