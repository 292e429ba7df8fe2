"""Hardware checks on constructed series and on what the collector reads from fixture trees."""

from __future__ import annotations

import shutil

import numpy as np

from checks.base import RECENT
from collectors.hardware import HardwareCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.checks.context import TableContext, evaluate
from tests.conftest import FIXTURES

NOW = 1_800_000_000.0


def from_collector(top, cycles: int = 3) -> TableContext:
    """A context holding what HardwareCollector read from `top` over a few cycles up to NOW."""
    ctx = TableContext(NOW)
    c = HardwareCollector(Roots.under(top), CollectorSettings())
    for i in range(cycles):
        ts = NOW - 10 * (cycles - 1 - i)
        for s in c.collect(ts).samples:
            ctx.add(s.metric, [ts], s.value, **s.labels)
    return ctx


def host_with(tmp_path, mdstat: str | None):
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "hardware" / "host", top, symlinks=True)
    if mdstat:
        (top / "proc").mkdir()
        shutil.copy(FIXTURES / "hardware" / "mdstat" / mdstat, top / "proc" / "mdstat")
    return top


# -- hardware.raid ------------------------------------------------------------------------------

def test_raid_not_applicable_without_arrays():
    r = evaluate("hardware.raid", TableContext(NOW))
    assert r.status == "not_applicable" and "/proc/mdstat" in r.message


def test_raid_clean_fixture_is_ok_and_a_check_is_no_finding(tmp_path):
    r = evaluate("hardware.raid", from_collector(host_with(tmp_path, "clean")))
    assert r.status == "ok"
    assert r.message == "4 array(s) complete: md10, md127, md201, md3 (md201 check at 5.7 %)"


def test_raid_degraded_fixture_is_critical_naming_the_array(tmp_path):
    r = evaluate("hardware.raid", from_collector(host_with(tmp_path, "degraded")))
    assert r.status == "critical"
    assert r.message == ("md7 degraded: 3 of 4 members in sync, 1 failed; "
                         "md4 inactive (not assembled), but 1 member(s) marked failed (F) are still in it")
    assert "mdadm --detail /dev/md7" in r.recommendation
    md7 = next(a for a in r.evidence["arrays"] if a["array"] == "md7")
    assert md7["degraded"] is True and md7["disks"] == 4 and md7["active"] == 3


def test_raid_resync_fixture_gives_progress(tmp_path):
    r = evaluate("hardware.raid", from_collector(host_with(tmp_path, "resync")))
    assert r.status == "critical"  # md6 recovers and md42 reshapes, both degraded
    assert "md6 degraded: 1 of 2 members in sync, 1 failed, recovery at 8.5 %" in r.message
    assert "md42 degraded: 2 of 3 members in sync, reshape at 56.1 %" in r.message
    assert "md8 resync at 8.5 %" in r.message
    assert "md11 resync at 0.0 %" in r.message  # pending


def test_raid_resyncing_only_is_a_warning_with_its_progress():
    ctx = TableContext(NOW)
    ts = ctx.times(600)
    ctx.add("md_degraded", ts, 0.0, array="md0")
    ctx.add("md_disks", ts, 2.0, array="md0")
    ctx.add("md_disks_active", ts, 2.0, array="md0")
    ctx.add("md_disks_failed", ts, 0.0, array="md0")
    ctx.add("md_sync_progress", ts, np.linspace(10, 42.5, ts.size), array="md0", action="resync")
    r = evaluate("hardware.raid", ctx)
    assert r.status == "warning"
    assert r.message == "md0 resync at 42.5 %: redundancy is not whole until it ends"


def test_raid_degraded_only_earlier_is_a_warning():
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    v = np.zeros(ts.size)
    v[10:40] = 1.0
    ctx.add("md_degraded", ts, v, array="md1")
    r = evaluate("hardware.raid", ctx)
    assert r.status == "warning" and r.message.startswith("md1 was degraded from ")
    assert r.evidence["arrays"][0]["degraded_runs"][0]["seconds"] == 300


# -- hardware.memory_errors ---------------------------------------------------------------------

def edac(ce: np.ndarray, ue: np.ndarray) -> TableContext:
    ctx = TableContext(NOW)
    ts = ctx.times(ce.size * 10)
    ctx.add("edac_correctable_errors", ts, ce, controller="mc0")
    ctx.add("edac_uncorrectable_errors", ts, ue, controller="mc0")
    return ctx


def test_memory_errors_not_applicable_without_edac():
    r = evaluate("hardware.memory_errors", TableContext(NOW))
    assert r.status == "not_applicable" and "/sys/devices/system/edac/mc" in r.message


