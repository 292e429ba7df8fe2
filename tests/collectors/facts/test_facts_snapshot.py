"""The whole snapshot: the contract's shape, JSON, errors kept per part, and its cost live."""

from __future__ import annotations

import json
import time
from pathlib import Path

from collectors.facts import snapshot
from collectors.roots import Roots

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"
PARTS = {"taken_at", "sshd", "interfaces", "dhcp_clients", "routes", "firewall", "listening", "systemd", "errors"}
SSHD_KEYS = {"installed", "binary", "running", "pids", "ports", "config_path", "config_exists",
             "config_files", "settings", "host_keys", "privsep_dir"}


def test_fixture_snapshot_shape():
    s = snapshot(Roots.under(FIX / "running"), 1795600000.0, service_ports=[22, 2222])
    assert set(s) == PARTS and s["taken_at"] == 1795600000.0
    assert SSHD_KEYS <= set(s["sshd"])
    assert json.loads(json.dumps(s)) == s
    assert s["dhcp_clients"] == [{"pid": 455, "name": "dhclient", "cmdline":
                                  "/sbin/dhclient -1 -4 -v -i -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases eth0"}]
    assert s["routes"]["default_v4"] == [{"gateway": "172.16.0.1", "interface": "eth0", "metric": 100}]
    assert s["errors"] == {}
    assert s["firewall"]["error"]  # fixture trees have no firewall to ask


def test_networkmanager_counts_as_dhcp_client():
    s = snapshot(Roots.under(FIX / "stopped"), 0.0)
    assert [(c["pid"], c["name"]) for c in s["dhcp_clients"]] == [(733, "NetworkManager")]


def test_empty_tree_gives_errors_not_exceptions(tmp_path):
    s = snapshot(Roots.under(tmp_path), 5.0, service_ports=[22])
    assert set(s) == PARTS
    assert s["sshd"]["installed"] is False
    assert s["interfaces"] == [] and s["listening"] == []
    assert set(s["errors"]) >= {"processes", "listening", "interfaces", "dhcp_clients"}
    assert s["routes"]["error"]


def test_live_snapshot_is_json():
    s = snapshot(Roots(), time.time(), [22])
    json.dumps(s)
    assert set(s) == PARTS
    assert "interfaces" not in s["errors"] and "listening" not in s["errors"]
