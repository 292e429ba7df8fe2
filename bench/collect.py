"""CPU cost of one full collection cycle, beside one node_exporter scrape, same machine, same run.

    .venv/bin/python bench/collect.py [--cycles 200] [--scrapes 100] [--idle-procs 300] [--serve-minutes 0]

Prints a table: our median CPU seconds per cycle, node_exporter's CPU seconds per
scrape (read from its /proc/<pid>/stat), and the ratio, plain and with N extra idle
processes running. With --serve-minutes M it also runs `diag serve` for M minutes and
prints its resident memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors import registry  # noqa: E402
from collectors.roots import Roots  # noqa: E402
from collectors.runner import CollectionCycle  # noqa: E402
from collectors.settings import CollectorSettings  # noqa: E402
from tests.conftest import ServeProcess, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def our_cycle(cycles: int, state_dir: Path) -> tuple[float, dict[str, float]]:
    cycle = CollectionCycle(registry.build(Roots(), CollectorSettings(state_dir=state_dir)))
    cycle.run()  # baseline reading and the first full read of the kernel log
    costs, per = [], {c.name: [] for c in cycle.collectors}
    for _ in range(cycles):
        t0 = time.process_time()
        cycle.run()
        costs.append(time.process_time() - t0)
        for name, d in cycle.durations.items():
            per[name].append(d)
        time.sleep(0.01)  # let counters move a little, as between real cycles
    return statistics.median(costs), {k: statistics.median(v) for k, v in per.items()}


def node_exporter_scrape(scrapes: int) -> float | None:
    exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exe is None:
        return None
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(5):  # warm up
            urllib.request.urlopen(url, timeout=10).read()
        before = proc_cpu_seconds(proc.pid)
        for _ in range(scrapes):
            urllib.request.urlopen(url, timeout=10).read()
        return (proc_cpu_seconds(proc.pid) - before) / scrapes
    finally:
        proc.terminate()
        proc.wait()


def serve_rss(minutes: float, data_dir: Path) -> float:
    served = ServeProcess(data_dir)
    try:
        served.wait_ready()
        deadline = time.time() + minutes * 60
        while time.time() < deadline:
            time.sleep(10)
            try:
                urllib.request.urlopen(served.url + "/metrics", timeout=5).read()
            except OSError:
                pass
        return proc_rss_mb(served.proc.pid)
    finally:
        served.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=100)
    ap.add_argument("--idle-procs", type=int, default=300)
    ap.add_argument("--serve-minutes", type=float, default=0)
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("as is", 0), (f"+{args.idle_procs} idle processes", args.idle_procs)):
            sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(extra)]
            try:
                ours, per = our_cycle(args.cycles, Path(tmp) / f"state{extra}")
                theirs = node_exporter_scrape(args.scrapes)
            finally:
                for p in sleepers:
                    p.kill()
                for p in sleepers:
                    p.wait()
            rows.append((label, ours, theirs, per))

        print(f"{'machine':<26}{'diag cycle CPU ms':>18}{'node_exporter scrape CPU ms':>30}{'ratio':>8}{'target':>8}")
        for label, ours, theirs, _ in rows:
            ratio = f"{ours / theirs:.2f}" if theirs else "n/a"
            ne = f"{theirs * 1000:.2f}" if theirs else "not installed"
            print(f"{label:<26}{ours * 1000:>18.2f}{ne:>30}{ratio:>8}{'<= 0.5':>8}")
        print("\nper collector, median wall ms (as is):")
        for name, sec in sorted(rows[0][3].items(), key=lambda kv: -kv[1]):
            print(f"  {name:<14}{sec * 1000:8.3f}")
        if args.serve_minutes:
            rss = serve_rss(args.serve_minutes, Path(tmp) / "serve-data")
            print(f"\ndiag serve RSS after {args.serve_minutes:g} min: {rss:.1f} MB (target < 150 MB)")


if __name__ == "__main__":
    main()
