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
                                  facts=lambda: (None, None), processes=lambda: {})


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
