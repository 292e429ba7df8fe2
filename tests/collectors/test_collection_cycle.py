"""CollectionCycle: a failing collector is contained, counted every cycle, logged once per
kind, and its errors reach /metrics; the real /proc cycle runs clean."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

from collectors import registry
from collectors.cpu import CpuCollector
from collectors.disk import DiskCollector
from collectors.filesystem import read_mounts
from collectors.memory import MemoryCollector
from collectors.netcounters import NetCountersCollector
from collectors.roots import Roots
from collectors.runner import CollectionCycle
from collectors.settings import CollectorSettings
from tests.conftest import FIXTURES


@pytest.fixture
def no_diskstats(tmp_path: Path) -> Roots:
    """The t0 fixture host without /proc/diskstats: the disk collector cannot read, the others can.

    Its mountpoints exist under the tree's root, so statvfs of each answers (with the
    numbers of tmp_path's filesystem) and the disk collector is the only one failing.
    """
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    (top / "proc" / "diskstats").unlink()
    (top / "dev").mkdir(exist_ok=True)
    (top / "dev" / "kmsg").write_bytes(b"")
    roots = Roots.under(top)
    for m in read_mounts(roots):
        (top / m.mountpoint.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return roots


def test_a_failing_collector_is_contained_counted_and_logged_once(no_diskstats, caplog):
    settings = CollectorSettings()
    cycle = CollectionCycle([CpuCollector(no_diskstats, settings), DiskCollector(no_diskstats, settings),
                             MemoryCollector(no_diskstats, settings), NetCountersCollector(no_diskstats, settings)])
    key = ("disk", "FileNotFoundError")
    with caplog.at_level(logging.WARNING, logger="collectors.runner"):
        for n in range(1, 5):
            batch = cycle.run(1000.0 + 10 * n)
            assert cycle.errors[key] == n  # every cycle counts
            metrics = {s.metric for s in batch.samples}
            # the collectors before and after the failing one still gave their samples
            assert {"load_1", "mem_total", "mem_usage"} <= metrics
            assert not any(m.startswith("disk_") for m in metrics)
            assert "TcpExt.ListenOverflows" in batch.counters
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "disk" in warnings[0].getMessage() and "FileNotFoundError" in warnings[0].getMessage()
    assert dict(cycle.errors) == {key: 4}


def test_collector_errors_in_metrics(no_diskstats, tmp_path):
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    r = no_diskstats
    cfg = load(env={}, data_dir=str(tmp_path / "data"),
               paths={"proc": r.proc, "sys": r.sys, "kmsg": r.kmsg, "pstore": r.pstore, "root": r.root})
    service = Service(cfg)
    try:
        for i in range(3):
            service.collect(time.time() + i)
        text = create_app(service).test_client().get("/metrics").data.decode()
    finally:
        service.close()
    lines = [line for line in text.splitlines() if line.startswith("diag_collector_errors_total{")]
    assert lines == ['diag_collector_errors_total{collector="disk",kind="FileNotFoundError"} 3.0'], lines
    assert "# TYPE diag_collector_errors_total counter" in text
    # the working collectors' gauges are there beside it
    assert any(line.startswith("mem_total_bytes{") for line in text.splitlines())


def test_the_real_proc_cycle_has_no_errors(tmp_path):
    cycle = CollectionCycle(registry.build(Roots(kmsg=tmp_path / "no-kmsg", pstore=tmp_path / "no-pstore"),
                                           CollectorSettings()))
    cycle.run()
    time.sleep(0.05)
    batch = cycle.run()
    errors = {k: n for k, n in cycle.errors.items() if k[0] != "kernel_log"}  # kmsg absent on purpose
    assert errors == {}
    assert {"cpu_usage", "mem_total", "load_1"} <= {s.metric for s in batch.samples}
