"""The event log: signals become typed events, repeats fold, maintenance has a lifecycle."""

import pytest

from diag.db import Database
from diag.events import FOLD_WINDOW, RESULT_GRACE, RETENTION, EventError, EventLog, alibaba_shape
from diag.model import Batch, Sample, Signal

T = 1_800_000_000.0


@pytest.fixture
def log(tmp_path):
    db = Database(tmp_path / "diag.db")
    yield EventLog(db)
    db.close()


def test_kernel_signal_becomes_its_event_type(log):
    e = log.record_signal("i-1", Signal(T, "hung_task", "INFO: task dd:15605 blocked for more than 5 seconds.",
                                        {"task": "dd", "pid": "15605"}, count=3, lines=("Call Trace:",)))
    assert (e["type"], e["level"], e["status"]) == ("Kernel.HungTask", "CRITICAL", "Executed")
    assert e["details"]["count"] == 3 and e["details"]["lines"] == ["Call Trace:"]


def test_repeats_of_one_fault_fold_and_another_fault_does_not(log):
    a = log.record_signal("i-1", Signal(T, "io_error", "I/O error, dev loop0", {"device": "loop0"}, count=28))
    b = log.record_signal("i-1", Signal(T + 60, "io_error", "I/O error, dev loop0", {"device": "loop0"}, count=2))
    c = log.record_signal("i-1", Signal(T + 60, "io_error", "I/O error, dev sdb", {"device": "sdb"}))
    d = log.record_signal("i-1", Signal(T + 60 + FOLD_WINDOW + 1, "io_error", "again", {"device": "loop0"}))
    assert a["event_id"] == b["event_id"] and b["details"]["count"] == 30 and b["last_time"] == T + 60
    assert len({a["event_id"], c["event_id"], d["event_id"]}) == 3


def test_counter_rises_are_events(log):
    batch = Batch(ts=T, samples=[Sample("tcp_listen_overflows", {}, 21.0, T), Sample("udp_rcvbuf_errors", {}, 0.0, T)])
    got = log.record_batch("i-1", batch)
    assert [e["type"] for e in got] == ["Network.ListenOverflow"] and got[0]["details"]["count"] == 21


def test_reboot_after_a_panic_is_a_failure(log):
    plain = log.record_signal("i-1", Signal(T, "reboot", "rebooted", {"boot_id": "b2"}))
    log.record_signal("i-2", Signal(T, "panic", "Kernel panic - not syncing: Fatal exception", {}))
    failed = log.record_signal("i-2", Signal(T + 120, "reboot", "rebooted", {"boot_id": "b3"}))
    assert (plain["type"], plain["level"]) == ("Instance.Reboot", "INFO")
    assert (failed["type"], failed["level"]) == ("InstanceFailure.Reboot", "CRITICAL")
    assert failed["details"]["labels"]["cause"] == "Kernel.Panic"


def test_maintenance_lifecycle(log):
    e = log.schedule("i-1", "SystemMaintenance.Reboot", T + 100, 600, "kernel update", now=T)
    assert e["status"] == "Scheduled" and log.maintaining("i-1", T) is None
    log.tick(T + 100)
    assert log.get(e["event_id"])["status"] == "Executing"
    assert log.maintaining("i-1", T + 200)["event_id"] == e["event_id"]
    reboot = log.record_signal("i-1", Signal(T + 300, "reboot", "rebooted", {"boot_id": "b2"}))  # the planned reboot
    log.tick(T + 700)
    done = log.get(e["event_id"])
    assert done["status"] == "Executed" and log.maintaining("i-1", T + 700) is None
    assert done["details"]["reboot_event_id"] == reboot["event_id"]


def test_a_stop_needs_no_reboot(log):
    e = log.schedule("i-1", "SystemMaintenance.Stop", T + 100, 600, now=T)
    log.tick(T + 700)
    assert log.get(e["event_id"])["status"] == "Executed"


