"""CpuCollector against the fixture tree (exact numbers) and this machine's /proc."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from collectors.cpu import CpuCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch

HZ = os.sysconf("SC_CLK_TCK")
PERCENTS = ("cpu_usage", "cpu_user", "cpu_system", "cpu_iowait", "cpu_steal", "cpu_core_usage", "psi_cpu_some")


def values(batch: Batch, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in batch.samples + batch.totals if s.metric == metric}


def one(batch: Batch, metric: str, **labels: str) -> float | None:
    return values(batch, metric).get(tuple(sorted(labels.items())))


def run_fixture(settings: CollectorSettings | None = None) -> tuple[Batch, Batch]:
    c = CpuCollector(HOST_T0, settings or CollectorSettings())
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def test_fixture_first_cycle_has_levels_but_no_percentages():
    first, _ = run_fixture()
    assert not [s for s in first.samples if s.metric in PERCENTS]
    assert (one(first, "load_1"), one(first, "load_5"), one(first, "load_15")) == (0.02, 0.12, 0.06)
    assert one(first, "procs_running") == 1
    assert one(first, "procs_blocked") == 0
    # t0 cpu line: 4202 0 1909 62234 328 0 63 21 (guest 0 0 not exported)
    jiffies = dict(user=4202, nice=0, system=1909, idle=62234, iowait=328, irq=0, softirq=63, steal=21)
    assert {k[0][1]: v for k, v in values(first, "cpu_seconds_total").items()} == {m: j / HZ for m, j in jiffies.items()}


def test_fixture_percentages():
    _, b = run_fixture()
    # t1 - t0, all cores: user +300 nice +100 system +150 idle +1200 iowait +100 irq +20
    # softirq +30 steal +100 = 2000 jiffies (guest +50 is inside user, not counted twice).
    assert one(b, "cpu_user") == 20.0  # (300 + 100) / 2000
    assert one(b, "cpu_system") == 10.0  # (150 + 20 + 30) / 2000
    assert one(b, "cpu_iowait") == 5.0
    assert one(b, "cpu_steal") == 5.0
    assert one(b, "cpu_usage") == 35.0  # everything but idle and iowait
    # cpu0: 1000 jiffies, idle 600 + iowait 30; cpu1: 1000, idle 600 + iowait 70
    assert one(b, "cpu_core_usage", cpu="0") == 37.0
    assert one(b, "cpu_core_usage", cpu="1") == 33.0
    assert (one(b, "load_1"), one(b, "load_5"), one(b, "load_15")) == (1.5, 0.75, 0.25)
    assert one(b, "psi_cpu_some") == 10.0  # total= +1 000 000 µs over 10 s
    assert (one(b, "procs_running"), one(b, "procs_blocked")) == (3, 2)


def test_fixture_raw_counters_by_kernel_name():
    _, b = run_fixture(CollectorSettings(raw_counters=True))
    # t1: "cpu  4502 100 2059 63434 428 20 93 121 50 0", "cpu1 2953 50 1021 30995 181 10 75 111 25 0"
    c = b.counters
    assert (c["stat.cpu.user"], c["stat.cpu.nice"], c["stat.cpu.idle"], c["stat.cpu.steal"]) == (4502, 100, 63434, 121)
    assert (c["stat.cpu1.system"], c["stat.cpu1.iowait"], c["stat.cpu1.softirq"]) == (1021, 181, 75)
    assert "stat.cpu.guest" not in c  # guest is inside user: not read
    assert c["pressure.cpu.some.total"] == 6935977 and c["pressure.cpu.full.total"] == 0
    # the service does not ask for them: a cycle does not pay for them
    assert run_fixture()[1].counters == {}


def test_fixture_names_are_in_the_catalogue():
    first, b = run_fixture()
    for s in first.samples + first.totals + b.samples + b.totals:
        assert set(s.labels) == set(get(s.metric).labels), s


def test_counters_going_backwards_start_a_new_baseline():
    c = CpuCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    back = c.collect(1010.0)
    assert not [s for s in back.samples if s.metric in PERCENTS]
    c.roots = HOST_T1
    again = c.collect(1020.0)  # t0 -> t1 again: the same round numbers
    assert one(again, "cpu_usage") == 35.0
    assert one(again, "psi_cpu_some") == 10.0


def test_no_psi_gives_no_sample(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc" / "pressure")
    c = CpuCollector(Roots.under(tmp_path), CollectorSettings())
    c.collect(1000.0)
    b = c.collect(1010.0)
    assert one(b, "psi_cpu_some") is None
    assert one(b, "load_1") == 0.02


def test_without_stat_load_and_pressure_are_still_read(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    (tmp_path / "proc" / "stat").unlink()
    b = CpuCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "load_1") == 0.02
    assert one(b, "procs_running") is None and not values(b, "cpu_seconds_total")
    assert b.errors == ["stat:FileNotFoundError"]


def test_a_bad_loadavg_costs_only_the_load(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    (tmp_path / "proc" / "loadavg").write_text("\n")
    b = CpuCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "load_1") is None
    assert one(b, "cpu_seconds_total", mode="user") is not None and one(b, "procs_running") is not None
    assert b.errors == ["loadavg:ValueError"]


def test_a_bad_pressure_file_costs_only_psi(tmp_path: Path):
    for t, src in (("t0", HOST_T0), ("t1", HOST_T1)):
        shutil.copytree(src.proc, tmp_path / t / "proc")
    (tmp_path / "t1" / "proc" / "pressure" / "cpu").write_text("some avg10=0.00 total=12x\n")
    c = CpuCollector(Roots.under(tmp_path / "t0"), CollectorSettings())
    c.collect(1000.0)
    c.roots = Roots.under(tmp_path / "t1")
    b = c.collect(1010.0)
    assert one(b, "psi_cpu_some") is None
    assert one(b, "cpu_usage") is not None and one(b, "load_1") is not None
    assert b.errors == ["pressure/cpu:ValueError"]


def test_an_empty_proc_gives_nothing_and_counts_each_missing_file(tmp_path: Path):
    (tmp_path / "proc").mkdir()
    b = CpuCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert b.samples == [] and b.totals == []
    # No PSI is a kernel without it (psi=0), not a failure.
    assert b.errors == ["stat:FileNotFoundError", "loadavg:FileNotFoundError"]


def _stat_jiffies() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def test_live_machine():
    c = CpuCollector(Roots(), CollectorSettings(raw_counters=True))
    c.collect(time.time())
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # some user time of our own in the interval
        pass
    before = _stat_jiffies()
    b = c.collect(time.time())
    after = _stat_jiffies()

    usage = one(b, "cpu_usage")
    assert usage is not None and 0 < usage <= 100
    parts = [one(b, m) for m in ("cpu_user", "cpu_system", "cpu_iowait", "cpu_steal")]
    assert all(p is not None and 0 <= p <= 100 for p in parts)
    assert usage == pytest.approx(parts[0] + parts[1] + parts[3])  # busy = user + system + steal
    assert parts[0] > 0
    cores = values(b, "cpu_core_usage")
    n_cores = sum(1 for line in Path("/proc/stat").read_text().splitlines() if line[:3] == "cpu" and line[3].isdigit())
    assert len(cores) == n_cores
    assert all(0 <= v <= 100 for v in cores.values())
    assert sum(cores.values()) / len(cores) == pytest.approx(usage, abs=15)

    # Raw totals: what /proc/stat said at the same moment.
    totals = {k[0][1]: v for k, v in values(b, "cpu_seconds_total").items()}
    modes = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    for mode, lo, hi in zip(modes, before, after):
        assert lo / HZ <= totals[mode] <= hi / HZ, mode
        assert lo <= b.counters[f"stat.cpu.{mode}"] <= hi, mode
    assert sum(1 for k in b.counters if k.endswith(".user") and k[8:9].isdigit()) == n_cores

    load = Path("/proc/loadavg").read_text().split()
    assert one(b, "load_1") == pytest.approx(float(load[0]), abs=0.5)
    assert one(b, "procs_running") >= 1  # this test is running
    if Path("/proc/pressure/cpu").exists():
        psi = one(b, "psi_cpu_some")
        assert psi is not None and 0 <= psi <= 100


def test_psi_share_is_capped_at_100_when_our_clock_lags_the_kernels():
    c = CpuCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T1
    b = c.collect(1000.5)  # +1 s of stall in what our wall clock calls 0.5 s
    assert one(b, "psi_cpu_some") == 100.0


def test_usage_never_above_100_when_no_idle_time(tmp_path: Path):
    # Deltas user 1, system 1, irq 1, softirq 2, steal 1, idle 0: the float sum of the shares
    # is 100.00000000000001; a percentage above 100 is not a valid reading.
    shutil.copytree(HOST_T0.proc, tmp_path / "t0" / "proc")
    shutil.copytree(HOST_T0.proc, tmp_path / "t1" / "proc")
    stat = tmp_path / "t1" / "proc" / "stat"
    lines = stat.read_text().splitlines()
    f = [int(v) for v in lines[0].split()[1:]]
    for i, d in enumerate((1, 0, 1, 0, 0, 1, 2, 1)):
        f[i] += d
    lines[0] = "cpu  " + " ".join(map(str, f))
    stat.write_text("\n".join(lines) + "\n")
    c = CpuCollector(Roots.under(tmp_path / "t0"), CollectorSettings())
    c.collect(1000.0)
    c.roots = Roots.under(tmp_path / "t1")
    b = c.collect(1010.0)
    assert one(b, "cpu_usage") == 100.0
    assert one(b, "cpu_iowait") == 0.0
