"""Readers on their own threads while the write thread ingests and compacts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from diag.model import Sample
from diag.store import SqliteStore

T0 = 1_700_006_400
NSER = 40


def test_readers_during_writes_and_compaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", head_span=600)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []
    written = [0]

    def writer() -> None:
        try:
            b = 0
            while not stop.is_set() and b < 3000:
                store.write("a", [Sample("load_1", {"n": str(i)}, float(b), T0 + 10.0 * b) for i in range(NSER)])
                b += 1
                written[0] = b
                if b % 50 == 0:  # a compaction every 500 s of data, head_span 600 s
                    store.maintain(T0 + 10.0 * b)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            last = 0
            while not stop.is_set():
                low = written[0]  # batches acknowledged before this read began
                df = store.query("load_1", start=T0, end=T0 + 10.0 * 4000, step=10, agg="count")
                per_batch = df.groupby("ts").value.sum()
                # Never a point twice (head and chunk), never half a batch.
                assert (per_batch == NSER).all(), per_batch[per_batch != NSER]
                n = len(per_batch)
                assert n >= low and n >= last, (n, low, last)
                # Buckets are consecutive batches: none missing in the middle.
                assert per_batch.index.max() == T0 + 10.0 * (n - 1) if n else True
                last = n
                seen.append(n)
                s = store.query("load_1", labels={"n": "3"}, start=T0, end=T0 + 40000, step=60, agg="max")
                assert s.value.is_monotonic_increasing
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    store.close()
    assert not errors, errors[0]
    assert written[0] == 3000 and len(seen) > 20 and time.monotonic() - t0 < 120