def test_a_planned_reboot_without_a_reboot_fails_once_the_grace_is_over(log):
    e = log.schedule("i-1", "SystemMaintenance.Reboot", T + 100, 600, now=T)
    log.record_signal("i-2", Signal(T + 300, "reboot", "rebooted", {"boot_id": "other"}))  # another machine's
    log.tick(T + 700)
    assert log.get(e["event_id"])["status"] == "Executing"  # a slow boot may still report
    assert log.maintaining("i-1", T + 700) is None  # the window itself is over: alerts are no longer held
    log.tick(T + 700 + RESULT_GRACE)
    failed = log.get(e["event_id"])
    assert failed["status"] == "Failed" and failed["details"]["result"] == "no reboot was seen in the window"


def test_a_reboot_reported_late_still_counts(log):
    e = log.schedule("i-1", "SystemMaintenance.Redeploy", T + 100, 600, now=T)
    log.tick(T + 800)
    log.record_signal("i-1", Signal(T + 650, "reboot", "rebooted", {"boot_id": "b9"}))  # booted in the window
    log.tick(T + 900)
    assert log.get(e["event_id"])["status"] == "Executed"


def test_a_reboot_before_the_window_avoids_it(log):
    planned = log.schedule("i-1", "SystemMaintenance.Reboot", T + 3600, 600, now=T)
    asked = log.schedule("i-1", "SystemMaintenance.Redeploy", T + 7200, 600, now=T, inquire=True)
    stop = log.schedule("i-1", "SystemMaintenance.Stop", T + 3600, 600, now=T)
    reboot = log.record_signal("i-1", Signal(T + 60, "reboot", "rebooted", {"boot_id": "b2"}))
    for e in (planned, asked):
        got = log.get(e["event_id"])
        assert got["status"] == "Avoided" and got["details"]["reboot_event_id"] == reboot["event_id"]
        assert got["finish_time"] == T + 60
    assert log.get(stop["event_id"])["status"] == "Scheduled"  # a stop is not avoided by a reboot


def test_an_inquiring_event_waits_for_its_answer(log):
    e = log.schedule("i-1", "SystemMaintenance.Reboot", T + 100, 600, now=T, inquire=True)
    assert e["status"] == "Inquiring"
    log.tick(T + 5000)  # no time limit, never runs unasked
    assert log.get(e["event_id"])["status"] == "Inquiring" and log.maintaining("i-1", T + 5000) is None
    accepted = log.accept(e["event_id"], now=T + 5000)  # late: the window starts now, whole
    assert (accepted["status"], accepted["not_before"], accepted["finish_time"]) == ("Executing", T + 5000, T + 5600)
    with pytest.raises(EventError) as err:
        log.accept(e["event_id"], now=T + 5001)
    assert err.value.status == 409


def test_reschedule_keeps_the_duration_and_is_refused_in_the_past_or_once_running(log):
    e = log.schedule("i-1", "SystemMaintenance.Stop", T + 100, 600, now=T)
    moved = log.reschedule(e["event_id"], T + 1000, now=T + 10)
    assert (moved["status"], moved["not_before"], moved["finish_time"]) == ("Scheduled", T + 1000, T + 1600)
    with pytest.raises(EventError) as err:
        log.reschedule(e["event_id"], T - 500, now=T + 10)
    assert err.value.status == 409 and err.value.field == "not_before"
    log.tick(T + 1000)
    with pytest.raises(EventError) as err:
        log.reschedule(e["event_id"], T + 5000, now=T + 1001)
    assert err.value.status == 409 and "Executing" in err.value.message
    with pytest.raises(EventError) as err:
        log.reschedule("e-nope", T + 5000, now=T)
    assert err.value.status == 404


def test_cancel_only_before_it_runs(log):
    e = log.schedule("i-1", "SystemMaintenance.Stop", T + 100, 600, now=T)
    assert log.cancel(e["event_id"], now=T + 1)["status"] == "Canceled"
    assert log.maintaining("i-1", T + 200) is None
    running = log.schedule("i-1", "SystemMaintenance.Stop", T + 100, 600, now=T)
    log.tick(T + 150)
    with pytest.raises(EventError) as err:
        log.cancel(running["event_id"], now=T + 150)
    assert err.value.status == 409
    with pytest.raises(EventError) as err:
        log.cancel("e-nope")
    assert err.value.status == 404


