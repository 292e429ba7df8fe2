"""Instances keeps last_seen in memory between writes: readers must never see it stale,
and an unchanged register() must not hide a real change of hostname or labels."""

from __future__ import annotations

from pathlib import Path

from diag.db import Database
from diag.instances import SEEN_FLUSH_EVERY, Instances


def _row_last_seen(db: Database, iid: str) -> float | None:
    return db.read("SELECT last_seen FROM instances WHERE instance_id = ?", (iid,))[0]["last_seen"]


def test_seen_within_the_flush_interval_is_read_from_memory_and_flushed_later(tmp_path: Path) -> None:
    db = Database(tmp_path / "diag.db")
    inst = Instances(db)
    inst.register("a", hostname="h1")
    inst.seen("a", 100.0, now=1000.0)
    inst.seen("a", 110.0, now=1000.0 + SEEN_FLUSH_EVERY / 2)
    assert _row_last_seen(db, "a") == 100.0  # the second one was held back...
    assert inst.get("a")["last_seen"] == 110.0  # ...but no reader sees the older value
    assert [i["last_seen"] for i in inst.list()] == [110.0]
    inst.seen("a", 120.0, now=1000.0 + SEEN_FLUSH_EVERY)
    assert _row_last_seen(db, "a") == 120.0
    inst.seen("a", 130.0, now=1000.0 + SEEN_FLUSH_EVERY + 1)
    inst.flush()
    assert _row_last_seen(db, "a") == 130.0
    assert Instances(db).get("a")["last_seen"] == 130.0  # a new reader, from the row alone


def test_register_writes_only_changes(tmp_path: Path) -> None:
    db = Database(tmp_path / "diag.db")
    inst = Instances(db)
    inst.register("a", hostname="h1", labels={"team": "x"})
    inst.register("a")  # empty hostname and labels keep what the row has
    assert (inst.get("a")["hostname"], inst.get("a")["labels"]) == ("h1", {"team": "x"})
    inst.register("a", hostname="h2", labels={"team": "x"})
    assert inst.get("a")["hostname"] == "h2"
    inst.register("a", hostname="h2", labels={"team": "y"})
    assert inst.get("a")["labels"] == {"team": "y"}
    inst.register("a", local=True)
    assert inst.get("a")["local"] is True


def test_scheduled_diagnosis_skips_instances_that_never_sent_anything(tmp_path):
    from diag.config import load
    from diag.service import Service

    s = Service(load(env={}, data_dir=str(tmp_path / "svc")))
    try:
        s.instances.register("agent-silent", hostname="quiet")
        s.collect()
        s.diagnose_all()
        assert s.reports.list("agent-silent") == []
        assert [r["instance_id"] for r in s.reports.list()] == [s.instance_id]
        assert s.health_of("agent-silent")["health_status"] == "Initializing"
    finally:
        s.close()
