"""The diagnosis engine over a real SqliteStore: checks see every collected point."""

from __future__ import annotations

import pytest

from diag import diagnosis
from diag.db import Database
from diag.events import EventLog
from diag.model import Sample
from diag.store import SqliteStore

LABELS = {"mountpoint": "/data", "device": "/dev/vdb", "fstype": "ext4"}


def context(store: SqliteStore, events: EventLog, now: float) -> diagnosis.StoreContext:
    return diagnosis.StoreContext(store=store, events=events, instance_id="i-1", start=now - 3600, end=now, now=now,
                                  interval=1.0, monitoring_since=now - 3600, bandwidth_caps={}, service_ports=[],
                                  facts=lambda: (None, None), processes=lambda at: {})


def test_two_collections_in_one_second_are_both_seen(tmp_path):
    # A late cycle followed at once by an on-time one lands two points in the same second;
    # the first (still read-write) must not be hidden by the second (read-only).
    store = SqliteStore(tmp_path / "metrics.db")
    t = 1_800_000_000.2
    store.write("i-1", [Sample("fs_readonly", LABELS, 0.0, t), Sample("fs_readonly", LABELS, 1.0, t + 0.5)])
    ctx = context(store, EventLog(Database(tmp_path / "diag.db")), t + 2)
    try:
        frame = ctx.series("fs_readonly")
        assert frame["value"].tolist() == [0.0, 1.0]
        assert frame["ts"].tolist() == [pytest.approx(t, abs=1e-3), pytest.approx(t + 0.5, abs=1e-3)]
        check = diagnosis.select(diagnosis.configured({}), ["storage.readonly"])[0]
        got = diagnosis.run_checks(ctx, [check])[0]
        assert got["status"] == "critical", got
        assert "/data" in got["message"]
    finally:
        store.close()


def test_a_check_that_raises_is_unknown_with_the_error_and_the_others_still_run(tmp_path):
    import dataclasses

    store = SqliteStore(tmp_path / "metrics.db")
    t = 1_800_000_000.0
    store.write("i-1", [Sample("fs_usage", LABELS, 99.5, t - 5)])
    ctx = context(store, EventLog(Database(tmp_path / "diag.db")), t)

    def broken(ctx, check):
        raise ZeroDivisionError("division by zero")

    def bad_status(ctx, check):
        return dataclasses.replace(real[0].evaluate(ctx, real[0]), status="fine")

    try:
        real = diagnosis.select(diagnosis.configured({}), ["storage.disk_usage", "storage.inode_usage"])
        checks = [dataclasses.replace(real[1], evaluate=broken), real[0],
                  dataclasses.replace(real[1], id="test.bad_status", evaluate=bad_status)]
        got = diagnosis.run_checks(ctx, checks)
        assert [r["id"] for r in got] == ["storage.inode_usage", "storage.disk_usage", "test.bad_status"]
        assert got[0]["status"] == "unknown"
        assert "ZeroDivisionError" in got[0]["message"] and "division by zero" in got[0]["evidence"]["error"]
        assert got[1]["status"] == "critical" and "/data" in got[1]["message"]  # ran after the broken one
        assert got[2]["status"] == "unknown" and "'fine'" in got[2]["message"]
    finally:
        store.close()


def test_one_pass_makes_the_report_its_health_and_the_events_its_checks_raised(tmp_path):
    from diag.health import HealthState

    store = SqliteStore(tmp_path / "metrics.db")
    t = 1_800_000_000.0
    store.write("i-1", [Sample("fs_usage", LABELS, 99.5, t - 5)])
    ctx = context(store, EventLog(Database(tmp_path / "diag.db")), t)
    judged = []

    def judge(checks, report_id):
        judged.append((checks, report_id))
        return HealthState("i-1", "Impaired", [{"check_id": "storage.disk_usage"}], t, report_id)

    try:
        checks = diagnosis.select(diagnosis.configured({}), ["storage.disk_usage", "storage.inode_usage"])
        found = diagnosis.diagnose(ctx, checks, full=False, judge=judge)
        report = found.report.to_json()
        [(seen, report_id)] = judged
        assert report_id == report["report_id"] and seen == report["checks"]
        assert report["health_status"] == found.health.status == "Impaired"
        assert report["summary"] == {"ok": 0, "warning": 0, "critical": 1, "unknown": 1, "not_applicable": 0}
        assert [(e.type, e.source) for e in found.events] == [("Disk.Full", "storage.disk_usage")]
    finally:
        store.close()
