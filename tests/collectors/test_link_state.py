"""Interface operational state is read every collection, and a diagnosis someone asks for
judges the facts as they are now (issue 14 item 6)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.network import NetworkCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import FIXTURES, ROOT, own_kmsg


def links(batch) -> dict[str, tuple[float | None, float | None]]:
    up = {s.labels["interface"]: s.value for s in batch.samples if s.metric == "net_up"}
    carrier = {s.labels["interface"]: s.value for s in batch.samples if s.metric == "net_carrier"}
    return {i: (up[i], carrier.get(i)) for i in up}


def test_operstate_and_carrier_every_cycle_from_the_tree(tmp_path):
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    net = top / "sys" / "class" / "net"
    (net / "eth0" / "operstate").write_text("up\n")
    (net / "eth0" / "carrier").write_text("1\n")
    (net / "eth1" / "operstate").write_text("down\n")  # administratively down: reading carrier is EINVAL
    (net / "docker0" / "operstate").write_text("unknown\n")
    (net / "docker0" / "carrier").write_text("1\n")
    # veth9f3a1b2 has no operstate file: no reading rather than a guess
    c = NetworkCollector(Roots.under(top), CollectorSettings())
    assert links(c.collect(1000.0)) == {"eth0": (1.0, 1.0), "eth1": (0.0, None), "docker0": (1.0, 1.0)}
    # The link drops 10 s later: seen in the next cycle, though addresses refresh once a minute.
    (net / "eth0" / "operstate").write_text("down\n")
    (net / "eth0" / "carrier").write_text("0\n")
    assert links(c.collect(1010.0))["eth0"] == (0.0, 0.0)


NS_SCRIPT = r"""
import json, subprocess, sys, time
from diag.config import load
from diag.service import Service
from diag.web.app import create_app

data, kmsg = sys.argv[1], sys.argv[2]
service = Service(load(env={}, data_dir=data, interval="1s", paths={"kmsg": kmsg}))
client = create_app(service).test_client()
out = {}

def step(name):
    service.collect()
    up = {s.labels["interface"]: s.value for s in service.last_batch.samples if s.metric == "net_up"}
    asked = time.time()
    r = client.post("/api/v1/diagnoses", json={"window": "1h", "checks": ["access.nic_config"]})
    [res] = r.get_json()["checks"]
    out[name] = {"net_up": up, "asked": asked, "status": res["status"], "evidence": res["evidence"]}

step("before")
subprocess.run(["ip", "link", "set", "dtv0", "down"], check=True)
step("after")
service.close()
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 for a netns")
def test_a_link_going_down_in_a_netns_is_seen_by_the_next_collection_and_an_on_demand_diagnosis(tmp_path):
    ns = f"diagt{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "add", "dtv0", "type", "veth", "peer", "name", "dtv1"],
                    ["addr", "add", "10.199.0.1/24", "dev", "dtv0"],
                    ["link", "set", "dtv0", "up"], ["link", "set", "dtv1", "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        # `ip netns exec` mounts the namespace's own /sys; /proc/net follows the reader's netns.
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", NS_SCRIPT, str(tmp_path / "data"),
                            str(own_kmsg(tmp_path))], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    before, after = got["before"], got["after"]
    assert before["net_up"]["dtv0"] == 1.0 and before["status"] == "ok"
    assert {"name": "dtv0", "up": True} in before["evidence"]["interfaces"]
    assert after["net_up"]["dtv0"] == 0.0  # the very next collection
    # Seconds after the first diagnosis, well inside the 5-minute facts interval: still seen.
    assert {"name": "dtv0", "up": False} in after["evidence"]["interfaces"]
    assert after["status"] == "critical", after
    assert after["evidence"]["facts_taken_at"] >= after["asked"]


def test_an_on_demand_diagnosis_takes_fresh_facts_and_a_scheduled_one_the_snapshot(tmp_path):
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    roots = Roots.under(top)
    service = Service(load(env={}, data_dir=str(tmp_path / "data"),
                           paths={"proc": roots.proc, "sys": roots.sys, "kmsg": own_kmsg(tmp_path),
                                  "pstore": roots.pstore, "root": roots.root}))
    try:
        service.collect()
        old = time.time() - 200  # inside the 5-minute facts interval: the scheduled path keeps it
        service.set_facts(service.instance_id, {**service.take_facts(), "taken_at": old}, old)
        scheduled = service.diagnose(check_ids=["access.nic_config"])
        [res] = scheduled["checks"]
        assert res["evidence"]["facts_taken_at"] == old and res["evidence"]["facts_age_seconds"] >= 200

        asked = time.time()
        r = create_app(service).test_client().post("/api/v1/diagnoses",
                                                   json={"window": "1h", "checks": ["access.nic_config"]})
        assert r.status_code == 201
        [res] = r.get_json()["checks"]
        assert res["evidence"]["facts_taken_at"] >= asked
        assert res["evidence"]["facts_age_seconds"] == 0
    finally:
        service.close()


def test_a_facts_snapshot_that_hangs_is_abandoned_at_its_deadline_and_not_stacked(tmp_path):
    """One process's comm is a FIFO with no writer: reading it blocks in open(2), as a
    read of a process's memory-locked /proc files can."""
    from collectors import facts

    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    os.mkfifo(top / "proc" / "101" / "comm")
    snaps = facts.Snapshots(deadline=0.3)
    started = time.time()
    t0 = time.monotonic()
    with pytest.raises(facts.FactsTimeout):
        snaps.take(Roots.under(top), None)
    assert 0.3 <= time.monotonic() - t0 < 1.0
    stuck = snaps._running[0]
    with pytest.raises(facts.FactsTimeout):  # waits for the stuck one, starts no second
        snaps.take(Roots.under(top), None)
    assert snaps._running[0] is stuck and stuck.daemon
    fd = os.open(top / "proc" / "101" / "comm", os.O_WRONLY)  # free it: a new snapshot can come
    plain = top / "proc" / "101" / "comm.plain"
    plain.write_text("init\n")
    plain.replace(top / "proc" / "101" / "comm")
    os.write(fd, b"init\n")
    os.close(fd)
    stuck.join(5)
    snap = snaps.take(Roots.under(top), None)
    assert snap["taken_at"] >= started and snaps._running[0] is not stuck
