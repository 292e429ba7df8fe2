"""The service's configured checks, the events it raises from check results, and stored
reports across a schema change, over a real Service (store, diag.db, web app)."""

from __future__ import annotations

import json
import sqlite3
import time

from diag.config import load
from diag.db import Database
from diag.model import Sample
from diag.reports import Reports
from diag.service import Service
from diag.web.app import create_app

FS = {"mountpoint": "/srv/data", "device": "/dev/vdz1", "fstype": "ext4"}


def test_checks_and_default_policies_carry_the_configured_thresholds(tmp_path):
    cfg = tmp_path / "diag.yaml"
    cfg.write_text("checks:\n  performance.cpu: {percent: 75}\n  storage.disk_usage: {warning: 80, critical: 95}\n")
    service = Service(load(cfg, env={}, data_dir=str(tmp_path / "data")))
    try:
        client = create_app(service).test_client()
        got = {c["id"]: c for c in client.get("/api/v1/checks").get_json()["checks"]}
        assert got["performance.cpu"]["thresholds"] == {"percent": 75, "window_seconds": 300}
        assert got["storage.disk_usage"]["thresholds"] == {"warning": 80, "critical": 95}
        assert got["performance.memory"]["thresholds"]["percent"] == 90  # not overridden: the default
        policies = {p["policy_id"]: p for p in client.get("/api/v1/alert-policies").get_json()["policies"]}
        assert policies["default-cpu"]["conditions"][0]["threshold"] == 75
        assert [c["threshold"] for c in policies["default-disk"]["conditions"]] == [80, 95]
    finally:
        service.close()


def test_rules_export_of_a_new_data_dir_uses_the_configured_thresholds(tmp_path):
    from diag.alerting.cli import export_rules

    cfg = tmp_path / "diag.yaml"
    cfg.write_text("checks:\n  performance.memory: {percent: 70}\n")
    out = tmp_path / "rules.yml"
    assert export_rules(load(cfg, env={}, data_dir=str(tmp_path / "none")), str(out)) == 0
    text = out.read_text()
    assert "mem_usage" in text and ">= 70" in text


def _service(tmp_path) -> Service:
    return Service(load(env={}, data_dir=str(tmp_path / "data")))


def test_a_filesystem_that_turned_read_only_is_a_disk_readonly_event_once(tmp_path):
    service = _service(tmp_path)
    try:
        now = time.time()
        iid = service.instance_id
        service.store.write(iid, [Sample("fs_readonly", FS, 0.0, now - 60), Sample("fs_readonly", FS, 1.0, now - 30),
                                  Sample("fs_readonly", FS, 1.0, now - 5)])
        report = service.diagnose(iid, 3600, ["storage.readonly"], now=now)
        assert report["checks"][0]["status"] == "critical"
        [event] = [e for e in service.events.list(iid) if e["type"] == "Disk.ReadOnly"]
        assert event["level"] == "CRITICAL" and "/srv/data" in event["details"]["message"]
        assert event["details"]["labels"]["device"] == "/dev/vdz1"
        # Still read-only at the next diagnosis: the same event, not a second one.
        service.store.write(iid, [Sample("fs_readonly", FS, 1.0, now + 5)])
        service.diagnose(iid, 3600, ["storage.readonly"], now=now + 10)
        assert [e["event_id"] for e in service.events.list(iid) if e["type"] == "Disk.ReadOnly"] == [event["event_id"]]
        # Remounted rw: the check clears; the event it raised is no evidence of its own
        # (it would otherwise read as a kernel report of an unmonitored device).
        service.store.write(iid, [Sample("fs_readonly", FS, 0.0, now + 15)])
        r = service.diagnose(iid, 3600, ["storage.readonly"], now=now + 20)["checks"][0]
        assert r["status"] == "ok" and not r["evidence"]["unmatched_events"], r
    finally:
        service.close()


def test_a_full_filesystem_is_a_disk_full_event_that_names_its_check(tmp_path):
    service = _service(tmp_path)
    try:
        now = time.time()
        iid = service.instance_id
        service.store.write(iid, [Sample("fs_usage", FS, 99.0, now - 5)])
        assert service.diagnose(iid, 3600, ["storage.disk_usage"], now=now)["checks"][0]["status"] == "critical"
        [event] = [e for e in service.events.list(iid) if e["type"] == "Disk.Full"]
        assert event["details"]["labels"] == {"check_id": "storage.disk_usage"}
        assert "/srv/data" in event["details"]["message"]
    finally:
        service.close()


