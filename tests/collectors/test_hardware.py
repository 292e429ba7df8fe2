"""HardwareCollector on fixture trees (hwmon, EDAC, thermal_throttle, /proc/mdstat) with
exact values, and on the live machine without errors."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from collectors import hardware
from collectors.hardware import HardwareCollector, MdArray, parse_mdstat
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag import catalogue
from tests.conftest import FIXTURES

HW = FIXTURES / "hardware"
MDSTAT = HW / "mdstat"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    top = tmp_path / "host"
    shutil.copytree(HW / "host", top, symlinks=True)
    return top


def by_key(samples) -> dict[tuple, float]:
    return {(s.metric, *sorted(s.labels.items())): s.value for s in samples}


def sample(samples, metric: str, **labels: str) -> float:
    return by_key(samples)[(metric, *sorted(labels.items()))]


def write(top: Path, rel: str, text: str) -> None:
    (top / rel).write_text(text + "\n")


# -- /proc/mdstat --------------------------------------------------------------------------------

def test_mdstat_clean_arrays():
    got = parse_mdstat((MDSTAT / "clean").read_text())
    assert got == [
        MdArray("md127", "active", "raid1", 2, 2, 0, 0, 0),
        MdArray("md3", "active", "raid6", 8, 8, 0, 2, 0),
        MdArray("md10", "active", "raid0", 2, 2, 0, 0, 0),  # raid0 prints no [n/m]: its members
        MdArray("md201", "active", "raid1", 2, 2, 0, 0, 0, "check", 5.7),
    ]
    assert not any(a.degraded for a in got)


def test_mdstat_degraded_and_inactive():
    md0, md7, md4 = parse_mdstat((MDSTAT / "degraded").read_text())
    assert md7 == MdArray("md7", "active", "raid6", 4, 3, 1, 0, 1)  # bitmap line skipped
    assert md7.degraded and not md0.degraded
    # An inactive array is not assembled: no member counts (procfs agrees), not "degraded".
    assert md4 == MdArray("md4", "inactive", "raid1", 0, 0, 1, 1, 0) and not md4.degraded


def test_mdstat_resync_recovery_reshape_pending():
    md6, md8, md11, md42, md219 = parse_mdstat((MDSTAT / "resync").read_text())
    assert md6 == MdArray("md6", "active", "raid1", 2, 1, 1, 1, 1, "recovery", 8.5) and md6.degraded
    assert md8 == MdArray("md8", "active", "raid1", 2, 2, 0, 2, 0, "resync", 8.5) and not md8.degraded
    # (auto-read-only) is not the level; a pending resync has no percentage yet.
    assert md11 == MdArray("md11", "active", "raid1", 2, 2, 1, 2, 0, "resync", None)
    assert md42 == MdArray("md42", "active", "raid5", 3, 2, 0, 1, 1, "reshape", 56.1) and md42.degraded
    assert md219 == MdArray("md219", "inactive", "", 0, 0, 0, 3, 0)


def test_mdstat_without_arrays():
    assert parse_mdstat("Personalities : \nunused devices: <none>\n") == []


def test_collector_reports_each_array(host):
    (host / "proc").mkdir(exist_ok=True)
    shutil.copy(MDSTAT / "resync", host / "proc" / "mdstat")
    b = HardwareCollector(Roots.under(host), CollectorSettings()).collect(100.0)
    assert b.errors == []
    assert sample(b.samples, "md_degraded", array="md6") == 1.0
    assert sample(b.samples, "md_disks", array="md6") == 2.0
    assert sample(b.samples, "md_disks_active", array="md6") == 1.0
    assert sample(b.samples, "md_disks_failed", array="md6") == 1.0
    assert sample(b.samples, "md_sync_progress", array="md6", action="recovery") == 8.5
    assert sample(b.samples, "md_sync_progress", array="md8", action="resync") == 8.5
    assert sample(b.samples, "md_sync_progress", array="md11", action="resync") == 0.0  # pending
    assert sample(b.samples, "md_degraded", array="md8") == 0.0
    assert sample(b.samples, "md_degraded", array="md42") == 1.0
    assert not [s for s in b.samples if s.metric == "md_sync_progress" and s.labels["array"] == "md219"]


# -- hwmon -----------------------------------------------------------------------------------------

def test_hwmon_temperatures_fans_and_limits(host):
    b = HardwareCollector(Roots.under(host), CollectorSettings()).collect(100.0)
    assert b.errors == []
    hw = {k: v for k, v in by_key(b.samples).items() if k[0].startswith("hw_")}
    t = lambda metric, chip, sensor: (metric, ("chip", chip), ("sensor", sensor))  # noqa: E731
    assert hw == {
        t("hw_temperature", "coretemp", "Package id 0"): 52.0,
        t("hw_temperature_crit", "coretemp", "Package id 0"): 100.0,
        t("hw_temperature_max", "coretemp", "Package id 0"): 84.0,
        t("hw_temperature", "coretemp", "Core 0"): 48.0,
        t("hw_temperature_crit", "coretemp", "Core 0"): 100.0,
        t("hw_temperature_max", "coretemp", "Core 0"): 84.0,
        t("hw_temperature", "coretemp", "Core 1"): 101.0,
        t("hw_temperature_crit", "coretemp", "Core 1"): 100.0,
        t("hw_temperature_max", "coretemp", "Core 1"): 84.0,
        t("hw_fan_speed", "nct6775", "CPU fan"): 1180.0,
        t("hw_fan_speed", "nct6775", "fan2"): 0.0,
        # no label: the file's stem; a max of 0 is "no limit", not a limit of 0 °C
        t("hw_temperature", "nct6775", "temp1"): 38.5,
        # two chips named nvme, told apart by their device
        t("hw_temperature", "nvme:nvme0", "Composite"): 41.85,
        t("hw_temperature_crit", "nvme:nvme0", "Composite"): 89.85,
        t("hw_temperature_max", "nvme:nvme0", "Composite"): 84.85,
        t("hw_temperature", "nvme:nvme1", "Composite"): 86.85,
        t("hw_temperature_crit", "nvme:nvme1", "Composite"): 89.85,
        t("hw_temperature_max", "nvme:nvme1", "Composite"): 84.85,
        # an old driver's files under hwmonN/device
        t("hw_temperature", "it87", "temp1"): -5.0,
    }
    for s in b.samples:
        m = catalogue.get(s.metric)
        assert set(s.labels) == set(m.labels), s


def test_hwmon_is_discovered_once_and_values_read_every_cycle(host, monkeypatch):
    c = HardwareCollector(Roots.under(host), CollectorSettings())
    walks = []
    real = hardware.discover_hwmon
    monkeypatch.setattr(hardware, "discover_hwmon", lambda root: walks.append(root) or real(root))
    c.collect(100.0)
    write(host, "sys/class/hwmon/hwmon0/temp2_input", "63500")
    # A new sensor appears, but is not looked for until the next discovery.
    write(host, "sys/class/hwmon/hwmon1/temp2_input", "30000")
    for i in range(1, hardware.REDISCOVER_EVERY):
        b = c.collect(100.0 + 10 * i)
    assert len(walks) == 1
    assert sample(b.samples, "hw_temperature", chip="coretemp", sensor="Core 0") == 63.5
    assert ("hw_temperature", ("chip", "nct6775"), ("sensor", "temp2")) not in by_key(b.samples)
    b = c.collect(100.0 + 10 * hardware.REDISCOVER_EVERY)
    assert len(walks) == 2
    assert sample(b.samples, "hw_temperature", chip="nct6775", sensor="temp2") == 30.0


def sysfs_gone(monkeypatch) -> None:
    """A kept-open file of a removed device answers ENODEV in sysfs; a fixture tree's
    deleted file would still read, so deleted files answer as sysfs does."""
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(" (deleted)"):
            raise OSError(errno.ENODEV, "No such device")
        return real(fd, n, offset)

    monkeypatch.setattr(hardware.os, "pread", pread)


def test_a_failing_sensor_costs_only_its_reading_and_a_vanished_chip_is_looked_for_again(host, monkeypatch):
    sysfs_gone(monkeypatch)
    c = HardwareCollector(Roots.under(host), CollectorSettings())
    c.collect(100.0)
    write(host, "sys/class/hwmon/hwmon0/temp1_input", "not a number")
    shutil.rmtree(host / "sys/class/hwmon/hwmon1")
    b = c.collect(110.0)
    assert sorted(b.errors) == ["hwmon/coretemp:ValueError", "hwmon/nct6775:OSError",
                                "hwmon/nct6775:OSError", "hwmon/nct6775:OSError"]
    assert sample(b.samples, "hw_temperature", chip="coretemp", sensor="Core 0") == 48.0
    assert sample(b.samples, "hw_temperature", chip="it87", sensor="temp1") == -5.0
    b = c.collect(120.0)  # rediscovered at once: the chip is gone, not an error every cycle
    assert b.errors == ["hwmon/coretemp:ValueError"]
    assert not [s for s in b.samples if s.labels.get("chip") == "nct6775"]


def test_a_device_chip_that_hangs_is_abandoned_at_its_deadline(host, monkeypatch):
    """drivetemp and nvme ask the device: a hung disk must not hold the cycle."""
    monkeypatch.setattr(hardware, "DEVICE_DEADLINE_S", 0.2)
    c = HardwareCollector(Roots.under(host), CollectorSettings())
    release = __import__("threading").Event()
    real = hardware._read_all

    def slow(sensors, files):
        if sensors[0].chip.startswith("nvme:nvme1"):
            release.wait(10)
        return real(sensors, files)

    monkeypatch.setattr(hardware, "_read_all", slow)
    t0 = time.monotonic()
    b = c.collect(100.0)
    assert time.monotonic() - t0 < 2.0
    assert b.errors == ["hwmon/nvme:nvme1:Stalled"]
    assert sample(b.samples, "hw_temperature", chip="nvme:nvme0", sensor="Composite") == 41.85
    t0 = time.monotonic()
    b = c.collect(110.0)  # still stuck: skipped at once, never a second thread on it
    assert time.monotonic() - t0 < 0.15
    assert b.errors == ["hwmon/nvme:nvme1:Stalled"]
    assert sample(b.samples, "hw_temperature", chip="nvme:nvme0", sensor="Composite") == 41.85
    release.set()
    deadline = time.monotonic() + 5
    while c.device_reads.stuck() and time.monotonic() < deadline:
        time.sleep(0.01)
    b = c.collect(120.0)  # the stuck read returned: the chip is read again
    assert b.errors == []
    assert sample(b.samples, "hw_temperature", chip="nvme:nvme1", sensor="Composite") == 86.85


# -- EDAC and thermal throttling ----------------------------------------------------------------

def test_edac_counts_totals_and_rises(host):
    c = HardwareCollector(Roots.under(host), CollectorSettings())
    b = c.collect(100.0)
    assert by_key(b.totals)[("edac_correctable_errors_total", ("controller", "mc0"))] == 3.0
    assert by_key(b.totals)[("edac_uncorrectable_errors_total", ("controller", "mc1"))] == 1.0
    assert not [s for s in b.samples if s.metric.startswith("edac_")]  # the first reading is a baseline
    write(host, "sys/devices/system/edac/mc/mc0/ce_count", "5")
    write(host, "sys/devices/system/edac/mc/mc1/ue_count", "2")
    b = c.collect(110.0)
    assert sample(b.samples, "edac_correctable_errors", controller="mc0") == 2.0
    assert sample(b.samples, "edac_uncorrectable_errors", controller="mc0") == 0.0
    assert sample(b.samples, "edac_correctable_errors", controller="mc1") == 0.0
    assert sample(b.samples, "edac_uncorrectable_errors", controller="mc1") == 1.0


def test_throttle_counts_one_cpu_per_core_and_one_per_package(host):
    c = HardwareCollector(Roots.under(host), CollectorSettings())
    b = c.collect(100.0)
    # cpu0/cpu2 and cpu1/cpu3 are siblings: 7 + 2, not 18
    assert by_key(b.totals)[("cpu_core_throttles_total",)] == 9.0
    assert by_key(b.totals)[("cpu_package_throttles_total",)] == 11.0
    assert not [s for s in b.samples if "throttles" in s.metric]
    for cpu in (0, 1, 2, 3):  # every CPU of a package counts its package's throttles
        write(host, f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/package_throttle_count", "12")
    for cpu in (1, 3):
        write(host, f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count", "6")
    b = c.collect(110.0)
    assert sample(b.samples, "cpu_core_throttles") == 4.0
    assert sample(b.samples, "cpu_package_throttles") == 1.0
    b = c.collect(120.0)
    assert sample(b.samples, "cpu_core_throttles") == 0.0


def test_many_cores_are_read_in_turn_and_no_rise_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "THROTTLE_FILES_PER_CYCLE", 4)
    cpu = tmp_path / "sys/devices/system/cpu"
    for i in range(10):
        (cpu / f"cpu{i}/topology").mkdir(parents=True)
        (cpu / f"cpu{i}/topology/core_id").write_text(f"{i}\n")
        (cpu / f"cpu{i}/topology/physical_package_id").write_text("0\n")
        (cpu / f"cpu{i}/thermal_throttle").mkdir()
        (cpu / f"cpu{i}/thermal_throttle/core_throttle_count").write_text("1\n")
    c = HardwareCollector(Roots.under(tmp_path), CollectorSettings())
    reads = []
    real = hardware._read_number
    monkeypatch.setattr(hardware, "_read_number", lambda f, p: reads.append(p) or real(f, p))
    for t in range(3):  # 10 files, 4 a cycle: every one has its baseline after 3 cycles
        b = c.collect(100.0 + 10 * t)
        assert len(reads) == 4 * (t + 1)
    assert by_key(b.totals)[("cpu_core_throttles_total",)] == 10.0
    (cpu / "cpu7/thermal_throttle/core_throttle_count").write_text("4\n")
    rose = 0.0
    for t in range(3, 6):
        rose += sample(c.collect(100.0 + 10 * t).samples, "cpu_core_throttles")
    assert rose == 3.0


# -- the real machine ------------------------------------------------------------------------------

def test_the_live_machine_gives_what_it_has_without_errors():
    c = HardwareCollector(Roots(), CollectorSettings())
    c.collect(time.time())
    b = c.collect(time.time() + 10)
    assert b.errors == []
    have = {s.metric for s in b.samples}
    # Each family appears exactly when its source exists here (a Firecracker VM has none).
    mdstat = Path("/proc/mdstat")
    assert ("md_degraded" in have) == bool(mdstat.exists() and parse_mdstat(mdstat.read_text()))
    assert ("hw_temperature" in have or "hw_fan_speed" in have) == bool(hardware.discover_hwmon(Path("/sys")))
    assert ("edac_correctable_errors" in have) == bool(hardware.discover_edac(Path("/sys")))
    assert ("cpu_core_throttles" in have) == bool(hardware.discover_throttle(Path("/sys"))[0])
    for s in b.samples:
        assert catalogue.get(s.metric).labels == tuple(s.labels)