@pytest.mark.parametrize("etype, duration, field", [("Kernel.Panic", 600, "type"), ("SystemMaintenance.Reboot", 1, "duration")])
def test_bad_schedules_are_refused(log, etype, duration, field):
    with pytest.raises(EventError) as err:
        log.schedule("i-1", etype, T + 100, duration, now=T)
    assert err.value.field == field and log.list() == []


def test_filters_and_sixty_day_history(log):
    log.detected("i-1", "Disk.Full", T, "full")
    log.detected("i-2", "Network.LinkDown", T + 10, "down")
    assert [e["type"] for e in log.list("i-1")] == ["Disk.Full"]
    assert [e["instance_id"] for e in log.list(types=["Network.LinkDown"])] == ["i-2"]
    assert log.list(since=T + 5)[0]["type"] == "Network.LinkDown" and len(log.list(since=T + 5)) == 1
    assert log.expire(T + RETENTION + 5) == 1
    assert [e["type"] for e in log.list()] == ["Network.LinkDown"]


def test_alibaba_notification_shape(log):
    e = log.schedule("i-1", "SystemMaintenance.Reboot", T + 100, 600, now=T)
    shape = alibaba_shape(e)
    assert shape["name"] == "Instance:SystemMaintenance.Reboot:Scheduled" and shape["resourceId"] == "i-1"
    assert set(shape) == {"id", "eventTime", "level", "name", "product", "resourceId", "content"}


