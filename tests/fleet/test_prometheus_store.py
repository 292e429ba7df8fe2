"""PrometheusStore over a real VictoriaMetrics: the same data gives the same check results
as the embedded store; the engine down gives `unknown` results with the reason."""

from __future__ import annotations

import math
import time

import pytest
from tests.fleet.vm_helpers import VictoriaMetrics

from diag import catalogue, diagnosis
from diag.db import Database
from diag.events import EventLog
from diag.model import Sample
from diag.store import SqliteStore
from diag.store.prometheus import EngineUnavailable, PrometheusStore

LABEL_VALUES = {"cpu": "0", "device": "vda", "fstype": "ext4", "interface": "eth0", "kind": "x", "mountpoint": "/",
                "scope": "public", "state": "established", "rule": "NfsTimeout", "collector": "disk",
                "app": "postgres", "chip": "coretemp", "sensor": "Core 0", "array": "md0", "action": "resync",
                "controller": "mc0", "unit": "nginx.service", "result": "exit-code",
                "container": "web", "runtime": "docker", "cgroup": "/system.slice/docker-a1.scope",
                "file": "backup.prom", "gpu": "0", "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-5b1c0e42",
                "pci": "0000:3b:00"}
STEP = 10.0
# Checks that read facts or events (kernel log, boot id changes) rather than metric
# series, and network.public_ip, which reports what it finds and never fails.
NOT_METRIC_BASED = {"access.default_route", "access.firewall", "access.nic_config", "access.port_listening",
                    "access.root_login", "access.ssh_files", "access.sshd", "network.public_ip",
                    "state.kernel_fault", "state.reboot", "storage.io_errors", "hardware.gpu_xid"}
SPAN = 3 * 3600.0


def _value(m: catalogue.Metric, failing: bool, i: int, n: int) -> float:
    """A level per metric: healthy is calm, failing is what every check calls bad."""
    wobble = (i % 7) * 0.5
    if m.name == "uptime":
        return 100000.0 + i * STEP
    if failing and m.name in ("disk_read_iops", "disk_write_iops") and n // 2 <= i < n // 2 + 10:
        return 0.0  # 100 s of I/O in flight and none completed: a hang
    if failing and m.name == "disk_util":
        return 100.0
    if m.name in ("fs_readonly", "fs_forced_readonly"):
        return 1.0 if failing and i > n // 2 else 0.0
    if m.name in ("net_up", "net_carrier"):
        return 1.0
    if m.name.startswith("systemd_"):
        return 1.0 if failing and i > n // 2 else 0.0  # a unit failed, restarting once per interval
    if m.name in ("md_degraded", "md_disks_failed"):
        return 1.0 if failing and i > n // 2 else 0.0  # a member failed: the mirror runs on one disk
    if m.name in ("hw_temperature", "hw_temperature_max", "hw_temperature_crit", "hw_fan_speed"):
        return {"hw_temperature": (105.0 if failing else 45.0) + wobble, "hw_temperature_max": 84.0,
                "hw_temperature_crit": 100.0, "hw_fan_speed": 1200.0}[m.name]
    if m.name in ("gpu_temperature", "gpu_temperature_slowdown"):  # the GPU's own slowdown limit is 92 °C
        return (95.0 if failing else 50.0) + wobble if m.name == "gpu_temperature" else 92.0
    if m.unit == "bool" or m.name == "fs_stuck":
        return 0.0  # no stalled collector, no held log condition, no mount waiting
    if m.unit == "percent":
        return (97.0 + wobble / 2) if failing else (10.0 + wobble)
    if m.kind == "delta":
        return (5.0 if i % 3 == 0 else 0.0) if failing else 0.0
    if m.name in ("mem_total", "net_link_speed"):
        return 8e9 if m.name == "mem_total" else 1e9
    if m.name == "mem_available":
        return 1e8 if failing else 6e9
    if m.unit == "ms":
        return 900.0 + wobble if failing else 2.0 + wobble
    if m.name.startswith(("load_", "procs_")):
        return 40.0 + wobble if failing else 0.5
    return (1e6 + 1000 * wobble) if failing else (1000.0 + 10 * wobble)


def synthetic(end: float, failing: bool) -> list[Sample]:
    n = int(SPAN / STEP)
    out = []
    for i in range(n):
        if failing and n // 4 <= i < n // 4 + 40:
            continue  # 400 s without a sample: the agent was silent for a while
        ts = end - SPAN + i * STEP
        for m in catalogue.METRICS:
            out.append(Sample(m.name, {k: LABEL_VALUES[k] for k in m.labels}, _value(m, failing, i, n), ts))
    return out


def run(store, events: EventLog, instance_id: str, now: float) -> dict[str, dict]:
    ctx = diagnosis.StoreContext(store=store, events=events, instance_id=instance_id, start=now - 12 * 3600, end=now,
                                 now=now, interval=STEP, monitoring_since=now - SPAN, bandwidth_caps={},
                                 service_ports=[], facts=lambda: (None, None), processes=lambda at: {})
    return {r["id"]: r for r in diagnosis.run_checks(ctx, diagnosis.configured({}))}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    now = math.floor(time.time() / STEP) * STEP - 5 * STEP
    vm = VictoriaMetrics(tmp)
    sqlite = SqliteStore(tmp / "metrics.db")
    for iid, failing in (("healthy-1", False), ("failing-1", True)):
        samples = synthetic(now, failing)
        sqlite.write(iid, samples)
        vm.import_samples(iid, samples)
    events = EventLog(Database(tmp / "diag.db"))
    yield sqlite, PrometheusStore(vm.url), events, now
    sqlite.close()
    vm.stop()


