"""Default routes from fixture trees, and the live machine against `ip -j route show default`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from collectors.facts.routes import routes
from collectors.roots import Roots
from tests.conftest import need_tool

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def test_default_routes():
    r = routes(Roots.under(FIX / "running"))
    assert r["default_v4"] == [{"gateway": "172.16.0.1", "interface": "eth0", "metric": 100}]
    # The kernel's `unreachable default dev lo` has no RTF_UP and is left out.
    assert r["default_v6"] == [{"gateway": "fe80::1", "interface": "eth0", "metric": 1024}]
    assert r["error"] is None


def test_no_default_route():
    r = routes(Roots.under(FIX / "bare"))
    assert r == {"default_v4": [], "default_v6": [], "error": None}


def test_missing_route_file_is_an_error(tmp_path):
    r = routes(Roots.under(tmp_path))
    assert r["default_v4"] == [] and "default_v4" in r["error"]


def _ip(*args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", *args, "route", "show", "default"], capture_output=True, check=True, text=True)
    return json.loads(out.stdout or "[]")


def test_live_matches_ip_route():
    need_tool("ip")
    r = routes(Roots())
    assert r["error"] is None
    assert [(d["gateway"], d["interface"]) for d in r["default_v4"]] == \
        [(x.get("gateway"), x["dev"]) for x in _ip()]
    assert sorted((d["gateway"], d["interface"]) for d in r["default_v6"]) == \
        sorted((x.get("gateway"), x["dev"]) for x in _ip("-6") if x.get("type", "unicast") == "unicast")
