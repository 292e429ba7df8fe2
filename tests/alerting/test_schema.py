"""The alerting tables of an older diag.db are brought to today's shape in place: alerts
became per series, which changes the alerts table's UNIQUE constraint."""

from __future__ import annotations

import sqlite3

import pytest
from tests.alerting.alerting_helpers import T0, make_service, policy, put, states

from diag.alerting import schema

# The alerts table as it was before alerts had series.
OLD_ALERTS = """CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY, policy_id TEXT NOT NULL, condition TEXT NOT NULL, instance_id TEXT NOT NULL,
    state TEXT NOT NULL, severity TEXT NOT NULL, value REAL, started_at REAL, fired_at REAL, resolved_at REAL,
    last_notified_at REAL, updated_at REAL NOT NULL, episode INTEGER NOT NULL DEFAULT 0,
    notices INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}',
    UNIQUE (policy_id, condition, instance_id))"""
COLUMNS = ("alert_id, policy_id, condition, instance_id, state, severity, value, started_at, fired_at, resolved_at, "
           "last_notified_at, updated_at, episode, notices, detail")
COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}]


def old_database(data_dir) -> tuple[str, dict]:
    """A data dir whose diag.db has a firing alert in the old alerts table; (policy id, that alert)."""
    svc = make_service(data_dir)
    try:
        svc.instances.register("web1", hostname="web1")
        pid = policy(svc, conditions=COND)
        put(svc, "web1", "cpu_usage", T0, [95, 95, 95])
        svc.alerting.evaluate(now=T0 + 61)
        (alert,) = svc.alerting.repo.alerts(None, pid)
        with svc.db.write() as c:
            c.execute("ALTER TABLE alerts RENAME TO alerts_today")
            c.execute(OLD_ALERTS)
            c.execute(f"INSERT INTO alerts ({COLUMNS}) SELECT {COLUMNS} FROM alerts_today")
            c.execute("DROP TABLE alerts_today")
    finally:
        svc.close()
    return pid, alert


def unique_columns(db) -> list[list[str]]:
    out = []
    for idx in db.read("PRAGMA index_list(alerts)"):
        if idx["unique"] and idx["origin"] == "u":
            out.append([r["name"] for r in db.read(f"PRAGMA index_info({idx['name']})")])
    return out


def test_an_old_database_keeps_its_alerts_when_the_new_code_opens_it(tmp_path):
    pid, before = old_database(tmp_path / "data")
    svc = make_service(tmp_path / "data")
    try:
        assert unique_columns(svc.db) == [["policy_id", "condition", "instance_id", "series"]]
        (after,) = svc.alerting.repo.alerts(None, pid)
        assert after == {**before, "series": {}}  # same id, state, times, detail
        svc.alerting.evaluate(now=T0 + 121)  # the same alert goes on firing: no second one
        assert states(svc, pid) == {("web1", "conditions[0]"): "firing"}
        assert [a["alert_id"] for a in svc.alerting.repo.alerts(None, pid)] == [before["alert_id"]]
    finally:
        svc.close()


class _DiesBeforeTheSwap:
    """A connection whose process is killed after the copy and before the old table goes."""

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c

    def execute(self, sql: str, *args):
        if sql.startswith("DROP TABLE alerts"):
            raise KeyboardInterrupt("killed")
        return self.c.execute(sql, *args)


def test_a_migration_killed_half_way_leaves_the_old_table_whole_and_runs_again(tmp_path):
    pid, before = old_database(tmp_path / "data")
    from diag.db import Database

    db = Database(tmp_path / "data" / "diag.db")
    with pytest.raises(KeyboardInterrupt), db.write() as c:
        schema._migrate(_DiesBeforeTheSwap(c))
    assert unique_columns(db) == [["policy_id", "condition", "instance_id"]]
    assert [r["alert_id"] for r in db.read("SELECT alert_id FROM alerts")] == [before["alert_id"]]
    assert not db.read("SELECT name FROM sqlite_master WHERE name = 'alerts_new'")
    db.close()
    svc = make_service(tmp_path / "data")
    try:
        assert [a["alert_id"] for a in svc.alerting.repo.alerts(None, pid)] == [before["alert_id"]]
    finally:
        svc.close()
