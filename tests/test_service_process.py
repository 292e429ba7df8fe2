"""The real service as a user starts it: `make run`, and `diag serve` stopped with SIGTERM."""

import json
import os
import signal
import subprocess
import time

from tests.conftest import ROOT, free_port, http, scraped_value


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
        # cpu_usage (diag_cpu_usage_ratio on /metrics) needs a second cycle (a rate); the default interval is 10 s.
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and "\ndiag_cpu_usage_ratio{" not in text:
            text = http("GET", f"http://127.0.0.1:{port}/metrics")[2].decode()
            time.sleep(1)
        assert "\ndiag_cpu_usage_ratio{" in text
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


def test_sigterm_stops_within_seconds_while_a_collector_and_the_facts_are_stuck(serve, tmp_path):
    """Real blocking calls, not a test hook: /proc/net/dev and one process's comm are FIFOs
    with no writer, so open(2) blocks in the kernel as on a hung mount. Collection keeps
    its interval without the network collector, says so once, and SIGTERM still ends the
    process in seconds although the facts snapshot (a scheduler job) never returns."""
    import shutil

    from tests.conftest import FIXTURES

    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    (top / "proc" / "net" / "dev").unlink()
    os.mkfifo(top / "proc" / "net" / "dev")
    os.mkfifo(top / "proc" / "101" / "comm")
    (top / "dev").mkdir()
    (top / "dev" / "kmsg").write_bytes(b"")
    p = serve("--interval", "1s", "--proc", str(top / "proc"), "--sys", str(top / "sys"),
              "--kmsg", str(top / "dev" / "kmsg"))
    text = http("GET", p.url + "/metrics")[2].decode()
    t0, n0 = time.monotonic(), scraped_value(text, "diag_collections_total")
    time.sleep(5)
    text = http("GET", p.url + "/metrics")[2].decode()
    n1 = scraped_value(text, "diag_collections_total")
    assert n1 - n0 >= (time.monotonic() - t0) - 1.5, (n0, n1)  # the 1 s interval held
    assert scraped_value(text, "diag_collector_stalled", collector="network") == 1.0
    assert scraped_value(text, "diag_collector_stalled", collector="cpu") == 0.0
    assert scraped_value(text, "diag_collector_stalls_total", collector="network") >= n1 - 1
    assert scraped_value(text, "diag_load_1") is not None  # the other collectors deliver
    out = p.output()
    assert out.count("collector network has not returned") == 1, out

    t = time.monotonic()
    assert p.stop(signal.SIGTERM, timeout=30) == 0, p.output()
    took = time.monotonic() - t
    print(f"SIGTERM to exit with a stuck collector and a stuck facts job: {took:.2f} s")
    assert took < 8, p.output()
    out = p.output()
    assert "stopped cleanly" in out
    assert "stopping without waiting for job(s) still running" in out and "facts" in out, out
