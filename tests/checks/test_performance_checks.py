"""Performance checks: 5-minute averages over the lookback, and OOM kills."""

from __future__ import annotations

import numpy as np
import pytest

from checks.base import RECENT
from tests.checks.context import TableContext, evaluate, kernel_log_read

NOW = 1_800_000_000.0
PROCS = {"by_cpu": [{"pid": 4242, "name": "java", "cpu_percent": 97.0, "rss_bytes": 1 << 30}],
         "by_memory": [{"pid": 777, "name": "redis-server", "cpu_percent": 3.0, "rss_bytes": 6 << 30}]}


def series_ctx(metric: str, values: np.ndarray) -> TableContext:
    ctx = TableContext(NOW)
    ctx.add(metric, ctx.times(len(values) * 10), values)
    ctx.processes = PROCS
    return ctx


@pytest.mark.parametrize("check_id, metric, limit", [
    ("performance.cpu", "cpu_usage", 90), ("performance.memory", "mem_usage", 90),
    ("performance.cpu_steal", "cpu_steal", 10)])
def test_window_checks(check_id, metric, limit):
    v = np.full(4320, limit * 0.5)
    assert evaluate(check_id, series_ctx(metric, v)).status == "ok"
    # One 5-min bucket (aligned, 30 points) averaging the limit: a warning, with when and how much.
    start = int((NOW - 6 * 3600) // 300 * 300)
    ts = TableContext(NOW).times(43200)
    v = np.where((ts >= start) & (ts < start + 300), limit + 1.0, limit * 0.5)
    r = evaluate(check_id, series_ctx(metric, v))
    assert r.status == "warning"
    assert r.evidence["peak"] == pytest.approx(limit + 1.0) and r.evidence["peak_at"] == start
    assert r.evidence["windows_over"] == 1
    # Spikes shorter than a window average out.
    v = np.full(4320, limit * 0.5)
    v[1000:1010] = limit * 1.5  # 100 s at 1.5x the limit: its 5-min bucket averages below it
    assert evaluate(check_id, series_ctx(metric, v)).status == "ok"
    assert evaluate(check_id, TableContext(NOW)).status == "unknown"


def test_a_spike_in_the_partial_edge_bucket_is_no_average():
    ctx = TableContext(NOW + 10)  # the newest bucket holds a single point
    ts = ctx.times(3600)
    ctx.add("cpu_usage", ts, np.where(ts == ts[-1], 100.0, 20.0))
    assert ts[-1] % 300 == 10
    assert evaluate("performance.cpu", ctx).status == "ok"


def test_cpu_and_memory_name_the_top_process():
    ts = TableContext(NOW).times(3600)
    r = evaluate("performance.cpu", series_ctx("cpu_usage", np.full(ts.size, 96.0)))
    assert r.evidence["top_processes"] == PROCS["by_cpu"]
    assert "java (pid 4242" in r.recommendation and "top -c" in r.recommendation
    r = evaluate("performance.memory", series_ctx("mem_usage", np.full(ts.size, 96.0)))
    assert r.evidence["top_processes"] == PROCS["by_memory"]
    assert "redis-server (pid 777, 6144 MiB" in r.recommendation


def test_oom_from_events_critical_then_warning_then_clears():
    ctx = kernel_log_read(TableContext(NOW), NOW - 12 * 3600, NOW + 13 * 3600, step=60)
    ctx.add("oom_kills", ctx.times(3600), 0.0)
    assert evaluate("performance.oom", ctx).status == "ok"
    ctx.event("Kernel.OOMKill", NOW - 120, labels={"pid": "3141", "process": "python3", "anon_rss_kb": "812000",
                                                   "constraint": "CONSTRAINT_NONE"},
              lines=["Out of memory: Killed process 3141 (python3) total-vm:900000kB, anon-rss:812000kB"])
    r = evaluate("performance.oom", ctx)
    assert r.status == "critical"
    assert r.evidence["kills"][0]["process"] == "python3" and r.evidence["kills"][0]["pid"] == "3141"
    assert "python3 (pid 3141)" in r.message and "python3 (pid 3141)" in r.recommendation
    ctx.at(NOW + RECENT)
    assert evaluate("performance.oom", ctx).status == "warning"
    ctx.at(NOW + 13 * 3600)
    assert evaluate("performance.oom", ctx).status == "ok"


def test_oom_unknown_without_the_counter_or_the_kernel_log():
    ctx = TableContext(NOW)
    r = evaluate("performance.oom", ctx)
    assert r.status == "unknown" and "no oom_kills samples" in r.message and "kernel log was not read" in r.message
    # The counter alone sees every kill (it cannot name the victims).
    counted = TableContext(NOW).add("oom_kills", TableContext(NOW).times(600), 0.0)
    r = evaluate("performance.oom", counted)
    assert r.status == "ok" and "kernel log" in r.message
    # The kernel log alone, read in the lookback, is evidence too.
    r = evaluate("performance.oom", kernel_log_read(TableContext(NOW), NOW - 600, NOW))
    assert r.status == "ok" and r.message == "no OOM kill in the lookback"


def test_oom_from_the_counter_alone():
    ctx = TableContext(NOW)
    v = np.zeros(360)
    v[100] = 2
    ctx.add("oom_kills", ctx.times(3600), v)
    r = evaluate("performance.oom", ctx)
    assert r.status == "warning" and r.evidence["oom_kills_counted"] == 2
    v[-1] = 1
    ctx2 = TableContext(NOW)
    ctx2.add("oom_kills", ctx2.times(3600), v)
    assert evaluate("performance.oom", ctx2).status == "critical"


def test_oom_in_a_memory_cgroup_says_so():
    ctx = TableContext(NOW)
    ctx.event("Kernel.OOMKill", NOW - 30, labels={"pid": "9", "process": "node", "constraint": "CONSTRAINT_MEMCG"})
    assert "memory cgroup" in evaluate("performance.oom", ctx).recommendation


def test_a_fresh_instance_has_no_full_window_yet():
    ctx = TableContext(NOW + 10)
    ctx.add("cpu_usage", ctx.times(40), 99.0)  # 4 points: two partial 5-min buckets
    r = evaluate("performance.cpu", ctx)
    # A new machine is judged on what exists, without concluding a 5-minute breach from 40 s.
    assert r.status == "ok" and r.evidence["partial"] is True
    assert r.message.startswith("less than one full 5-min window of cpu_usage so far (average 99.0 %)")
