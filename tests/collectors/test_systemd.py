"""systemd units through a fake systemctl (tests/fixtures/systemd/bin, first on PATH) and,
live, on this machine without systemd."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from checks import catalogue as check_catalogue
from collectors import systemd
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from collectors.systemd import SystemdCollector
from diag.model import Batch
from tests.checks.context import TableContext
from tests.conftest import collected_service

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "systemd"
CHECK = check_catalogue.get("state.failed_units")
T0 = 1_800_000_000.0


@pytest.fixture
def scenario(tmp_path, monkeypatch) -> Path:
    """A copy of the `failed` scenario that the fake systemctl and journalctl answer from."""
    d = tmp_path / "scenario"
    shutil.copytree(FIX / "failed", d, symlinks=True)
    monkeypatch.setenv("DIAG_FAKE_SYSTEMD", str(d))
    monkeypatch.setenv("PATH", f"{FIX / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return d


def calls(d: Path) -> list[str]:
    p = d / "calls"
    return p.read_text().splitlines() if p.exists() else []


def cycle(c: SystemdCollector, now: float) -> Batch:
    """One collection, then the refresh it started is let finish (a real cycle comes 10 s later)."""
    b = c.collect(now)
    assert c.wait_refreshed(10)
    return b


def values(batches: list[Batch], metric: str) -> list[tuple[dict, float]]:
    return [(s.labels, s.value) for b in batches for s in b.samples if s.metric == metric]


def context(batches: list[Batch], facts: dict | None) -> TableContext:
    ctx = TableContext(now=batches[-1].ts, interval=10.0)
    for b in batches:
        for s in b.samples:
            ctx.add(s.metric, [s.ts], s.value, **s.labels)
    return ctx.set_facts(None if facts is None else {"systemd": facts})


def test_a_failed_unit_is_critical_naming_it_with_its_result_and_journal_lines(scenario):
    roots = Roots.under(scenario / "root")
    c = SystemdCollector(roots, CollectorSettings())
    first = cycle(c, T0)
    assert first.samples == []  # the listing is made off the collection thread: it arrives next cycle
    batches = [first, cycle(c, T0 + 10)]
    assert values(batches, "systemd_units_failed") == [({}, 2.0)]
    assert sorted(values(batches, "systemd_unit_failed"), key=lambda x: x[0]["unit"]) == [
        ({"unit": "backup.mount", "result": "timeout"}, 1.0), ({"unit": "nginx.service", "result": "exit-code"}, 1.0)]
    # worker.service waits to restart (auto-restart): it gets a series, with no restart counted yet
    assert values(batches, "systemd_unit_restarts") == [({"unit": "worker.service"}, 0.0)]
    assert [(s.labels, s.value) for s in batches[-1].totals] == [({"unit": "worker.service"}, 7.0)]

    facts = systemd.facts(roots)
    assert facts["present"] and facts["failed_total"] == 2
    r = CHECK.evaluate(context(batches, facts), CHECK)
    assert r.status == "critical", r.message
    assert r.message == "2 failed unit(s) now: backup.mount (timeout), nginx.service (exit-code)"
    nginx = next(u for u in r.evidence["units"] if u["unit"] == "nginx.service")
    assert nginx["result"] == "exit-code" and nginx["failed_now"] and nginx["since"] == "Fri 2026-12-04 23:58:01 UTC"
    assert nginx["lines"][1] == "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)"
    assert len(nginx["lines"]) == 6
    assert "journalctl -u nginx.service" in r.recommendation and "exited with an error status" in r.recommendation
    assert "did not start or stop within TimeoutStartSec" in r.recommendation  # backup.mount's timeout
    assert "journalctl -u nginx.service -n 10 -o cat --no-pager -q" in calls(scenario)


def test_a_unit_that_recovers_keeps_a_zero_series_and_the_check_still_names_it(scenario, monkeypatch):
    monkeypatch.setattr(systemd, "REFRESH_S", 0.0)
    c = SystemdCollector(Roots.under(scenario / "root"), CollectorSettings())
    batches = [cycle(c, T0), cycle(c, T0 + 10)]
    units = scenario / "list-units"
    units.write_text(units.read_text().replace("nginx.service                loaded failed   failed",
                                               "nginx.service                loaded active   running"))
    (scenario / "show" / "nginx.service").write_text("Id=nginx.service\nActiveState=active\nSubState=running\n"
                                                    "Result=success\nNRestarts=0\n")
    # each cycle reports the listing the previous one started
    batches += [cycle(c, T0 + 20), cycle(c, T0 + 30)]
    assert values(batches[-1:], "systemd_unit_failed") == [({"unit": "backup.mount", "result": "timeout"}, 1.0),
                                                          ({"unit": "nginx.service", "result": "exit-code"}, 0.0)]
    assert values(batches[-1:], "systemd_units_failed") == [({}, 1.0)]
    r = CHECK.evaluate(context(batches, None), CHECK)
    assert r.status == "critical"  # backup.mount is still failed
    assert r.message.startswith("1 failed unit(s) now: backup.mount (timeout); failed earlier in the last 12.0 h"), r.message
    assert "nginx.service (exit-code, last at" in r.message


def test_a_restart_loop_is_a_warning(scenario, monkeypatch):
    # No failed unit: worker.service crashes and Restart= brings it back, NRestarts rising.
    text = (scenario / "list-units").read_text().splitlines()
    (scenario / "list-units").write_text("\n".join(x for x in text if " failed " not in x) + "\n")
    show = scenario / "show" / "worker.service"
    monkeypatch.setattr(systemd, "REFRESH_S", 0.0)
    c = SystemdCollector(Roots.under(scenario / "root"), CollectorSettings())
    batches = [cycle(c, T0), cycle(c, T0 + 10)]
    show.write_text(show.read_text().replace("NRestarts=7", "NRestarts=9"))
    batches.append(cycle(c, T0 + 20))  # reports the listing of T0 + 10 (still 7)
    show.write_text(show.read_text().replace("NRestarts=9", "NRestarts=10"))
    batches.append(cycle(c, T0 + 30))
    r = CHECK.evaluate(context(batches, None), CHECK)
    assert r.status == "ok", r.message  # 2 restarts so far: under the threshold of 3
    batches.append(cycle(c, T0 + 40))
    assert [v for _, v in values(batches, "systemd_unit_restarts")] == [0.0, 0.0, 2.0, 1.0]
    assert values(batches, "systemd_units_failed") == [({}, 0.0)] * 4
    assert [(s.labels, s.value) for s in batches[-1].totals] == [({"unit": "worker.service"}, 10.0)]

    facts = systemd.facts(Roots.under(scenario / "root"))
    r = CHECK.evaluate(context(batches, facts), CHECK)
    assert r.status == "warning", r.message
    assert r.message == "restarting in a loop: worker.service restarted 3 times in the last 60 min"
    (loop,) = r.evidence["restart_loops"]
    assert loop["sub_state"] == "auto-restart" and loop["result"] == "exit-code"
    assert loop["restarts"] == 3 and loop["lines"][1] == ("worker: Error 111 connecting to 127.0.0.1:6379. "
                                                          "Connection refused.")
    assert "Restart=" in r.recommendation and "journalctl -u worker.service" in r.recommendation


def test_a_hanging_systemctl_is_killed_at_its_deadline_and_never_stacked(scenario, monkeypatch):
    (scenario / "hang").touch()
    monkeypatch.setattr(systemd, "DEADLINE_S", 0.5)
    monkeypatch.setattr(systemd, "REFRESH_S", 0.0)  # due at every cycle: only the one in flight holds it back
    c = SystemdCollector(Roots.under(scenario / "root"), CollectorSettings())
    t = time.perf_counter()
    batches = [c.collect(T0 + i) for i in range(20)]
    assert time.perf_counter() - t < 0.3  # the cycle never waits on systemctl
    assert all(b.samples == [] for b in batches)
    deadline = time.monotonic() + 5
    while not calls(scenario) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls(scenario)) == 1  # one systemctl, however many cycles asked
    assert c.wait_refreshed(3)  # killed at 0.5 s: its thread ends
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    sleeping = []
    for p in pids:
        try:
            if Path(f"/proc/{p}/cmdline").read_bytes() == b"sleep\x00600\x00":
                sleeping.append(p)
        except OSError:
            pass
    assert sleeping == []  # the child was killed, not left behind
    b = c.collect(T0 + 30)
    assert "systemctl:TimeoutError" in b.errors and b.samples == []


def test_a_refresh_that_never_returns_is_reported_stalled_and_not_stacked(tmp_path, monkeypatch):
    # A child in D state cannot be killed: its refresh thread stays; no second one starts.
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    release, started = threading.Event(), []

    def stuck(timeout: float = 0) -> systemd.Listing:
        started.append(1)
        release.wait(30)
        return systemd.Listing({"a.service": systemd.Unit("a.service", "failed", "failed", "signal")})

    monkeypatch.setattr(systemd, "list_units", stuck)
    monkeypatch.setattr(systemd, "DEADLINE_S", 0.1)
    monkeypatch.setattr(systemd, "REFRESH_S", 0.0)
    c = SystemdCollector(Roots.under(tmp_path), CollectorSettings())
    errors: list[str] = []
    end = time.monotonic() + 2.6  # past 2 x deadline + 2 s
    while time.monotonic() < end:
        errors += c.collect(T0).errors
        time.sleep(0.05)
    assert started == [1] and "systemctl:Stalled" in errors
    release.set()
    assert c.wait_refreshed(5)
    c.collect(T0 + 10)  # takes the late answer, starts the next refresh
    b = c.collect(T0 + 20)
    assert [(s.metric, s.value) for s in b.samples][:2] == [("systemd_units_failed", 1.0), ("systemd_unit_failed", 1.0)]


def test_without_systemd_no_series_no_process_and_facts_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAG_FAKE_SYSTEMD", str(tmp_path))
    monkeypatch.setenv("PATH", f"{FIX / 'bin'}{os.pathsep}{os.environ['PATH']}")
    roots = Roots.under(tmp_path)
    c = SystemdCollector(roots, CollectorSettings())
    assert cycle(c, T0).samples == [] and cycle(c, T0 + 10).samples == []
    assert calls(tmp_path) == []
    f = systemd.facts(roots)
    assert f == {"present": False, "reason": f"systemd is not running ({tmp_path}/run/systemd/system is absent)"}
    r = CHECK.evaluate(TableContext(now=T0).set_facts({"systemd": f}), CHECK)
    assert (r.status, r.message) == ("not_applicable", f["reason"])
    r = CHECK.evaluate(TableContext(now=T0), CHECK)  # no facts, no series: nothing says systemd is absent
    assert r.status == "unknown"


def test_facts_keep_within_their_budget_when_systemctl_hangs(scenario):
    (scenario / "hang").touch()
    t = time.monotonic()
    f = systemd.facts(Roots.under(scenario / "root"), budget=0.5)
    assert time.monotonic() - t < 2.0
    assert f["present"] is True and "did not answer within 0.5 s" in f["error"]
    r = CHECK.evaluate(TableContext(now=T0).set_facts({"systemd": f}), CHECK)
    assert r.status == "unknown" and "could not be listed" in r.message


def test_list_units_parsing_takes_a_marked_failed_line_and_skips_blanks():
    units = systemd.parse_list_units("● nginx.service loaded failed failed A web server\n\n"
                                     "cron.service loaded active running Cron\n")
    assert [(u.name, u.active, u.sub, u.failed) for u in units.values()] == [
        ("nginx.service", "failed", "failed", True), ("cron.service", "active", "running", False)]


def test_the_idle_cycle_without_systemd_is_cheap():
    # This machine has no systemd (/run/systemd/system absent): a cycle is one stat.
    c = SystemdCollector(Roots(), CollectorSettings())
    if systemd.booted(Roots()):
        pytest.skip("this machine runs systemd")
    n = 20000
    t = time.process_time()
    for i in range(n):
        c.collect(T0 + i)
    per = (time.process_time() - t) / n
    assert per < 20e-6, f"{per * 1e6:.1f} µs per cycle"


def test_live_this_machine_without_systemd_is_not_applicable(tmp_path):
    if systemd.booted(Roots()):
        pytest.skip("this machine runs systemd")
    s = collected_service(tmp_path / "data")
    try:
        report = s.diagnose(check_ids=["state.failed_units"], fresh_facts=True)
        (r,) = report["checks"]
        assert r["status"] == "not_applicable", r
        assert r["message"] == "systemd is not running (/run/systemd/system is absent)"
        assert s.store.latest("systemd_units_failed", instance_id=s.instance_id).empty
    finally:
        s.close()
