"""A full diagnosis of one instance over 12 h of 10 s data, beside one collection cycle.

    .venv/bin/python bench/diagnose.py [--runs 20]

The data: this machine's own series (one real collection gives every metric and label
set), repeated every 10 s for 12 h with values that wander, written through the store
and compacted as the service would. Prints the median and p90 of a full diagnosis
(all checks) against the 300 ms target, and the CPU time of a collection cycle.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diag.config import load  # noqa: E402
from diag.model import Sample  # noqa: E402
from diag.service import Service  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--hours", type=float, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(load(env={}, data_dir=tmp))
        service.collect()
        time.sleep(1)
        template = service.cycle.run().samples
        now = time.time()
        start = now - args.hours * 3600
        rnd = random.Random(1)
        series = [(s.metric, s.labels, s.value) for s in template]
        steps = int(args.hours * 3600 / 10)
        t0 = time.perf_counter()
        for i in range(steps):
            ts = start + i * 10
            service.store.write(service.instance_id,
                                [Sample(m, lab, max(0.0, v + rnd.uniform(-1, 1)), ts) for m, lab, v in series])
        load_s = time.perf_counter() - t0
        service.maintain(now)  # compaction into chunks and roll-ups, as the scheduler does
        service.instances.seen(service.instance_id, now)
        service.diagnose(now=now)  # warm: imports, facts snapshot
        costs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            service.diagnose(now=now)
            costs.append(time.perf_counter() - t0)
        cycle = []
        for _ in range(50):
            c0 = time.process_time()
            service.cycle.run()
            cycle.append(time.process_time() - c0)
            time.sleep(0.01)
        service.close()

    med, p90 = statistics.median(costs), sorted(costs)[int(0.9 * len(costs)) - 1]
    print(f"data: {len(series)} series x {steps} instants = {len(series) * steps:,} points "
          f"(loaded in {load_s:.1f} s)")
    print(f"{'measure':<36}{'ms':>10}{'target':>10}")
    print(f"{'full diagnosis, median':<36}{med * 1000:>10.1f}{'< 300':>10}")
    print(f"{'full diagnosis, p90':<36}{p90 * 1000:>10.1f}{'':>10}")
    print(f"{'one collection cycle, CPU median':<36}{statistics.median(cycle) * 1000:>10.2f}{'':>10}")
    print(f"ratio diagnosis / collection cycle: {med / statistics.median(cycle):.0f}x "
          f"(a diagnosis runs every 5 min, a cycle every 10 s)")


if __name__ == "__main__":
    main()
