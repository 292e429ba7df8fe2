"""StateCollector: uptime and boot from the fixture tree and this machine; reboot detection."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from collectors.roots import Roots
from collectors.settings import CollectorSettings
from collectors.state import StateCollector
from tests.conftest import HOST_T0, HOST_T1
from diag.model import Batch

FIXTURE_BOOT_ID = (HOST_T0.proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
FIXTURE_BTIME = 1795609554  # the btime line of both fixture /proc/stat files


def uptime(batch: Batch) -> float:
    (value,) = [s.value for s in batch.samples if s.metric == "uptime"]
    return value


def test_fixture_uptime_and_boot():
    c = StateCollector(HOST_T0, CollectorSettings())
    first = c.collect(1000.0)
    assert uptime(first) == 345.44
    assert first.counters["stat.btime"] == FIXTURE_BTIME
    assert (c.boot_id, c.boot_time) == (FIXTURE_BOOT_ID, FIXTURE_BTIME)
    c.roots = HOST_T1
    second = c.collect(1010.0)
    assert uptime(second) == 355.44
    assert not first.signals and not second.signals  # same boot, no state dir: nothing to report


def test_first_run_ever_records_the_boot_without_a_signal(tmp_path: Path):
    state = tmp_path / "state"  # does not exist yet
    b = StateCollector(HOST_T0, CollectorSettings(state_dir=state)).collect(1000.0)
    assert b.signals == []
    assert json.loads((state / "boot.json").read_text())["boot_id"] == FIXTURE_BOOT_ID
    assert [p.name for p in state.iterdir()] == ["boot.json"]  # no temp file left behind


def test_reboot_seen_across_a_restart_is_reported_once(tmp_path: Path):
    (tmp_path / "boot.json").write_text(json.dumps({"boot_id": "11111111-2222-3333-4444-555555555555", "boot_time": 1}))
    settings = CollectorSettings(state_dir=tmp_path)
    c = StateCollector(HOST_T0, settings)
    (sig,) = c.collect(1000.0).signals
    assert sig.kind == "reboot"
    assert sig.labels == {"boot_id": FIXTURE_BOOT_ID, "previous_boot_id": "11111111-2222-3333-4444-555555555555",
                          "previous_boot_time": "1"}
    assert sig.ts == FIXTURE_BTIME
    assert FIXTURE_BOOT_ID in sig.message
    assert c.collect(1010.0).signals == []  # next cycle
    assert StateCollector(HOST_T0, settings).collect(1020.0).signals == []  # after another restart
    assert json.loads((tmp_path / "boot.json").read_text())["boot_id"] == FIXTURE_BOOT_ID


def test_reboot_while_running(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "host" / "proc")
    roots = Roots.under(tmp_path / "host")
    c = StateCollector(roots, CollectorSettings(state_dir=tmp_path / "state"))
    assert c.collect(1000.0).signals == []
    (roots.proc / "sys/kernel/random/boot_id").write_text("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\n")
    stat = roots.proc / "stat"
    stat.write_text(stat.read_text().replace(f"btime {FIXTURE_BTIME}", "btime 1795700000"))
    (sig,) = c.collect(1010.0).signals
    assert sig.labels == {"boot_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "previous_boot_id": FIXTURE_BOOT_ID,
                          "previous_boot_time": str(FIXTURE_BTIME)}
    assert sig.ts == 1795700000
    assert c.boot_time == 1795700000
    assert c.collect(1020.0).signals == []


def test_in_memory_without_state_dir():
    c = StateCollector(HOST_T0, CollectorSettings(state_dir=None))
    assert c.collect(1000.0).signals == []
    assert c.collect(1010.0).signals == []


def test_damaged_state_file_is_a_first_run(tmp_path: Path):
    (tmp_path / "boot.json").write_text("{not json")
    c = StateCollector(HOST_T0, CollectorSettings(state_dir=tmp_path))
    assert c.collect(1000.0).signals == []
    assert json.loads((tmp_path / "boot.json").read_text())["boot_id"] == FIXTURE_BOOT_ID


def test_missing_uptime_raises(tmp_path: Path):
    (tmp_path / "proc").mkdir()
    with pytest.raises(FileNotFoundError):
        StateCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)


def test_live_machine(tmp_path: Path):
    c = StateCollector(Roots(), CollectorSettings(state_dir=tmp_path))
    b = c.collect(time.time())
    assert uptime(b) == pytest.approx(float(Path("/proc/uptime").read_text().split()[0]), abs=1.0)
    assert c.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    assert b.counters["stat.btime"] == btime
    assert btime + uptime(b) == pytest.approx(time.time(), abs=5)
    assert b.signals == []
