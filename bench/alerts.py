"""Benchmark: one evaluation cycle of 1,000 policies over 100 instances (100,000
condition-instance pairs), against the embedded store.

Data: 100 instances x 10 metrics x the last hour at 10 s (360,000 points), values
uniform in 0-100 with a per-series offset so some policies fire. Policies: each one
condition on one of the 10 metrics, a statistic from avg/min/max/sum/last, a period of
1 or 5 minutes, `>=` or `<`, a threshold in 50-99, 1-5 consecutive periods, targets
all instances. Conditions that read a series the same way share one store query.

Measured (wall time, this machine): the first cycle (alerts are created: pending and
firing rows, history) and a steady-state cycle (the same verdicts again), each with
the store's share (time inside store.query). Target: under 2 s a cycle.

Run: `.venv/bin/python bench/alerts.py` (about a minute, most of it loading data).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

# The repo root goes first, so `diag` imports from this checkout.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from diag.config import load  # noqa: E402
from diag.model import Sample  # noqa: E402
from diag.service import Service  # noqa: E402

METRICS = [f"bench_metric_{i}" for i in range(10)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=100)
    args = ap.parse_args()
    rnd = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(load(env={}, data_dir=tmp, interval=10, alerting={"defaults": False}))
        now = time.time()
        t0 = now // 3600 * 3600 - 3600
        insts = [f"i-{k:03d}" for k in range(args.instances)]
        offsets = {(i, m): rnd.uniform(-20, 20) for i in insts for m in METRICS}
        load_start = time.perf_counter()
        for step in range(int((now - t0) // 10)):
            ts = t0 + step * 10
            for i in insts:
                svc.store.write(i, [Sample(m, {}, min(100.0, max(0.0, rnd.uniform(30, 90) + offsets[(i, m)])), ts)
                                    for m in METRICS])
        for i in insts:
            svc.instances.register(i, hostname=i)
        print(f"loaded {len(insts) * len(METRICS) * int((now - t0) // 10):,} points in "
              f"{time.perf_counter() - load_start:.1f} s")
        for n in range(args.policies):
            svc.alerting.save_policy({
                "name": f"p{n}", "missing_data": rnd.choice(["insufficient", "ok", "breaching", "keep"]),
                "conditions": [{"metric": rnd.choice(METRICS), "statistic": rnd.choice(["avg", "min", "max", "sum", "last"]),
                                "period": rnd.choice([60, 300]), "comparison": rnd.choice([">=", "<"]),
                                "threshold": rnd.randint(50, 99), "consecutive": rnd.randint(1, 5)}]})
        pairs = args.policies * (len(insts) + 1)  # + the local instance, which has no data
        for label in ("first cycle", "steady cycle"):
            st = svc.alerting.evaluate(now=now)
            share = st["store_seconds"] / st["seconds"]
            print(f"{label}: {pairs:,} condition-instance pairs in {st['seconds']:.3f} s "
                  f"(store {st['store_seconds']:.3f} s = {share:.0%}, {int(st['queries'])} queries); "
                  f"{int(st['changes'])} alert changes")
        counts = svc.alerting.repo.counts()
        print("alerts:", {f"{s}/{v}": n for (s, v), n in sorted(counts.items())})
        svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
