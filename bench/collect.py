"""CPU cost of one full collection cycle, beside one node_exporter scrape, same machine, same run.

    .venv/bin/python bench/collect.py [--cycles 200] [--scrapes 200] [--idle-procs 300] [--serve-minutes 0] [--systemd-units 50] [--sensors 20]

Prints a table: our CPU seconds per cycle, node_exporter's CPU seconds per scrape (from its threads' /proc/<pid>/task/*/schedstat), scraped as Prometheus
does (gzip) and as plain text, and the ratios, on the machine as is and with N extra
idle processes running. Both sides are measured alike: a 10 ms pause
before each cycle or scrape (caches cool down as between real ones), and both the mean (what
the machine pays over time: the figure the target is for, since some readings are taken every
few cycles only) and the median. With --serve-minutes M it also runs `diag serve` for M
minutes and prints its resident memory.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors import registry  # noqa: E402
from collectors.roots import Roots  # noqa: E402
from collectors.runner import CollectionCycle  # noqa: E402
from collectors.settings import CollectorSettings  # noqa: E402
from tests.conftest import ServeProcess, free_port  # noqa: E402
from bench.containers import container_cgroups  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class Cost(NamedTuple):
    """CPU seconds per cycle or scrape over a run."""

    mean: float
    median: float

    @classmethod
    def of(cls, costs: list[float]) -> "Cost":
        return cls(statistics.fmean(costs), statistics.median(costs))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fake_systemd(top: Path, units: int) -> Path:
    """`units` systemd units, a fifth failed and a tenth restarting in a loop, answered by
    the fake systemctl of tests/fixtures/systemd (put first on PATH here); returns the
    root whose run/systemd/system says systemd runs. Its listing (two systemctl runs, about
    2 ms of our CPU) is refreshed every 60 ms instead of 60 s: about once per 5 cycles
    here, as once per 6 cycles of a 10 s interval, so the refresh thread's CPU falls into
    the measured cycles as often as in service."""
    from collectors import systemd

    scenario = top / "systemd"
    (scenario / "show").mkdir(parents=True)
    (scenario / "root" / "run" / "systemd" / "system").mkdir(parents=True)
    lines = []
    for i in range(units):
        name = f"app{i:02d}.service"
        active, sub = ("failed", "failed") if i % 5 == 0 else ("activating", "auto-restart") if i % 10 == 1 \
            else ("active", "running")
        lines.append(f"{name} loaded {active} {sub} Application {i}")
        (scenario / "show" / name).write_text(f"Id={name}\nActiveState={active}\nSubState={sub}\n"
                                              f"Result={'exit-code' if active != 'active' else 'success'}\n"
                                              f"NRestarts={i % 10 == 1 and 5 or 0}\nInactiveEnterTimestamp=\n")
    (scenario / "list-units").write_text("\n".join(lines) + "\n")
    os.environ["DIAG_FAKE_SYSTEMD"] = str(scenario)
    fixtures = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "systemd" / "bin"
    os.environ["PATH"] = f"{fixtures}{os.pathsep}{os.environ['PATH']}"
    systemd.REFRESH_S = 0.06
    return scenario / "root"


def sensor_tree(top: Path, sensors: int = 20) -> Path:
    """A /sys and /proc with `sensors` hwmon sensors (CPU temperatures with limits, fans,
    two NVMe drives read through the deadline worker as on a real server), 2 EDAC memory
    controllers, 8 cores' thermal_throttle counters and two md arrays, one resyncing; the
    hardware collector of the cycle reads this instead of the VM's empty /sys."""
    from collectors.hardware import MAX_SENSORS

    sensors = min(sensors, MAX_SENSORS)
    hw = top / "hardware"

    def w(rel: str, text: str) -> None:
        (hw / rel).parent.mkdir(parents=True, exist_ok=True)
        (hw / rel).write_text(text + "\n")

    # Two NVMe drives, up to five fans, the rest CPU temperatures.
    nvme = min(2, sensors)
    fans = min(5, sensors - nvme)
    temps = sensors - nvme - fans
    w("sys/class/hwmon/hwmon0/name", "coretemp")
    for i in range(1, temps + 1):
        w(f"sys/class/hwmon/hwmon0/temp{i}_input", str(40000 + 1000 * i))
        w(f"sys/class/hwmon/hwmon0/temp{i}_label", "Package id 0" if i == 1 else f"Core {i - 2}")
        w(f"sys/class/hwmon/hwmon0/temp{i}_max", "84000")
        w(f"sys/class/hwmon/hwmon0/temp{i}_crit", "100000")
    w("sys/class/hwmon/hwmon1/name", "nct6775")
    for i in range(1, fans + 1):
        w(f"sys/class/hwmon/hwmon1/fan{i}_input", str(900 + 100 * i))
    for i in range(nvme):
        w(f"sys/class/hwmon/hwmon{2 + i}/name", "nvme")
        w(f"sys/class/hwmon/hwmon{2 + i}/temp1_input", "38850")
        w(f"sys/class/hwmon/hwmon{2 + i}/temp1_label", "Composite")
        w(f"sys/class/hwmon/hwmon{2 + i}/temp1_max", "84850")
        os.symlink(f"nvme{i}", hw / f"sys/class/hwmon/hwmon{2 + i}/device")
    for mc in ("mc0", "mc1"):
        w(f"sys/devices/system/edac/mc/{mc}/ce_count", "0")
        w(f"sys/devices/system/edac/mc/{mc}/ue_count", "0")
    for cpu in range(8):
        w(f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", str(cpu))
        w(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", "0")
        w(f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count", "0")
        w(f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/package_throttle_count", "0")
    w("proc/mdstat", "Personalities : [raid1]\n"
                     "md0 : active raid1 sdb1[1] sda1[0]\n      248896 blocks [2/2] [UU]\n\n"
                     "md1 : active raid1 sdb2[1] sda2[0]\n      195310144 blocks [2/2] [UU]\n"
                     "      [=>...................]  resync =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec\n\n"
                     "unused devices: <none>")
    return hw


def our_cycle(cycles: int, state_dir: Path, systemd_root: Path | None = None,
              hardware_top: Path | None = None) -> tuple[Cost, dict[str, float]]:
    collectors = registry.build(Roots(), CollectorSettings(state_dir=state_dir))
    if hardware_top is not None:
        collectors = [type(c)(Roots(proc=hardware_top / "proc", sys=hardware_top / "sys"), CollectorSettings())
                      if c.name == "hardware" else c for c in collectors]
    if systemd_root is not None:
        collectors = [type(c)(Roots(root=systemd_root), CollectorSettings(state_dir=state_dir))
                      if c.name == "systemd" else c for c in collectors]
    cycle = CollectionCycle(collectors)
    cycle.run()  # baseline reading and the first full read of the kernel log
    costs, per = [], {c.name: [] for c in cycle.collectors}
    last = time.process_time()
    for _ in range(cycles):
        time.sleep(0.01)  # let counters move a little, as between real cycles
        cycle.run()
        now = time.process_time()  # all our threads, from the end of one cycle to the next
        costs.append(now - last)
        last = now
        for name, d in cycle.durations.items():
            per[name].append(d)
    return Cost.of(costs), {k: statistics.fmean(v) for k, v in per.items()}


def proc_cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of every thread of a process (schedstat's first field): the
    clock time.process_time() reads for our own process, at the same resolution."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended between the listing and the read
    return total


# What Prometheus sends with each scrape: it takes gzip, over a kept-alive connection.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
              "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def node_exporter_scrape(scrapes: int) -> tuple[Cost, Cost] | None:
    """CPU seconds per scrape: (as Prometheus scrapes, plain uncompressed text).

    Each is measured like our cycles: a 10 ms pause, then the scrape; the window runs
    from the end of one scrape to the end of the next, so work the exporter does after
    answering (its garbage collector) is counted too. One kept-alive connection, as
    Prometheus holds, so the run leaves no TIME_WAIT sockets for our next cycle to count.
    """
    exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exe is None:
        return None
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def scrape(headers: dict[str, str]) -> None:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"node_exporter answered {resp.status}")

    def cost(headers: dict[str, str]) -> Cost:
        for _ in range(5):  # warm up
            scrape(headers)
        costs, last = [], proc_cpu_ns(proc.pid)
        for _ in range(scrapes):
            time.sleep(0.01)
            scrape(headers)
            now = proc_cpu_ns(proc.pid)
            costs.append((now - last) / 1e9)
            last = now
        return Cost.of(costs)

    try:
        for _ in range(100):
            try:
                scrape({})
                break
            except OSError:
                conn.close()
                time.sleep(0.1)
        return cost(PROMETHEUS_HEADERS), cost({})
    finally:
        conn.close()
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
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--idle-procs", type=int, default=300)
    ap.add_argument("--serve-minutes", type=float, default=0)
    ap.add_argument("--containers", type=int, default=200,
                    help="synthetic container cgroups made for the run (root only); 0: the machine as is")
    ap.add_argument("--systemd-units", type=int, default=50,
                    help="units (failed, restarting or active) fed through a fake systemctl; 0: the machine as is")
    ap.add_argument("--sensors", type=int, default=20,
                    help="hwmon sensors (with EDAC, throttle and md arrays) in a tree the hardware collector reads; "
                         "0: the machine as is")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp, container_cgroups(args.containers) as made:
        print(made)
        units_root = fake_systemd(Path(tmp), args.systemd_units) if args.systemd_units else None
        hw_top = sensor_tree(Path(tmp), args.sensors) if args.sensors else None
        for label, extra in (("as is", 0), (f"+{args.idle_procs} idle processes", args.idle_procs)):
            sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(extra)]
            try:
                ours, per = our_cycle(args.cycles, Path(tmp) / f"state{extra}", units_root, hw_top)
                theirs = node_exporter_scrape(args.scrapes)
            finally:
                for p in sleepers:
                    p.kill()
                for p in sleepers:
                    p.wait()
            rows.append((label, ours, theirs, per))

        print(f"{'machine':<22}{'':<8}{'diag cycle':>12}{'node_exporter scrape':>24}{'ratio':>7}"
              f"{'plain scrape':>14}{'ratio':>7}{'target':>8}")
        print(f"{'':<30}{'CPU ms':>12}{'as Prometheus, CPU ms':>24}{'':>7}{'CPU ms':>14}")
        for label, ours, theirs, _ in rows:
            for stat in ("mean", "median"):
                us = getattr(ours, stat)
                if theirs is None:
                    print(f"{label:<22}{stat:<8}{us * 1000:>12.2f}   node_exporter not installed")
                    continue
                prom, plain = (getattr(t, stat) for t in theirs)
                print(f"{label:<22}{stat:<8}{us * 1000:>12.2f}{prom * 1000:>24.2f}{us / prom:>7.2f}"
                      f"{plain * 1000:>14.2f}{us / plain:>7.2f}{'<= 0.5' if stat == 'mean' else '':>8}")
                label = ""
        print("\nper collector, mean wall ms (as is):")
        for name, sec in sorted(rows[0][3].items(), key=lambda kv: -kv[1]):
            print(f"  {name:<14}{sec * 1000:8.3f}")
        if args.serve_minutes:
            rss = serve_rss(args.serve_minutes, Path(tmp) / "serve-data")
            print(f"\ndiag serve RSS after {args.serve_minutes:g} min: {rss:.1f} MB (target < 150 MB)")


if __name__ == "__main__":
    main()