def test_a_kernel_reported_read_only_remount_is_not_raised_twice(tmp_path):
    service = _service(tmp_path)
    try:
        now = time.time()
        iid = service.instance_id
        service.events.detected(iid, "Disk.ReadOnly", now - 20, "EXT4-fs (vdz1): Remounting filesystem read-only",
                                labels={"device": "vdz1"}, fold_key="readonly_remount|vdz1")
        service.store.write(iid, [Sample("fs_readonly", FS, 0.0, now - 60), Sample("fs_readonly", FS, 1.0, now - 5)])
        assert service.diagnose(iid, 3600, ["storage.readonly"], now=now)["checks"][0]["status"] == "critical"
        assert len([e for e in service.events.list(iid) if e["type"] == "Disk.ReadOnly"]) == 1
    finally:
        service.close()


def test_reports_of_an_older_database_gain_health_reasons(tmp_path):
    path = tmp_path / "diag.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE reports (report_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, created_at REAL NOT NULL, "
        "window_start REAL NOT NULL, window_end REAL NOT NULL, health_status TEXT NOT NULL, summary TEXT NOT NULL, "
        "checks TEXT NOT NULL, full INTEGER NOT NULL DEFAULT 1);")
    old.execute("INSERT INTO reports VALUES ('r-old', 'i-1', 1.0, 0.0, 1.0, 'Ok', ?, '[]', 1)", (json.dumps({"ok": 0}),))
    old.commit()
    old.close()
    db = Database(path)
    try:
        reports = Reports(db)
        assert reports.get("r-old")["health_reasons"] == []  # not kept then; the row still reads
        reasons = [{"check_id": "storage.disk_usage", "status": "critical", "message": "/ is 99 % full"}]
        reports.save({"report_id": "r-new", "instance_id": "i-1", "created_at": 2.0, "window": {"start": 1.0, "end": 2.0},
                      "health_status": "Impaired", "health_reasons": reasons, "summary": {}, "checks": [], "full": True})
        assert reports.get("r-new")["health_reasons"] == reasons
    finally:
        db.close()
    Database(path).close()  # opening it again changes nothing


def test_an_agent_is_judged_by_its_own_interval(tmp_path):
    """A 60 s agent is not InsufficientData 30 s after a push to a server that collects every 10 s."""
    from diag.model import SampleColumns

    s = Service(load(env={}, data_dir=str(tmp_path / "d"), interval="10s"))
    try:
        now = time.time()
        for iid, interval in (("slow-1", 60.0), ("plain-1", None)):
            s.ingest(iid, SampleColumns([("cpu_usage",)], [1.0], [now]), [], interval=interval)
            s.diagnose(iid, now=now)
        assert s.instances.get("slow-1")["interval"] == 60.0
        later = now + 45  # over 3 of the server's intervals, under one of the agent's
        plain, slow = s.health_of("plain-1", later), s.health_of("slow-1", later)
        assert plain["health_status"] == "InsufficientData"
        assert "3 intervals of 10s" in plain["health_reasons"][0]["message"]
        assert not any("intervals of" in r["message"] for r in slow["health_reasons"])
        # a later batch without an interval keeps the one the agent gave
        s.ingest("slow-1", SampleColumns([("cpu_usage",)], [1.0], [now + 1]), [])
        assert s.instances.get("slow-1")["interval"] == 60.0
    finally:
        s.close()


def test_an_agents_top_processes_are_evidence_at_its_cpu_peak(tmp_path):
    from diag.model import SampleColumns

    s = Service(load(env={}, data_dir=str(tmp_path / "d")))
    try:
        now = time.time()
        for i in range(90):  # 15 minutes at 10 s: CPU pinned at 97 % by java
            ts = now - 900 + i * 10
            procs = {"by_cpu": [{"pid": 4242, "name": "java", "cpu_percent": 190.0, "rss_bytes": 2 << 30}],
                     "by_memory": [{"pid": 4242, "name": "java", "cpu_percent": 190.0, "rss_bytes": 2 << 30}]}
            s.ingest("busy-1", SampleColumns([("cpu_usage",), ("mem_usage",)], [97.0, 30.0], [ts, ts]), [],
                     batch_id=f"b{i}", processes=procs)
        cpu = next(c for c in s.diagnose("busy-1", window=3600, now=now)["checks"] if c["id"] == "performance.cpu")
        assert cpu["status"] in ("warning", "critical")
        assert cpu["evidence"]["top_processes"][0]["name"] == "java"
        assert "java" in cpu["recommendation"]
    finally:
        s.close()
