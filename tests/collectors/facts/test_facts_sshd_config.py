"""sshd_config reading against fixture trees: Include order, first value wins, Match skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.facts import sshd_config
from collectors.roots import Roots

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def test_include_globs_relative_paths_and_first_value_wins():
    cfg = sshd_config.parse(Roots.under(FIX / "running"))
    # The drop-ins come first because the Include stands at the top; README is no *.conf.
    assert cfg.files == [
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/50-port.conf",
        "/etc/ssh/sshd_config.d/60-cloudimg-settings.conf",
        "/etc/ssh/local.conf",
    ]
    s = cfg.settings
    assert s["port"] == [2222]
    assert s["permitrootlogin"] == "no"  # not the later "yes", nor the Match block's
    assert s["passwordauthentication"] == "yes"  # the drop-in's, read before the main file's "no"
    assert s["listenaddress"] == ["0.0.0.0", "::"]
    assert s["hostkey"] == []
    assert s["subsystem"] == "sftp"
    assert "allowtcpforwarding" not in s  # only inside Match
    assert cfg.errors == []


def test_defaults_when_absent():
    cfg = sshd_config.parse(Roots.under(FIX / "stopped"))
    assert cfg.settings["port"] == [22]
    assert cfg.settings["permitrootlogin"] == "prohibit-password"
    # Included file that includes a file this tree lacks (crypto policies): not an error, as in sshd.
    assert cfg.files == ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/50-redhat.conf"]


def test_keyword_case_equals_sign_and_accumulating_ports():
    cfg = sshd_config.parse(Roots.under(FIX / "broken"))
    assert cfg.settings["port"] == [2022, 2023]
    assert cfg.settings["permitrootlogin"] == "without-password"
    assert cfg.settings["hostkey"] == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]


def test_missing_main_file_raises(tmp_path):
    with pytest.raises(OSError):
        sshd_config.parse(Roots.under(tmp_path))


def test_include_loop_stops(tmp_path):
    (tmp_path / "etc" / "ssh").mkdir(parents=True)
    (tmp_path / "etc" / "ssh" / "sshd_config").write_text("Include sshd_config\nPort 2200\n")
    cfg = sshd_config.parse(Roots.under(tmp_path))
    assert cfg.settings["port"] == [2200] * sshd_config.MAX_DEPTH
    assert any("deeper" in e for e in cfg.errors)


def test_match_in_included_file_ends_with_that_file(tmp_path):
    d = tmp_path / "etc" / "ssh"
    (d / "sshd_config.d").mkdir(parents=True)
    (d / "sshd_config").write_text("Include sshd_config.d/*.conf\nPermitRootLogin no\n")
    (d / "sshd_config.d" / "10-match.conf").write_text("Match Address 10.0.0.0/8\n  PermitRootLogin yes\n")
    assert sshd_config.parse(Roots.under(tmp_path)).settings["permitrootlogin"] == "no"


@pytest.mark.parametrize("settings, ports", [
    ({"port": [22], "listenaddress": []}, [22]),
    ({"port": [22, 2222], "listenaddress": ["0.0.0.0"]}, [22, 2222]),
    ({"port": [22], "listenaddress": ["10.0.0.1:2200", "[::1]:2201"]}, [2200, 2201]),
    ({"port": [22], "listenaddress": ["10.0.0.1:2200", "fe80::1"]}, [22, 2200]),
])
def test_config_ports(settings, ports):
    assert sshd_config.config_ports(settings) == ports
