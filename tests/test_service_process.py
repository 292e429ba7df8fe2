"""The real service as a user starts it: `make run`, and `diag serve` stopped with SIGTERM."""

import json
import os
import signal
import subprocess
import time

from tests.conftest import ROOT, free_port, http


def test_make_run_serves_healthz_and_cpu_usage(tmp_path):
    port = free_port()
    # Output to a file: an unread pipe fills up and blocks the service's logging.
    log = open(tmp_path / "make-run.log", "wb")
    proc = subprocess.Popen(["make", "run", f"PORT={port}", f"DATA_DIR={tmp_path / 'data'}"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, healthy = time.monotonic() + 30, False
        while time.monotonic() < deadline and not healthy:
            try:
                healthy = http("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200
            except OSError:
                time.sleep(0.3)
        assert healthy, "no /healthz within 30 s"
        # cpu_usage needs a second cycle (a rate); the default interval is 10 s.
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and "\ncpu_usage{" not in text:
            text = http("GET", f"http://127.0.0.1:{port}/metrics")[2].decode()
            time.sleep(1)
        assert "\ncpu_usage{" in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError("make run did not stop within 30 s of SIGTERM") from None


def test_sigterm_stops_cleanly_and_keeps_data(serve):
    p = serve("--interval", "1s")
    status, _, body = http("GET", p.url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert p.stop(signal.SIGTERM) == 0, p.output()
    assert "stopped cleanly" in p.output()
    assert (p.data_dir / "metrics.db").exists()
