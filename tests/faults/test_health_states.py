"""Health state transitions through the real service: Initializing, Ok, Warning,
Maintaining, and for an instance known only through ingest, InsufficientData then Impaired
(state.stopped) when it falls silent."""

import json
import socket
import time

from tests.conftest import HOST_T0, HOST_T1, http, own_kmsg
from tests.faults.helpers import diagnose, health, wait_for


def test_local_instance_goes_initializing_ok_warning_maintaining(serve, tmp_path):
    cfg = tmp_path / "slow-first-diagnosis.yaml"
    cfg.write_text("diagnose_every: 1h\n")
    # Its own kernel log: faults other tests made for real stay in the host's ring buffer.
    p = serve("--interval", "2s", "--config", str(cfg), "--kmsg", str(own_kmsg(tmp_path)))
    me = json.loads(http("GET", p.url + "/healthz")[2])["instance_id"]
    assert health(p.url, me)["health_status"] == "Initializing"
    # CPU usage is a rate: it exists from the second collection on.
    assert wait_for(lambda: "\ndiag_cpu_usage_ratio{" in http("GET", p.url + "/metrics")[2].decode())

    # This machine as it is: healthy. The suite itself may load the CPU for a moment
    # (access.cpu_load_now reads the latest sample), so give it time to settle.
    report = wait_for(lambda: (r := diagnose(p.url, window="12h"))["health_status"] == "Ok" and r) \
        or diagnose(p.url, window="12h")
    bad = [(c["id"], c["status"], c["message"]) for c in report["checks"] if c["status"] in ("warning", "critical")]
    assert report["health_status"] == "Ok" and not bad, bad
    assert health(p.url, me)["health_status"] == "Ok"

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(2000):
        tx.sendto(b"x" * 512, rx.getsockname())
    rx.close()
    tx.close()
    warned = wait_for(lambda: (r := diagnose(p.url))["health_status"] == "Warning" and r)
    assert warned and [r["check_id"] for r in warned["health_reasons"]] == ["network.kernel_drops"]

    status, _, raw = http("POST", p.url + "/api/v1/events",
                          {"type": "SystemMaintenance.Reboot", "not_before": time.time(), "duration": "10m"})
    assert status == 201, raw
    event = json.loads(raw)
    assert health(p.url, me)["health_status"] == "Maintaining"
    assert http("POST", f"{p.url}/api/v1/events/{event['event_id']}/cancel")[0] == 409  # it is executing

    later = json.loads(http("POST", p.url + "/api/v1/events", {"type": "SystemMaintenance.Stop",
                                                                "not_before": time.time() + 3600})[2])
    assert later["status"] == "Scheduled"
    canceled = json.loads(http("POST", f"{p.url}/api/v1/events/{later['event_id']}/cancel")[2])
    assert canceled["status"] == "Canceled"


# The fixture machine's faults (a read-only disk, OOM kills, dropped packets): zero here.
_FAULTS = ("fs_readonly", "fs_forced_readonly", "oom_kills", "tcp_listen_overflows", "tcp_listen_drops",
           "udp_rcvbuf_errors", "udp_sndbuf_errors", "softnet_dropped")


def _agent_samples(now: float, kmsg) -> list[dict]:
    """What a healthy agent pushes: two readings of the fixture machine (the second has the
    rates) with its fault counters at zero, so most checks can be judged; CPU, memory and
    uptime alone leave an instance InsufficientData."""
    from collectors import registry
    from collectors.runner import CollectionCycle
    from collectors.settings import CollectorSettings

    collectors = registry.build(HOST_T0.with_(kmsg=kmsg), CollectorSettings())
    cycle = CollectionCycle(collectors)
    cycle.run(now - 10)
    for c in collectors:
        c.roots = HOST_T1.with_(kmsg=kmsg)
    return [{"metric": s.metric, "labels": s.labels, "value": 0.0 if s.metric in _FAULTS else s.value, "ts": now - i}
            for i in range(5) for s in cycle.run(now).samples]


def test_ingest_only_instance_falls_silent(serve, tmp_path):
    cfg = tmp_path / "stopped-fast.yaml"
    cfg.write_text("checks:\n  state.stopped: {seconds: 8}\n")
    p = serve("--interval", "1s", "--config", str(cfg))
    now = time.time()
    samples = _agent_samples(now, own_kmsg(tmp_path))
    status, _, raw = http("POST", p.url + "/api/v1/ingest",
                          {"instance_id": "agent-x", "hostname": "x", "samples": samples})
    assert status == 202, raw
    report = diagnose(p.url, instance_id="agent-x")
    assert report["health_status"] not in ("Initializing", "InsufficientData", "Impaired"), report["health_reasons"]
    # An agent that sends only CPU, memory and uptime: no check failed, but most were not judged.
    thin = [{"metric": m, "labels": {}, "value": v, "ts": now - i} for i in range(5)
            for m, v in (("cpu_usage", 12.0), ("mem_usage", 40.0), ("uptime", 1000.0 + i))]
    assert http("POST", p.url + "/api/v1/ingest", {"instance_id": "agent-thin", "samples": thin})[0] == 202
    judged = diagnose(p.url, instance_id="agent-thin")
    assert judged["health_status"] == "InsufficientData", judged["health_reasons"]
    assert judged["health_reasons"][0]["message"].endswith("applicable checks cannot be judged")
    assert "storage.disk_usage" in {r["check_id"] for r in judged["health_reasons"]}
    assert wait_for(lambda: health(p.url, "agent-x")["health_status"] == "InsufficientData", timeout=6, every=0.2)
    stopped = wait_for(lambda: (h := health(p.url, "agent-x"))["health_status"] == "Impaired" and h, timeout=15)
    assert stopped and stopped["health_reasons"][0]["check_id"] == "state.stopped"
    listed = json.loads(http("GET", p.url + "/api/v1/instances")[2])["instances"]
    assert {"agent-x", stopped["instance_id"]} <= {i["instance_id"] for i in listed}
    # It comes back: the next diagnosis clears state.stopped (an earlier silence is only a warning).
    now = time.time()
    samples = _agent_samples(now, own_kmsg(tmp_path))
    # interval: the agent now says it sends every 60 s, so a slow test machine cannot make it look silent again
    assert http("POST", p.url + "/api/v1/ingest", {"instance_id": "agent-x", "samples": samples, "interval": 60})[0] == 202
    back = diagnose(p.url, instance_id="agent-x")
    assert next(c for c in back["checks"] if c["id"] == "state.stopped")["status"] != "critical"
    assert health(p.url, "agent-x")["health_status"] not in ("Impaired", "InsufficientData")
