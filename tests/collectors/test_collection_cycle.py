"""CollectionCycle: a failing collector is contained, counted every cycle, logged once per
kind, and its errors reach /metrics; the real /proc cycle runs clean."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from collectors import registry
from collectors.cpu import CpuCollector
from collectors.disk import DiskCollector
from collectors.filesystem import read_mounts
from collectors.memory import MemoryCollector
from collectors.netcounters import NetCountersCollector
from collectors.network import NetworkCollector
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
    assert any(line.startswith("diag_mem_total_bytes{") for line in text.splitlines())


def test_the_real_proc_cycle_has_no_errors(tmp_path):
    cycle = CollectionCycle(registry.build(Roots(kmsg=tmp_path / "no-kmsg", pstore=tmp_path / "no-pstore"),
                                           CollectorSettings()))
    cycle.run()
    time.sleep(0.05)
    batch = cycle.run()
    errors = {k: n for k, n in cycle.errors.items() if k[0] != "kernel_log"}  # kmsg absent on purpose
    assert errors == {}
    assert {"cpu_usage", "mem_total", "load_1"} <= {s.metric for s in batch.samples}


def fifo_net_dev(tmp_path: Path) -> tuple[Roots, Path]:
    """The t0 host whose /proc/net/dev is a FIFO with no writer: opening it blocks in the
    kernel, as a read of a hung mount does, until a writer comes."""
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    dev = top / "proc" / "net" / "dev"
    text = dev.read_bytes()
    dev.unlink()
    os.mkfifo(dev)
    return Roots.under(top), text


def unblock(fifo: Path, data: bytes) -> None:
    """Answers the blocked reader with `data`, and leaves a plain file in the FIFO's place
    so that the next open does not block again."""
    fd = os.open(fifo, os.O_WRONLY)  # a reader waits, so this opens at once and frees it
    try:
        plain = fifo.with_name(fifo.name + ".plain")
        plain.write_bytes(data)
        plain.replace(fifo)
        os.write(fd, data)
    finally:
        os.close(fd)


def stalled(batch) -> dict[str, float]:
    return {s.labels["collector"]: s.value for s in batch.samples if s.metric == "collector_stalled"}


def test_a_stuck_collector_is_abandoned_skipped_never_stacked_and_resumes(tmp_path, caplog):
    roots, text = fifo_net_dev(tmp_path)
    settings = CollectorSettings()
    net = NetworkCollector(roots, settings)
    calls = []
    real = net.collect
    net.collect = lambda now: (calls.append(now), real(now))[1]
    cycle = CollectionCycle([CpuCollector(roots, settings), net, MemoryCollector(roots, settings)], budget=0.3)
    with caplog.at_level(logging.INFO, logger="collectors.runner"):
        t0 = time.monotonic()
        batch = cycle.run(1000.0)
        took = time.monotonic() - t0
        assert 0.3 <= took < 0.8  # the budget, not the stuck call
        metrics = {s.metric for s in batch.samples}
        assert {"load_1", "mem_total"} <= metrics  # before and after the stuck one
        assert not metrics & {"net_in", "net_up"}
        assert stalled(batch) == {"cpu": 0.0, "network": 1.0, "memory": 0.0}
        for n in range(2, 5):
            t0 = time.monotonic()
            batch = cycle.run(1000.0 + 10 * n)
            assert time.monotonic() - t0 < 0.2  # skipped at once, not waited on again
            assert stalled(batch)["network"] == 1.0 and "mem_total" in {s.metric for s in batch.samples}
        assert len(calls) == 1  # never a second call on top of the stuck one
        assert cycle.stalls["network"] == 4
        assert "network" in cycle.stalled
        assert cycle.durations["network"] >= 0.3

        unblock(roots.proc / "net" / "dev", text)
        deadline = time.monotonic() + 5
        while "network" in cycle.stalled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "network" not in cycle.stalled
        batch = cycle.run(1100.0)
        assert len(calls) == 2 and calls[-1] == 1100.0
        assert stalled(batch)["network"] == 0.0
        assert "net_receive_bytes_total" in {s.metric for s in batch.totals}
    lines = [r.getMessage() for r in caplog.records if "network" in r.getMessage()]
    assert len(lines) == 2, lines  # once when it stalled, once when it came back
    assert "has not returned" in lines[0] and "returned after" in lines[1]


def test_signals_of_a_call_that_returned_late_reach_the_next_cycle():
    from diag.model import Batch, Signal

    gate = threading.Event()

    class Slow:
        name = "kernel_log"

        def collect(self, now):
            gate.wait()
            b = Batch(ts=now)
            b.signals.append(Signal(now, "hung_task", "task blocked", {}))
            return b

    cycle = CollectionCycle([Slow()], budget=0.1)
    assert cycle.run(1.0).signals == []
    gate.set()
    deadline = time.monotonic() + 5
    while cycle.stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    got = cycle.run(2.0).signals
    # the late one (read at 1.0), and this cycle's own
    assert [(s.ts, s.kind) for s in got] == [(2.0, "hung_task"), (1.0, "hung_task")]


def test_kernel_lines_of_a_call_that_returned_late_reach_the_next_cycle():
    from diag.model import Batch, KernelLine

    gate = threading.Event()
    seq = iter(range(1, 100))

    class Slow:
        name = "kernel_log"

        def collect(self, now):
            gate.wait()
            b = Batch(ts=now)
            b.kernel_lines.append(KernelLine(now, 3, next(seq), f"read at {now}"))
            return b

    cycle = CollectionCycle([Slow()], budget=0.1)
    assert cycle.run(1.0).kernel_lines == []
    gate.set()
    deadline = time.monotonic() + 5
    while cycle.stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    got = cycle.run(2.0).kernel_lines
    # a console log loses no line to a slow read: the late one, and this cycle's own
    assert sorted((ln.seq, ln.message) for ln in got) == [(1, "read at 1.0"), (2, "read at 2.0")]


def test_an_overrun_is_counted_every_cycle_and_logged_once_with_its_recovery(caplog):
    from diag.model import Batch

    delay = [0.15]

    class Slow:
        name = "processes"

        def collect(self, now):
            time.sleep(delay[0])
            return Batch(ts=now)

    cycle = CollectionCycle([Slow()], interval=0.1, budget=1.0)
    with caplog.at_level(logging.INFO, logger="collectors.runner"):
        for _ in range(3):
            cycle.run()
        assert cycle.overruns == 3 and cycle.last_duration >= 0.15
        delay[0] = 0.0
        cycle.run()
        cycle.run()
        assert cycle.overruns == 3 and cycle.last_duration < 0.1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "longer than its 0.1 s interval" in lines[0] and "processes" in lines[0]
    assert "fit the 0.1 s interval again" in lines[1]


def test_stalls_and_overruns_in_metrics(tmp_path):
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    roots, text = fifo_net_dev(tmp_path)
    cfg = load(env={}, data_dir=str(tmp_path / "data"), interval="1s",
               paths={"proc": roots.proc, "sys": roots.sys, "kmsg": roots.kmsg, "pstore": roots.pstore,
                      "root": roots.root})
    (tmp_path / "host" / "dev").mkdir(exist_ok=True)
    roots.kmsg.write_bytes(b"")
    service = Service(cfg)
    try:
        for i in range(2):
            service.collect(time.time() + i)
        text_ = create_app(service).test_client().get("/metrics").data.decode()
    finally:
        unblock(roots.proc / "net" / "dev", text)
        service.close()
    lines = text_.splitlines()
    assert 'diag_collector_stalls_total{collector="network"} 2.0' in lines
    assert 'diag_collector_stalls_total{collector="cpu"} 0.0' in lines
    assert "diag_collection_overruns_total 0.0" in lines
    assert any(line.startswith("diag_collection_cycle_seconds ") for line in lines)
    assert any(line.startswith("diag_collector_stalled{") and 'collector="network"' in line and line.endswith(" 1.0")
               for line in lines)
    assert any(line.startswith("diag_collector_stalled{") and 'collector="memory"' in line and line.endswith(" 0.0")
               for line in lines)
