"""State checks: kernel faults, reboots, stopped reporting."""

from __future__ import annotations


from checks.base import RECENT
from tests.checks.context import TableContext, evaluate, kernel_log_read

NOW = 1_800_000_000.0


def read_ctx() -> TableContext:
    """A context whose kernel log was read every minute, before and after NOW."""
    return kernel_log_read(TableContext(NOW), NOW - 12 * 3600, NOW + 13 * 3600, step=60)


def test_kernel_fault_critical_recent_warning_earlier_and_clears():
    ctx = read_ctx()
    assert evaluate("state.kernel_fault", ctx).status == "ok"
    line = "INFO: task jbd2/sda1-8:312 blocked for more than 120 seconds."
    ctx.event("Kernel.HungTask", NOW - 300, message=line, labels={"task": "jbd2/sda1-8", "pid": "312"},
              lines=[line, "      Not tainted 6.8.0 #1"])
    r = evaluate("state.kernel_fault", ctx)
    assert r.status == "critical"
    [e] = r.evidence["events"]
    assert e["lines"][0] == line and e["message"] == line
    assert "jbd2/sda1-8" in r.recommendation and "hung_task_timeout_secs" in r.recommendation
    ctx.at(NOW + RECENT)
    assert evaluate("state.kernel_fault", ctx).status == "warning"
    ctx.at(NOW + 12 * 3600 - 301)  # still inside the lookback by a second
    assert evaluate("state.kernel_fault", ctx).status == "warning"
    ctx.at(NOW + 12 * 3600)
    assert evaluate("state.kernel_fault", ctx).status == "ok"


def test_kernel_fault_covers_all_four_and_ignores_others():
    ctx = read_ctx()
    ctx.event("Kernel.RCUStall", NOW - 10, level="WARN")
    ctx.event("Kernel.OOMKill", NOW - 10)
    assert evaluate("state.kernel_fault", ctx).status == "ok"
    ctx.event("Kernel.SoftLockup", NOW - 4000, labels={"cpu": "3", "process": "kworker/3:1", "pid": "99"})
    ctx.event("Kernel.Panic", NOW - 3000, labels={"reason": "Fatal exception"})
    ctx.event("Kernel.HardLockup", NOW - 2000, labels={"cpu": "1"})
    r = evaluate("state.kernel_fault", ctx)
    assert r.status == "warning"
    assert {k: v for k, v in r.evidence["by_type"].items() if v} == {
        "Kernel.SoftLockup": 1, "Kernel.Panic": 1, "Kernel.HardLockup": 1}
    assert "kworker/3:1" in r.recommendation and "kdump" in r.recommendation


def test_kernel_fault_unknown_when_the_kernel_log_was_not_read():
    ctx = TableContext(NOW)
    r = evaluate("state.kernel_fault", ctx)
    assert r.status == "unknown" and "kernel log was not read" in r.message and "/dev/kmsg" in r.message
    # Read only before the lookback: still no evidence for this window.
    kernel_log_read(ctx, NOW - 20 * 3600, NOW - 12 * 3600 - 60)
    assert evaluate("state.kernel_fault", ctx).status == "unknown"
    # Read once inside the lookback: "nothing found" now means something.
    kernel_log_read(ctx, NOW - 3600, NOW - 3600)
    r = evaluate("state.kernel_fault", ctx)
    assert r.status == "ok" and r.evidence["kernel_log_read_at"] == NOW - 3600
    # A fault that was reported is reported, whatever says the kernel log is read.
    bare = TableContext(NOW)
    bare.event("Kernel.Panic", NOW - 60, labels={"reason": "Fatal exception"})
    assert evaluate("state.kernel_fault", bare).status == "critical"


def test_folded_repeats_count_as_recent_by_their_last_time():
    ctx = TableContext(NOW)
    ctx.event("Kernel.HungTask", NOW - 7200, last_time=NOW - 60, count=12, labels={"task": "mysqld", "pid": "1"})
    assert evaluate("state.kernel_fault", ctx).status == "critical"


