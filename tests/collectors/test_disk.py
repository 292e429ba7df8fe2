"""DiskCollector against the fixture tree (exact numbers), node_exporter, and this machine."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from collectors.disk import DiskCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.collectors.node_exporter import scrape_fixture
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch


def by_device(batch: Batch, metric: str) -> dict[str, float]:
    return {s.labels["device"]: s.value for s in batch.samples + batch.totals if s.metric == metric}


def run_fixture(settings: CollectorSettings | None = None) -> tuple[Batch, Batch]:
    c = DiskCollector(HOST_T0, settings or CollectorSettings())
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def test_fixture_devices_kept_and_skipped():
    first, b = run_fixture()
    # vda1 has no /sys/block entry (a partition); loop0, ram0, zram0 never did I/O;
    # loop1 did once, dm-0 is a whole device.
    assert set(by_device(b, "disk_read_iops")) == {"vda", "loop1", "dm-0"}
    assert set(by_device(first, "disk_reads_completed_total")) == {"vda", "loop1", "dm-0"}
    assert not [s for s in first.samples if s.metric != "disk_inflight"]  # no rates on the first reading


def test_fixture_iostat_numbers():
    _, b = run_fixture()
    # vda over 10 s: +1000 reads, +20480 sectors, +2500 ms reading; +500 writes, +40960
    # sectors, +6000 ms writing; io_ticks +4000 ms; 3 in flight at t1.
    assert by_device(b, "disk_read_iops")["vda"] == 100
    assert by_device(b, "disk_write_iops")["vda"] == 50
    assert by_device(b, "disk_read_bps")["vda"] == 20480 * 512 / 10  # 1 MiB/s
    assert by_device(b, "disk_write_bps")["vda"] == 40960 * 512 / 10  # 2 MiB/s
    assert by_device(b, "disk_await_read")["vda"] == 2.5
    assert by_device(b, "disk_await_write")["vda"] == 12
    assert by_device(b, "disk_util")["vda"] == 40
    assert by_device(b, "disk_inflight")["vda"] == 3
    # dm-0: no reads in the interval -> await 0 (iostat prints 0.00); io_ticks +12000 ms in
    # 10 s (accounting jitter) -> capped at 100 %.
    assert by_device(b, "disk_read_iops")["dm-0"] == 0
    assert by_device(b, "disk_await_read")["dm-0"] == 0
    assert by_device(b, "disk_await_write")["dm-0"] == 0.5
    assert by_device(b, "disk_write_bps")["dm-0"] == 16000 * 512 / 10
    assert by_device(b, "disk_util")["dm-0"] == 100
    # loop1: idle this interval
    assert by_device(b, "disk_util")["loop1"] == 0
    assert by_device(b, "disk_await_write")["loop1"] == 0
    # raw totals at t1, node_exporter's units
    assert by_device(b, "disk_reads_completed_total")["vda"] == 31957
    assert by_device(b, "disk_writes_completed_total")["vda"] == 8203
    assert by_device(b, "disk_read_bytes_total")["vda"] == 2062354 * 512
    assert by_device(b, "disk_written_bytes_total")["vda"] == 2066120 * 512
    assert by_device(b, "disk_io_time_seconds_total")["vda"] == 8.544
    for s in b.samples + b.totals:
        assert set(s.labels) == set(get(s.metric).labels), s


def test_counters_going_backwards_give_no_negative_numbers():
    c = DiskCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    b = c.collect(1010.0)
    assert all(s.value >= 0 for s in b.samples)
    assert "vda" not in by_device(b, "disk_read_iops")
    assert "vda" not in by_device(b, "disk_util")
    assert by_device(b, "disk_inflight")["vda"] == 0  # a gauge is still read


def test_totals_match_node_exporter():
    text = scrape_fixture("--collector.diskstats")
    ours = DiskCollector(HOST_T1, CollectorSettings()).collect(1000.0)
    names = {"disk_reads_completed_total": "reads_completed_total", "disk_writes_completed_total": "writes_completed_total",
             "disk_read_bytes_total": "read_bytes_total", "disk_written_bytes_total": "written_bytes_total",
             "disk_io_time_seconds_total": "io_time_seconds_total", "disk_inflight": "io_now"}
    compared = 0
    for ours_name, theirs in names.items():
        for dev, value in by_device(ours, ours_name).items():
            line = f'node_disk_{theirs}{{device="{dev}"}} '
            if line in text:  # node_exporter's default filter drops loop*
                assert float(text.split(line, 1)[1].split()[0]) == pytest.approx(value, rel=1e-12), line
                compared += 1
    assert compared >= 12



# ---- this machine


def _diskstats() -> dict[str, list[int]]:
    with open("/proc/diskstats") as f:
        return {v[2]: [int(x) for x in v[3:]] for v in (line.split() for line in f)}


def test_live_totals_and_ranges():
    c = DiskCollector(Roots(), CollectorSettings())
    n0 = time.time()
    a0 = _diskstats()
    c.collect(n0)
    a1 = _diskstats()
    # Some real writes so a device moves: fsync forces them to the disk under /var/tmp.
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as f:
        for _ in range(4):
            f.write(os.urandom(256 * 1024))
            f.flush()
            os.fsync(f.fileno())
    time.sleep(0.2)
    b0 = _diskstats()
    n1 = time.time()
    b = c.collect(n1)
    b1 = _diskstats()

    expected = {d for d, v in b0.items() if os.path.exists(f"/sys/block/{d.replace('/', '!')}")
                and not (d.startswith(("ram", "loop", "zram")) and v[0] == 0 and v[4] == 0)}
    assert set(by_device(b, "disk_write_iops")) == expected
    for dev in expected:
        assert b0[dev][4] <= by_device(b, "disk_writes_completed_total")[dev] <= b1[dev][4]
        assert b0[dev][6] * 512 <= by_device(b, "disk_written_bytes_total")[dev] <= b1[dev][6] * 512
        writes = by_device(b, "disk_write_iops")[dev] * (n1 - n0)
        assert b0[dev][4] - a1[dev][4] - 1e-6 <= writes <= b1[dev][4] - a0[dev][4] + 1e-6
        assert 0 <= by_device(b, "disk_util")[dev] <= 100
        assert by_device(b, "disk_await_read")[dev] >= 0
        assert by_device(b, "disk_await_write")[dev] >= 0
    assert any(by_device(b, "disk_write_iops")[d] > 0 for d in expected), "fsync'd writes should show"


def test_fixture_raw_counters_by_iostats_names():
    assert run_fixture()[1].counters == {}  # only when asked for
    _, b = run_fixture(CollectorSettings(raw_counters=True))
    # t1: "254 0 vda 31957 8700 2062354 8918 8203 21948 2066120 11268 3 8544 20421 3561 44 77640 195 1017 44"
    c = b.counters
    assert (c["diskstats.vda.reads_completed"], c["diskstats.vda.reads_merged"], c["diskstats.vda.sectors_read"],
            c["diskstats.vda.ms_reading"]) == (31957, 8700, 2062354, 8918)
    assert (c["diskstats.vda.writes_completed"], c["diskstats.vda.sectors_written"], c["diskstats.vda.ms_writing"],
            c["diskstats.vda.ios_in_progress"], c["diskstats.vda.ms_doing_io"],
            c["diskstats.vda.weighted_ms_doing_io"]) == (8203, 2066120, 11268, 3, 8544, 20421)
    assert (c["diskstats.vda.discards_completed"], c["diskstats.vda.flush_requests_completed"],
            c["diskstats.vda.ms_flushing"]) == (3561, 1017, 44)
    assert c["diskstats.dm-0.writes_completed"] == 11000
    # the partition and the never-used devices are not the collector's: not read as counters either
    assert not [k for k in c if k.startswith(("diskstats.vda1.", "diskstats.loop0.", "diskstats.ram0."))]


def test_a_gone_device_is_forgotten(tmp_path):
    shutil.copytree(HOST_T1.proc, tmp_path / "proc")
    shutil.copytree(HOST_T1.sys, tmp_path / "sys")
    stats = tmp_path / "proc" / "diskstats"
    t1_text = stats.read_text()
    stats.write_text("".join(line for line in t1_text.splitlines(True) if " dm-0 " not in line))
    c = DiskCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T1
    assert "dm-0" in by_device(c.collect(1010.0), "disk_read_iops")
    c.roots = Roots.under(tmp_path)
    b = c.collect(1020.0)
    assert "dm-0" not in by_device(b, "disk_read_iops")
    assert set(c._seen) == {"vda", "loop1"} and len(c.rates) == 2 * 7
    # dm-0 re-created with the same name: a new baseline, no rate across the gap
    stats.write_text(t1_text)
    b = c.collect(1030.0)
    assert "dm-0" not in by_device(b, "disk_read_iops") and by_device(b, "disk_read_iops")["vda"] == 0.0


def _with_loop0(tmp_path, name: str, line: str) -> Roots:
    shutil.copytree(HOST_T0.sys, tmp_path / name / "sys")
    (tmp_path / name / "proc").mkdir(parents=True)
    text = (HOST_T0.proc / "diskstats").read_text()
    (tmp_path / name / "proc" / "diskstats").write_text(
        "".join(line + "\n" if " loop0 " in old else old for old in text.splitlines(True)))
    return Roots.under(tmp_path / name)


def test_a_loop_device_with_io_in_flight_is_read_before_its_first_completion(tmp_path):
    # As the kernel showed it: a loop device over a file on a FUSE mount whose daemon is
    # stopped, one direct write in flight from its start, none ever completed, io_ticks rising.
    t0 = _with_loop0(tmp_path, "t0", "   7       0 loop0 0 0 0 0 0 0 0 0 1 2000 2 0 0 0 0 0 0")
    t1 = _with_loop0(tmp_path, "t1", "   7       0 loop0 0 0 0 0 0 0 0 0 1 12000 2 0 0 0 0 0 0")
    c = DiskCollector(t0, CollectorSettings())
    first = c.collect(1000.0)
    assert by_device(first, "disk_inflight")["loop0"] == 1.0
    c.roots = t1
    b = c.collect(1010.0)
    assert by_device(b, "disk_inflight")["loop0"] == 1.0
    assert by_device(b, "disk_read_iops")["loop0"] == 0.0 and by_device(b, "disk_write_iops")["loop0"] == 0.0
    assert by_device(b, "disk_util")["loop0"] == 100.0
    assert by_device(b, "disk_writes_completed_total")["loop0"] == 0.0
    # ram0 and zram0 never did I/O and have none in flight: still left out
    assert "ram0" not in by_device(b, "disk_inflight") and "zram0" not in by_device(b, "disk_inflight")