def _boot(proc, boot_id: str, btime: int) -> None:
    (proc / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (proc / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (proc / "stat").write_text(f"cpu  1 0 1 100 0 0 0 0 0 0\nbtime {btime}\n")
    (proc / "uptime").write_text("30.00 20.00\n")


def test_panic_then_a_clean_reboot_is_one_failure_then_one_routine_reboot(log, tmp_path):
    """Each boot's collectors are new (the service starts with the machine) and share the
    state dir; the pstore record stays in place, as it does until systemd-pstore archives it."""
    import os
    import shutil

    from collectors.kernel_log import KernelLogCollector
    from collectors.roots import Roots
    from collectors.runner import CollectionCycle
    from collectors.settings import CollectorSettings
    from collectors.state import StateCollector
    from tests.conftest import FIXTURES

    proc, pstore, kmsg = tmp_path / "proc", tmp_path / "pstore", tmp_path / "kmsg"
    pstore.mkdir()
    kmsg.write_text("")
    roots = Roots(proc=proc, kmsg=kmsg, pstore=pstore)
    settings = CollectorSettings(state_dir=tmp_path / "state")
    boot_a, boot_b, boot_c = int(T), int(T) + 86400, int(T) + 86400 + 1200  # C: 20 minutes after the crash reboot

    def run_boot(boot_id: str, btime: int) -> list[dict]:
        _boot(proc, boot_id, btime)
        cycle = CollectionCycle([KernelLogCollector(roots, settings), StateCollector(roots, settings)])
        return [e for e in log.record_batch("i-1", cycle.run(btime + 30.0)) if e["type"].endswith("Reboot")]

    assert run_boot("aaaa", boot_a) == []  # first run ever: no reboot to judge
    dump = pstore / "dmesg-ramoops-0"
    shutil.copy(FIXTURES / "pstore" / "dmesg-ramoops-0", dump)
    os.utime(dump, (boot_b - 40, boot_b - 40))  # boot A panicked 40 s before boot B began
    (crash,) = run_boot("bbbb", boot_b)
    (routine,) = run_boot("cccc", boot_c)
    assert (crash["type"], crash["level"], crash["details"]["labels"]["cause"]) == \
        ("InstanceFailure.Reboot", "CRITICAL", "Kernel.Panic")
    assert crash["publish_time"] == boot_b and crash["details"]["labels"]["previous_boot_time"] == str(boot_a)
    # The panic is an hour-old fault of the boot before: this reboot ended boot B, which was clean.
    assert (routine["type"], routine["level"]) == ("Instance.Reboot", "INFO")
    assert "cause" not in routine["details"]["labels"]
    assert [e["type"] for e in log.list("i-1", types=["InstanceFailure.Reboot", "Instance.Reboot"])] == \
        ["Instance.Reboot", "InstanceFailure.Reboot"]
    assert len(log.list("i-1", types=["Kernel.Panic"])) == 1


def test_only_the_last_hour_of_kernel_lines_of_the_ended_boot_decides(log):
    # A hung task long before a planned reboot did not cause it; one in the new boot neither.
    log.record_signal("i-1", Signal(T - 5 * 3600, "hung_task", "INFO: task dd:1 blocked", {"task": "dd", "pid": "1"}))
    log.record_signal("i-1", Signal(T + 60, "soft_lockup", "watchdog: BUG: soft lockup", {"cpu": "1"}))
    plain = log.record_signal("i-1", Signal(T, "reboot", "rebooted", {"boot_id": "b2", "previous_boot_time": str(T - 86400)}))
    assert plain["type"] == "Instance.Reboot"
    log.record_signal("i-2", Signal(T - 600, "hung_task", "INFO: task dd:1 blocked", {"task": "dd", "pid": "1"}))
    failed = log.record_signal("i-2", Signal(T, "reboot", "rebooted", {"boot_id": "b2", "previous_boot_time": str(T - 86400)}))
    assert failed["type"] == "InstanceFailure.Reboot" and failed["details"]["labels"]["cause"] == "Kernel.HungTask"


def test_a_reboot_without_its_previous_boot_time_is_bounded_by_the_last_recorded_boot(log):
    """An older agent does not send previous_boot_time: the last reboot event is that boot's start."""
    log.record_signal("i-1", Signal(T - 60, "panic", "Kernel panic - not syncing: Fatal exception", {"source": "pstore"}))
    first = log.record_signal("i-1", Signal(T, "reboot", "rebooted", {"boot_id": "b2"}))
    second = log.record_signal("i-1", Signal(T + 900, "reboot", "rebooted", {"boot_id": "b3"}))
    assert (first["type"], second["type"]) == ("InstanceFailure.Reboot", "Instance.Reboot")


def test_a_state_change_has_the_seed_s_name_and_state(log):
    e = log.detected("i-1", "Instance.StateChange", T, "Stopped: no sample for 301s",
                     labels={"state": "Stopped", "cause": "no sample for 301s"}, fold_key="x")
    body = alibaba_shape(e)
    assert body["name"] == "Instance:StateChange" and body["content"]["state"] == "Stopped"
    assert body["content"]["resourceId"] == "i-1" and body["level"] == "INFO"


def test_a_start_a_little_in_the_past_starts_now_whole_and_an_older_one_is_refused(log):
    e = log.schedule("i-1", "SystemMaintenance.Stop", T - 600, 1800, now=T)  # a form filled in slowly
    assert (e["status"], e["not_before"], e["finish_time"]) == ("Executing", T, T + 1800)
    with pytest.raises(EventError) as err:
        log.schedule("i-1", "SystemMaintenance.Stop", T - 901, 1800, now=T)
    assert err.value.status == 422 and err.value.field == "not_before"


def test_a_reader_gets_each_new_event_once_and_not_its_folded_repeats(log):
    log.detected("i-1", "Disk.Full", T - 60, "before the reader started", fold_key="/old")
    mark = log.newest_mark()
    full = log.detected("i-1", "Disk.Full", T, "/ is full", fold_key="/")
    log.detected("i-1", "Disk.Full", T + 10, "/ is still full", fold_key="/")  # folds into `full`
    panic = log.detected("i-1", "Kernel.Panic", T + 20, "panic")
    got, mark = log.recorded_since(mark)
    assert [e["event_id"] for e in got] == [full["event_id"], panic["event_id"]]
    assert got[0]["details"]["count"] == 2  # read whole, with its repeats folded in
    assert log.recorded_since(mark) == ([], mark)
    oom = log.detected("i-1", "Kernel.OOMKill", T + 30, "oom")
    hung = log.detected("i-1", "Kernel.HungTask", T + 40, "hung")
    first, mark = log.recorded_since(mark, limit=1)
    rest, _ = log.recorded_since(mark)
    assert [e["event_id"] for e in first] == [oom["event_id"]] and [e["event_id"] for e in rest] == [hung["event_id"]]
