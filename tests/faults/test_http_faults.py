"""The HTTP service under real faults: a SIGKILL in the middle of ingest, a full disk."""

from __future__ import annotations

from http import client as httpclient
import json
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

from tests.conftest import http
from tests.faults.helpers import tmpfs, wait_for

METRIC = "faults_ingest_probe"
SERIES = 20  # per batch: a batch is stored whole or not at all, so every series must agree


def _batch(i: int, base: float) -> dict:
    # One distinct second per batch: a count over 1 s steps then says how often it is stored.
    return {"batch_id": f"kill-{i}",
            "samples": [{"metric": METRIC, "labels": {"k": str(k)}, "value": float(i), "ts": base + i}
                        for k in range(SERIES)]}


class Sender(threading.Thread):
    """Posts batches as fast as one keep-alive connection allows until the server goes away."""

    def __init__(self, port: int, base: float) -> None:
        super().__init__(daemon=True)
        self.port, self.base = port, base
        self.acked: list[int] = []
        self.other: list[int] = []  # any answer but 202 before the kill is a failure
        self.sent = 0

    def run(self) -> None:
        conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=10)
        i = 0
        while i < 10_000:
            body = json.dumps(_batch(i, self.base))
            try:
                conn.request("POST", "/api/v1/ingest", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
            except (OSError, httpclient.HTTPException):
                return  # killed: this batch's fate is unknown, and that is allowed
            self.sent = i + 1
            (self.acked if r.status == 202 else self.other).append(i)
            i += 1


def _counts(url: str, base: float, n: int) -> dict[str, dict[float, float]]:
    status, _, raw = http("GET", f"{url}/api/v1/query?metric={METRIC}&start={base}&end={base + n}"
                                 f"&step=1s&agg=count")
    assert status == 200, raw
    return {s["labels"]["k"]: {t: v for t, v in s["points"]} for s in json.loads(raw)["series"]}


def _integrity(db: Path, into: Path) -> str:
    # A copy (file and WAL) is checked, so the restart below recovers the untouched files.
    into.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", into / f"{db.name}{suffix}")
    conn = sqlite3.connect(into / db.name)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_sigkill_during_ingest_keeps_every_acknowledged_batch_once(serve, tmp_path):
    p = serve("--interval", "1s")
    base = float(int(time.time()) - 3 * 3600)
    sender = Sender(p.port, base)
    sender.start()
    assert wait_for(lambda: len(sender.acked) >= 300 or not sender.is_alive(), timeout=60, every=0.05)
    p.proc.send_signal(signal.SIGKILL)  # mid-stream: the sender is still posting
    p.proc.wait(10)
    sender.join(15)
    assert not sender.is_alive()
    assert not sender.other, f"answers other than 202 before the kill: {sender.other[:5]}"
    acked = sender.acked
    assert len(acked) >= 300 and acked == list(range(len(acked)))

    assert _integrity(p.data_dir / "metrics.db", tmp_path / "copy") == "ok"

    q = serve("--interval", "1s", data_dir=p.data_dir)
    counts = _counts(q.url, base, sender.sent + 2)
    assert sorted(counts, key=int) == [str(k) for k in range(SERIES)]
    for k, points in counts.items():
        for i in acked:
            assert points.get(base + i) == 1, f"batch {i}, series k={k}: count {points.get(base + i)}"
        # The batch in flight at the kill may or may not be there, but never twice.
        assert all(v == 1 for v in points.values()), k
    # Retrying an acknowledged batch after the restart is acknowledged and not stored again.
    status, _, raw = http("POST", q.url + "/api/v1/ingest", _batch(acked[-1], base))
    assert status == 202 and json.loads(raw)["duplicate"] is True
    assert _counts(q.url, base, sender.sent + 2)["0"][base + acked[-1]] == 1


def _fill(path: Path) -> Path:
    """Write until the filesystem refuses: ENOSPC for every writer after us."""
    filler = path / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:  # the last partial MiB
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _big_batch(n: int, tag: str) -> dict:
    now = time.time()
    # New series each time: the store must allocate pages for them, not reuse free ones.
    return {"samples": [{"metric": "faults_disk_probe", "labels": {"tag": tag, "k": str(k)}, "value": 1.0,
                         "ts": now} for k in range(n)]}


def test_full_disk_keeps_answering_and_recovers(serve, tmp_path):
    with tmpfs(tmp_path / "small", "size=24m") as mnt:
        p = serve("--interval", "1s", data_dir=mnt / "data")
        assert http("POST", p.url + "/api/v1/ingest", _big_batch(100, "before"))[0] == 202
        filler = _fill(mnt)
        try:
            # Ingest: 507 with the JSON error shape once the store needs a page it cannot get.
            answers: list[tuple[int, bytes]] = []

            def refused() -> bool:
                status, _, raw = http("POST", p.url + "/api/v1/ingest", _big_batch(5000, f"full{len(answers)}"))
                answers.append((status, raw))
                return status == 507

            assert wait_for(refused, timeout=60, every=0.2), answers[-3:]
            err = json.loads(answers[-1][1])["error"]
            assert err["code"] == "InsufficientStorage" and "Traceback" not in err["message"]
            assert {s for s, _ in answers} <= {202, 507}, answers

            # The collection's own writes fail too: said so as a Store.Error event.
            def store_error() -> list:
                status, _, raw = http("GET", p.url + "/api/v1/events?type=Store.Error")
                assert status == 200, raw
                return json.loads(raw)["events"]

            assert wait_for(store_error, timeout=60), p.output()
            # Reads keep working while the disk is full.
            status, _, raw = http("GET", p.url + "/api/v1/query?metric=cpu_usage&start=-5m")
            assert status == 200, raw
            status, _, raw = http("GET", p.url + "/healthz")
            body = json.loads(raw)
            assert status == 200 or (status == 503 and any(f.startswith("store") for f in body["failing"])), body
            assert p.proc.poll() is None
        finally:
            filler.unlink()
        # Room again: writes succeed without a restart.
        assert wait_for(lambda: http("POST", p.url + "/api/v1/ingest", _big_batch(100, "after"))[0] == 202,
                        timeout=30), p.output()
        assert wait_for(lambda: http("GET", p.url + "/healthz")[0] == 200, timeout=30), p.output()
        status, _, raw = http("GET", p.url + "/api/v1/query?metric=faults_disk_probe&start=-5m&tag=after&agg=count")
        assert status == 200 and len(json.loads(raw)["series"]) == 100, raw
        p.stop()