@pytest.mark.parametrize("instance_id", ["healthy-1", "failing-1"])
def test_every_check_agrees_between_the_embedded_store_and_victoriametrics(stores, instance_id):
    sqlite, prom, events, now = stores
    embedded, engine = run(sqlite, events, instance_id, now), run(prom, events, instance_id, now)
    assert sorted(embedded) == sorted(engine)
    differ = {cid: (embedded[cid]["status"], engine[cid]["status"], engine[cid]["message"])
              for cid in embedded if embedded[cid]["status"] != engine[cid]["status"]}
    assert differ == {}
    statuses = [r["status"] for r in engine.values()]
    if instance_id == "failing-1":  # the data really exercises the failing side of every metric check
        passing = {cid for cid, r in engine.items() if r["status"] in ("ok", "unknown")}
        assert passing <= NOT_METRIC_BASED, {cid: engine[cid]["message"] for cid in passing - NOT_METRIC_BASED}
    else:
        assert "critical" not in statuses


def test_buckets_and_points_match_the_embedded_store(stores):
    sqlite, prom, _, now = stores
    for agg in ("avg", "min", "max", "sum", "count", "last"):
        for step in (1.0, 60.0, 300.0):
            a = sqlite.query("fs_usage", instance_id="failing-1", start=now - 3600, end=now, step=step, agg=agg)
            b = prom.query("fs_usage", instance_id="failing-1", start=now - 3600, end=now, step=step, agg=agg)
            assert list(a["ts"]) == list(b["ts"]), (agg, step)
            assert list(a["value"]) == pytest.approx(list(b["value"])), (agg, step)
            assert list(b["mountpoint"].unique()) == ["/"]
    latest = prom.latest("uptime", instance_id="healthy-1")
    assert latest["ts"].tolist() == sqlite.latest("uptime", instance_id="healthy-1")["ts"].tolist()
    assert set(prom.instance_ids()) >= {"healthy-1", "failing-1"}
    assert "fs_usage" in prom.metric_names("healthy-1")


def test_the_engine_down_gives_unknown_checks_with_the_reason(tmp_path):
    from tests.conftest import free_port

    dead = PrometheusStore(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(EngineUnavailable, match="unreachable"):
        dead.query("cpu_usage", instance_id="a", start=0, end=60, step=10)
    events = EventLog(Database(tmp_path / "diag.db"))
    now = time.time()
    results = run(dead, events, "a", now)
    metric_checks = [r for r in results.values() if "metrics engine" in r["message"]]
    assert metric_checks and all(r["status"] == "unknown" for r in metric_checks)


def test_after_a_failure_the_engine_is_not_asked_again_for_a_while():
    import socket
    import threading

    # A real engine address that takes each connection and drops it: requests fails at once.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        store = PrometheusStore(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2, retry_after=3600)
        for _ in range(5):
            with pytest.raises(EngineUnavailable, match="unreachable"):
                store.query("cpu_usage", instance_id="a", start=0, end=60, step=10)
        assert len(accepted) <= 2  # the first query's connection (requests may retry once), then none
        first = len(accepted)
        store.retry_after = 0  # the pause is over: the next query asks the engine again
        with pytest.raises(EngineUnavailable):
            store.query("cpu_usage", instance_id="a", start=0, end=60, step=10)
        assert len(accepted) > first
    finally:
        server.close()


def test_the_server_finds_instances_from_the_engines_instance_id_values(stores, tmp_path):
    from diag.config import load
    from diag.service import Service

    _, prom, _, now = stores
    s = Service(load(env={}, data_dir=str(tmp_path / "d"), store_url=prom.url))
    try:
        s.sync_instances()
        found = {i["instance_id"]: i for i in s.instances.list()}
        assert {"healthy-1", "failing-1"} <= set(found)  # known only through the engine, never pushed
        assert found["healthy-1"]["last_seen"] == pytest.approx(now - STEP, abs=STEP)  # its newest sample
    finally:
        s.close()


def test_a_forgotten_instance_is_not_brought_back_by_the_engines_old_samples(stores, tmp_path):
    from diag.config import load
    from diag.service import Service

    _, prom, _, _ = stores
    s = Service(load(env={}, data_dir=str(tmp_path / "d"), store_url=prom.url))
    try:
        s.sync_instances()
        s.forget_instance("healthy-1")
        s.sync_instances()  # the engine still holds its samples, none newer than the forgetting
        ids = {i["instance_id"] for i in s.instances.list()}
        assert "healthy-1" not in ids and "failing-1" in ids
    finally:
        s.close()


@pytest.mark.parametrize("metric", ["cpu_usage", "disk_await_read", "net_in", "oom_kills", "udp_rcvbuf_errors",
                                    "kernel_signals"])
def test_exposed_names_and_units_read_back_as_the_catalogue_s(stores, metric):
    """The engine holds /metrics' names and units (`diag_cpu_usage_ratio`, seconds, bytes per
    second, counters for per-interval counts); the store answers in the catalogue's."""
    sqlite, prom, _, now = stores
    for agg, step in (("sum", 60.0), ("max", 300.0), ("last", 1.0)):
        a = sqlite.query(metric, instance_id="failing-1", start=now - 3600, end=now, step=step, agg=agg)
        b = prom.query(metric, instance_id="failing-1", start=now - 3600, end=now, step=step, agg=agg)
        assert not a.empty and list(a["ts"]) == list(b["ts"]), (agg, step)
        assert list(a["value"]) == pytest.approx(list(b["value"])), (agg, step)
    assert prom.latest(metric, instance_id="failing-1")["value"].tolist() == pytest.approx(
        sqlite.latest(metric, instance_id="failing-1")["value"].tolist())
    assert metric in prom.metric_names("failing-1")
