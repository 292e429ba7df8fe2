"""Prometheus node_exporter run on a fixture tree, so our totals can be compared with its."""

from __future__ import annotations

import subprocess
import time
import urllib.request

from tests.conftest import HOST_T1, free_port, need_tool


def scrape_fixture(*flags: str) -> str:
    """node_exporter's /metrics for the t1 tree, with only the collectors `flags` turn on."""
    exe = need_tool("prometheus-node-exporter")
    port = free_port()
    top = HOST_T1.proc.parent
    p = subprocess.Popen([exe, f"--path.procfs={top / 'proc'}", f"--path.sysfs={top / 'sys'}",
                          "--collector.disable-defaults", *flags,
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        p.terminate()
        p.wait(10)
