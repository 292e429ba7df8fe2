"""Top processes kept as evidence: the busiest snapshot of each 5 minutes, found again by
the time of a peak, kept across a restart and expired after the lookback."""

from __future__ import annotations

from diag.db import Database
from diag.process_history import BUCKET, KEEP, ProcessHistory

T0 = 1_800_000_000.0 - 1_800_000_000.0 % BUCKET  # a bucket start


def snap(name: str, cpu: float) -> dict:
    return {"by_cpu": [{"pid": 1, "name": name, "cpu_percent": cpu, "rss_bytes": 1}], "by_memory": []}


def test_the_busiest_of_each_bucket_is_kept_and_found_by_time(tmp_path):
    h = ProcessHistory(Database(tmp_path / "d.db"))
    h.add("i", T0 + 10, snap("idle", 1))
    h.add("i", T0 + 20, snap("java", 90))  # the busiest of the first bucket
    h.add("i", T0 + 30, snap("cron", 5))
    h.add("i", T0 + BUCKET + 10, snap("sshd", 2))  # the next bucket: the first one is written
    assert h.at("i", T0 + 200)["by_cpu"][0]["name"] == "java"
    assert h.at("i", T0 + 200)["ts"] == T0 + 20
    assert h.at("i", T0 + BUCKET + 100)["by_cpu"][0]["name"] == "sshd"  # the open bucket, from memory
    assert h.at("i")["by_cpu"][0]["name"] == "sshd"  # the latest
    assert h.at("i", T0 - BUCKET) == {}  # nothing kept then
    assert h.at("other", T0) == {}


def test_the_open_bucket_survives_a_restart_and_old_ones_expire(tmp_path):
    db = Database(tmp_path / "d.db")
    h = ProcessHistory(db)
    h.add("i", T0 + 10, snap("java", 90))
    h.flush()  # what close() does
    db.close()
    again = ProcessHistory(Database(tmp_path / "d.db"))
    assert again.at("i", T0 + 100)["by_cpu"][0]["name"] == "java"
    again.expire(T0 + KEEP + BUCKET)
    assert again.at("i", T0 + 100) == {}


def test_empty_snapshots_are_not_kept(tmp_path):
    h = ProcessHistory(Database(tmp_path / "d.db"))
    h.add("i", T0, {"by_cpu": [], "by_memory": []})
    assert h.at("i") == {}
