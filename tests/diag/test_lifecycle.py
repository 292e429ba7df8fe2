"""Start and stop: damaged databases are moved aside and reported; unclean stops are noticed."""

import signal
import subprocess
import sys

from diag.config import load
from diag.model import Signal
from diag.service import Service
from tests.conftest import ROOT, ServeProcess


def service(data_dir):
    return Service(load(env={}, data_dir=str(data_dir)))


def test_a_damaged_database_is_moved_aside_and_reported(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metrics.db").write_bytes(b"this is not a database" * 100)
    s = service(data)
    try:
        aside = list(data.glob("metrics.db.damaged-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
        errors = s.events.list(types=["Store.Error"])
        assert errors and "metrics.db was damaged" in errors[0]["details"]["message"]
        s.collect()  # the new store works
        assert "mem_total" in s.store.metric_names()
    finally:
        s.close()


def test_unclean_stop_is_noticed_and_a_clean_one_is_not(tmp_path):
    first = service(tmp_path)
    first.start()  # ... and then the process "dies": no close()
    second = service(tmp_path)
    second.start()
    assert [e["type"] for e in second.events.list(types=["Service.UncleanStop"])] == ["Service.UncleanStop"]
    # The reboot that follows an unclean stop is a failure, not routine.
    reboot = second.events.record_signal(second.instance_id, Signal(1e9, "reboot", "rebooted", {"boot_id": "b9"}))
    assert reboot["type"] == "InstanceFailure.Reboot" and reboot["details"]["labels"]["cause"] == "unclean stop"
    second.close()
    first.db.close()
    first.store.close()
    third = service(tmp_path)
    third.start()
    try:
        assert len(third.events.list(types=["Service.UncleanStop"])) == 1  # still only the first one
    finally:
        third.close()


def test_sigkill_then_restart_logs_the_unclean_stop(tmp_path):
    data = tmp_path / "data"
    p = ServeProcess(data, "--interval", "1s")
    p.wait_ready()
    assert p.stop(signal.SIGKILL) == -signal.SIGKILL
    again = ServeProcess(data, "--interval", "1s")
    try:
        again.wait_ready()
        assert "did not stop cleanly" in again.output()
    finally:
        assert again.stop() == 0
    assert not (data / "running.pid").exists()


STOP_SCRIPT = """
import os, signal, threading, time
from diag.lifecycle import stop_on_signals

stop = threading.Event()
stop_on_signals(stop)
with stop._cond:  # the signal lands while the lock that stop.set() takes is held, as in Event.wait
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
print("stopped" if stop.wait(10) else "not stopped", flush=True)
"""


def test_a_signal_that_lands_inside_the_stop_event_still_stops():
    # A handler that called stop.set() itself deadlocked here (and `make run` stopped by
    # its process group hung this way, about one stop in three).
    done = subprocess.run([sys.executable, "-c", STOP_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "stopped", done.stdout + done.stderr
