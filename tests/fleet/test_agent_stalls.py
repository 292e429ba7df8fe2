"""A real `diag agent` while a collector is stuck in a call that does not return: it keeps
its interval, says so in its /metrics and once in its log, and SIGTERM still ends it in
seconds. Real blocking calls, not a test hook: /proc/net/dev is a FIFO with no writer, so
open(2) blocks in the kernel as a read of a hung mount does."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from tests.conftest import FIXTURES, free_port, http, scraped_value
from tests.fleet.fleet_helpers import AgentProcess, Server, wait_for

INGEST = "ingest-token-stalls"


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, "--interval", "1s", env={"DIAG_INGEST_TOKEN": INGEST}).start()
    yield s
    s.stop()


def _stuck_host(tmp_path: Path) -> list[str]:
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "host" / "t0", top)
    (top / "proc" / "net" / "dev").unlink()
    import os

    os.mkfifo(top / "proc" / "net" / "dev")
    (top / "dev").mkdir()
    (top / "dev" / "kmsg").write_bytes(b"")
    return ["--proc", str(top / "proc"), "--sys", str(top / "sys"), "--kmsg", str(top / "dev" / "kmsg")]


def test_an_agent_keeps_its_interval_and_says_so_while_a_collector_is_stuck(tmp_path, server):
    port = free_port()
    a = AgentProcess(tmp_path, server.url, "--instance-id", "stuck-1", "--interval", "1s", "--token", INGEST,
                     "--listen", f"127.0.0.1:{port}", *_stuck_host(tmp_path))
    try:
        def scrape() -> str | None:
            try:
                status, _, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
            except OSError:
                return None
            text = body.decode()
            return text if status == 200 and (scraped_value(text, "diag_agent_batches_sent_total") or 0) >= 1 else None

        text = wait_for(scrape, "the agent's first batch sent", 30, a)
        t0, n0 = time.monotonic(), scraped_value(text, "diag_agent_batches_sent_total")
        time.sleep(4)
        text = scrape()
        assert text is not None
        n1 = scraped_value(text, "diag_agent_batches_sent_total")
        assert n1 - n0 >= (time.monotonic() - t0) - 1.5, (n0, n1)  # the 1 s interval held
        assert scraped_value(text, "diag_collector_stalled", collector="network") == 1.0
        assert scraped_value(text, "diag_collector_stalled", collector="cpu") == 0.0
        assert scraped_value(text, "diag_collector_stalls_total", collector="network") >= 3
        assert scraped_value(text, "diag_collector_stalls_total", collector="cpu") == 0
        assert scraped_value(text, "diag_collection_overruns_total") == 0  # the stuck call cost its budget, not a cycle
        assert scraped_value(text, "diag_load_1") is not None  # the other collectors deliver
        out = a.output()
        assert out.count("collector network has not returned") == 1, out
        # Its budget is 0.4 x the agent's 1 s interval, not the 5 s of a cycle without one.
        waited = float(re.search(r"collector network has not returned after ([\d.]+) s", out).group(1))
        assert waited < 1.0, out
    finally:
        assert a.stop() == 0, a.output()


def test_sigterm_stops_the_agent_within_seconds_while_a_collector_is_stuck(tmp_path, server):
    # At a 30 s interval a collector's budget is 12 s: the first cycle waits that long on
    # the stuck one, and SIGTERM arrives while it does.
    a = AgentProcess(tmp_path, server.url, "--instance-id", "stuck-2", "--interval", "30s", "--token", INGEST,
                     *_stuck_host(tmp_path))
    wait_for(lambda: "pushing to" in a.output(), "the agent's loop to start", 30, a)
    time.sleep(1.5)
    assert "collector network has not returned" not in a.output()  # still inside the first cycle's wait
    t = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    rc = a.proc.wait(30)
    took = time.monotonic() - t
    print(f"agent: SIGTERM to exit inside a stuck collector's budget: {took:.2f} s")
    assert rc == 0, a.output()
    assert took < 8, a.output()
    out = a.output()
    assert "stopping without waiting for the agent's loop, still collecting after 5 s" in out, out
