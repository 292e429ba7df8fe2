"""MemoryCollector against the fixture tree (exact numbers) and this machine's /proc."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from collectors.memory import MemoryCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch

PSI = ("psi_memory_some", "psi_memory_full", "psi_io_some", "psi_io_full")


def one(batch: Batch, metric: str) -> float | None:
    found = [s.value for s in batch.samples + batch.totals if s.metric == metric]
    assert len(found) <= 1, metric
    return found[0] if found else None


def run_fixture(settings: CollectorSettings | None = None) -> tuple[Batch, Batch]:
    c = MemoryCollector(HOST_T0, settings or CollectorSettings())
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def test_fixture_first_cycle():
    b, _ = run_fixture()
    # MemTotal 16 000 000 kB, MemAvailable 12 000 000 kB, no swap, vmstat oom_kill 2
    assert one(b, "mem_total") == 16_000_000 * 1024
    assert one(b, "mem_available") == 12_000_000 * 1024
    assert one(b, "mem_used") == 4_000_000 * 1024
    assert one(b, "mem_usage") == 25.0
    assert one(b, "swap_usage") == 0.0
    assert one(b, "oom_kills_total") == 2
    assert b.counters["vmstat.oom_kill"] == 2
    assert one(b, "oom_kills") is None  # no previous reading
    assert all(one(b, m) is None for m in PSI)


def test_fixture_second_cycle():
    _, b = run_fixture()
    assert one(b, "mem_available") == 10_000_000 * 1024
    assert one(b, "mem_used") == 6_000_000 * 1024
    assert one(b, "mem_usage") == 37.5
    assert one(b, "swap_usage") == 25.0  # SwapTotal 4 000 000, SwapFree 3 000 000
    # PSI totals over 10 s: memory some +500 000 µs, full +200 000; io some +300 000, full +100 000
    assert [one(b, m) for m in PSI] == [5.0, 2.0, 3.0, 1.0]
    assert one(b, "oom_kills") == 3  # oom_kill 2 -> 5
    assert one(b, "oom_kills_total") == 5
    assert b.counters["vmstat.oom_kill"] == 5
    assert not [k for k in b.counters if k.startswith("pressure.")]  # only when asked for
    # t1 PSI files, totals in µs by the files' own words
    b = run_fixture(CollectorSettings(raw_counters=True))[1]
    assert b.counters["pressure.memory.some.total"] == 1500000
    assert b.counters["pressure.memory.full.total"] == 700000
    assert b.counters["pressure.io.some.total"] == 2335262 and b.counters["pressure.io.full.total"] == 1970901
    for s in b.samples + b.totals:
        assert set(s.labels) == set(get(s.metric).labels)


def test_counters_going_backwards_give_no_value():
    c = MemoryCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    b = c.collect(1010.0)
    assert one(b, "oom_kills") is None
    assert all(one(b, m) is None for m in PSI)
    assert all(s.value >= 0 for s in b.samples)


def test_missing_psi_and_oom_kill_give_no_sample(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc" / "pressure")
    vmstat = tmp_path / "proc" / "vmstat"
    vmstat.write_text("".join(line for line in vmstat.read_text().splitlines(True) if not line.startswith("oom_kill ")))
    c = MemoryCollector(Roots.under(tmp_path), CollectorSettings())
    c.collect(1000.0)
    b = c.collect(1010.0)
    assert all(one(b, m) is None for m in (*PSI, "oom_kills", "oom_kills_total"))
    assert "vmstat.oom_kill" not in b.counters
    assert one(b, "mem_usage") == 25.0


def test_without_meminfo_pressure_and_oom_kills_are_still_read(tmp_path: Path):
    for t, src in (("t0", HOST_T0), ("t1", HOST_T1)):
        shutil.copytree(src.proc, tmp_path / t / "proc")
        (tmp_path / t / "proc" / "meminfo").unlink()
    c = MemoryCollector(Roots.under(tmp_path / "t0"), CollectorSettings())
    c.collect(1000.0)
    c.roots = Roots.under(tmp_path / "t1")
    b = c.collect(1010.0)
    assert one(b, "mem_total") is None and one(b, "swap_usage") is None
    assert all(one(b, m) is not None for m in (*PSI, "oom_kills", "oom_kills_total"))
    assert b.errors == ["meminfo:FileNotFoundError"]


def test_a_meminfo_without_memtotal_costs_only_the_memory_levels(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    meminfo = tmp_path / "proc" / "meminfo"
    meminfo.write_text("".join(line for line in meminfo.read_text().splitlines(True) if not line.startswith("MemTotal:")))
    b = MemoryCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "mem_usage") is None
    assert one(b, "oom_kills_total") is not None
    assert b.errors == ["meminfo:KeyError"]


def test_a_bad_pressure_file_costs_only_its_own_psi(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    (tmp_path / "proc" / "pressure" / "io").write_text("full avg10=0.00 total=many\n")
    c = MemoryCollector(Roots.under(tmp_path), CollectorSettings(raw_counters=True))
    b = c.collect(1000.0)
    assert "pressure.memory.some.total" in b.counters
    assert not any(k.startswith("pressure.io.") for k in b.counters)
    assert one(b, "mem_usage") is not None
    assert b.errors == ["pressure/io:ValueError"]


def test_without_vmstat_the_levels_are_still_read(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    (tmp_path / "proc" / "vmstat").unlink()
    b = MemoryCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "oom_kills_total") is None
    assert one(b, "mem_total") is not None
    assert b.errors == ["vmstat:FileNotFoundError"]


def _meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_live_machine():
    c = MemoryCollector(Roots(), CollectorSettings())
    c.collect(time.time())
    time.sleep(0.2)
    b = c.collect(time.time())
    assert one(b, "mem_total") == _meminfo_kb("MemTotal") * 1024
    assert 0 < one(b, "mem_usage") < 100
    assert one(b, "mem_used") == one(b, "mem_total") - one(b, "mem_available")
    assert one(b, "mem_available") == pytest.approx(_meminfo_kb("MemAvailable") * 1024, rel=0.05)
    assert 0 <= one(b, "swap_usage") <= 100
    vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    if "oom_kill" in vmstat:
        assert one(b, "oom_kills_total") == int(vmstat["oom_kill"])
        assert one(b, "oom_kills") is not None and one(b, "oom_kills") >= 0
    for resource in ("memory", "io"):
        if Path("/proc/pressure", resource).exists():
            for kind in ("some", "full"):
                v = one(b, f"psi_{resource}_{kind}")
                assert v is not None and 0 <= v <= 100


def test_meminfo_fields_match_a_full_parse(tmp_path: Path):
    # The collector finds its few fields by name; a full parse of the same text must agree,
    # including the keys this kernel lacks (absent in both) and SwapCached vs Cached.
    from collectors.base import read_key_values
    from collectors.memory import _MEMINFO_KEYS, _meminfo

    text = Path("/proc/meminfo").read_bytes()
    (tmp_path / "meminfo").write_bytes(text)
    full = read_key_values(tmp_path / "meminfo")
    assert _meminfo(text) == {k: full[k] for k in _MEMINFO_KEYS if k in full}
    old_kernel = b"".join(line + b"\n" for line in text.splitlines() if not line.startswith(b"MemAvailable:"))
    assert "MemAvailable" not in _meminfo(old_kernel)
    assert _meminfo(old_kernel)["Cached"] == full["Cached"] != full.get("SwapCached", -1)