def test_memory_errors_ok_warning_critical():
    n = 360
    assert evaluate("hardware.memory_errors", edac(np.zeros(n), np.zeros(n))).status == "ok"
    ce = np.zeros(n)
    ce[[5, 200]] = [2, 1]
    r = evaluate("hardware.memory_errors", edac(ce, np.zeros(n)))
    assert r.status == "warning" and r.message == "memory errors in the lookback: mc0: 3 corrected"
    ue = np.zeros(n)
    ue[-3] = 1  # 30 s ago
    r = evaluate("hardware.memory_errors", edac(ce, ue))
    assert r.status == "critical" and "mc0: 1 uncorrectable" in r.message
    ue = np.zeros(n)
    ue[n - 1 - (RECENT // 10) - 30] = 1  # 20 min ago: held earlier in the lookback
    assert evaluate("hardware.memory_errors", edac(np.zeros(n), ue)).status == "warning"


def test_memory_errors_from_the_edac_fixture(tmp_path):
    top = host_with(tmp_path, None)
    ctx = TableContext(NOW)
    c = HardwareCollector(Roots.under(top), CollectorSettings())
    for i, ue in enumerate(("1", "1", "3")):
        (top / "sys/devices/system/edac/mc/mc1/ue_count").write_text(ue + "\n")
        ts = NOW - 10 * (2 - i)
        for s in c.collect(ts).samples:
            ctx.add(s.metric, [ts], s.value, **s.labels)
    r = evaluate("hardware.memory_errors", ctx)
    assert r.status == "critical"
    assert r.evidence["controllers"][1] == {"controller": "mc1", "correctable": 0.0, "uncorrectable": 2.0,
                                            "last_correctable": None, "last_uncorrectable": NOW}


# -- hardware.throttling ------------------------------------------------------------------------

def test_throttling():
    assert evaluate("hardware.throttling", TableContext(NOW)).status == "not_applicable"
    ctx = TableContext(NOW)
    ts = ctx.times(600)
    ctx.add("cpu_core_throttles", ts, 0.0)
    ctx.add("cpu_package_throttles", ts, 0.0)
    assert evaluate("hardware.throttling", ctx).status == "ok"
    v = np.zeros(ts.size)
    v[[3, 9]] = [4, 2]
    ctx.add("cpu_core_throttles", ts + 1, v)
    r = evaluate("hardware.throttling", ctx)
    assert r.status == "warning"
    assert r.message.startswith("CPU throttled for heat or power: 6 core throttle(s) in 2 interval(s); last at ")
    assert r.evidence["total"] == 6.0


# -- hardware.temperature ----------------------------------------------------------------------

def test_temperature_not_applicable_without_sensors():
    r = evaluate("hardware.temperature", TableContext(NOW))
    assert r.status == "not_applicable" and "/sys/class/hwmon" in r.message


def test_temperature_fixture_over_crit_and_max(tmp_path):
    r = evaluate("hardware.temperature", from_collector(host_with(tmp_path, None)))
    assert r.status == "critical"
    assert r.message == ("coretemp Core 1 at or over its critical 100 °C (now, 101 °C last); "
                         "nvme:nvme1 Composite reached its high limit 84.85 °C (peak 86.85 °C, 86.85 °C last)")
    assert r.evidence["with_limits"] == 5 and len(r.evidence["sensors"]) == 7
    assert "coretemp Core 1" in r.recommendation


def test_temperature_ok_when_below_and_warning_when_crit_was_earlier():
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    v = np.full(ts.size, 55.0)
    ctx.add("hw_temperature", ts, v, chip="k10temp", sensor="Tctl")
    ctx.add("hw_temperature", ts, 30.0, chip="acpitz", sensor="temp1")  # no limits
    ctx.add("hw_temperature_crit", ts, 95.0, chip="k10temp", sensor="Tctl")
    r = evaluate("hardware.temperature", ctx)
    assert r.status == "ok"
    assert r.message == "2 temperature sensor(s) below their limits (1 of 2 give limits); hottest k10temp Tctl at 55 °C"
    v[100:110] = 97.0
    ctx = TableContext(NOW)
    ctx.add("hw_temperature", ts, v, chip="k10temp", sensor="Tctl")
    ctx.add("hw_temperature_crit", ts, 95.0, chip="k10temp", sensor="Tctl")
    r = evaluate("hardware.temperature", ctx)
    assert r.status == "warning" and "peak 97 °C at " in r.message