def test_reboot_warns_and_a_boot_before_monitoring_is_only_reported():
    ctx = TableContext(NOW, monitoring_since=NOW - 3600)
    ts = ctx.times(3600)
    ctx.add("uptime", ts, ts - (NOW - 86400))  # booted a day ago
    r = evaluate("state.reboot", ctx)
    assert r.status == "ok" and "before monitoring began" in r.message
    assert r.evidence["boot_time"] == NOW - 86400
    ctx.event("InstanceFailure.Reboot", NOW - 600, level="CRITICAL", labels={"cause": "Kernel.Panic", "boot_id": "b"})
    r = evaluate("state.reboot", ctx)
    assert r.status == "warning"  # non-critical: at most a warning, even after a failure
    assert r.evidence["reboots"][0]["cause"] == "Kernel.Panic" and "kernel_fault" in r.recommendation
    ctx.at(NOW + 12 * 3600)
    assert evaluate("state.reboot", ctx).status != "warning"


def test_reboot_unknown_without_any_state_data():
    assert evaluate("state.reboot", TableContext(NOW)).status == "unknown"


def test_stopped():
    ctx = TableContext(NOW)
    assert evaluate("state.stopped", ctx).status == "unknown"
    ctx.add("uptime", ctx.times(3600), 1.0)
    assert evaluate("state.stopped", ctx).status == "ok"
    ctx.at(NOW + 299)
    assert evaluate("state.stopped", ctx).status == "ok"
    ctx.at(NOW + 300)
    r = evaluate("state.stopped", ctx)
    assert r.status == "critical" and r.evidence["last_sample"] == NOW


def test_stopped_counts_any_metric_and_reports_earlier_gaps():
    ctx = TableContext(NOW)
    ctx.add("cpu_usage", ctx.times(60), 5.0)  # only cpu_usage, e.g. an older agent
    assert evaluate("state.stopped", ctx).status == "ok"
    ctx = TableContext(NOW)
    ts = ctx.times(7200)
    ctx.add("uptime", ts[(ts < NOW - 4000) | (ts > NOW - 3000)], 1.0)  # silent for ~1000 s an hour ago
    r = evaluate("state.stopped", ctx)
    assert r.status == "warning"
    [g] = r.evidence["gaps"]
    assert g["seconds"] == 1020.0 and g["from"] == NOW - 4010


def test_stopped_says_which_collector_is_stalled_and_since_when():
    """A stalled collector leaves its metrics empty while the instance still reports: the
    check must not read that silence as health."""
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    ctx.add("uptime", ts, 1.0)
    ctx.add("collector_stalled", ts, 0.0, collector="cpu")
    stuck_from = NOW - 600
    ctx.add("collector_stalled", ts, (ts >= stuck_from).astype(float), collector="filesystem")
    r = evaluate("state.stopped", ctx)
    assert r.status == "warning", r.message
    [s] = r.evidence["stalled_collectors"]
    assert s["collector"] == "filesystem" and s["stalled_now"] and s["until"] is None
    assert stuck_from - 60 <= s["since"] <= stuck_from  # bucketed by the minute
    assert "filesystem" in r.message and "cpu" not in r.message

    # It returned 20 minutes later: reporting whole again, the stall stays in the evidence.
    later = NOW + 1200
    ctx.at(later)
    ts2 = ctx.times(1200, end=later)
    ctx.add("uptime", ts2, 1.0)
    ctx.add("collector_stalled", ts2, (ts2 < NOW + 300).astype(float), collector="filesystem")
    r = evaluate("state.stopped", ctx)
    assert r.status == "warning" and "earlier" in r.message, r.message
    [s] = r.evidence["stalled_collectors"]
    assert not s["stalled_now"] and s["until"] is not None and s["until"] <= NOW + 360


def test_stopped_counts_late_cycles_short_of_a_gap():
    ctx = TableContext(NOW, interval=10.0)
    ts = ctx.times(3600)
    ts = ts[(ts < NOW - 1000) | (ts > NOW - 960)]  # NOW-1010 to NOW-950: a cycle overran, the next were skipped
    ctx.add("uptime", ts, 1.0)
    r = evaluate("state.stopped", ctx)
    assert r.status == "ok" and r.evidence["gaps"] == []
    assert r.evidence["late_cycles"] == {"count": 1, "longest_seconds": 60.0}
    assert r.evidence["stalled_collectors"] == []
