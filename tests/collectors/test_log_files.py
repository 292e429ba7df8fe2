"""Operators' own log rules (config `log_patterns`): files, the kernel log and the journal,
the config that refuses a bad regex, and events through a real Service."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from pathlib import Path

import pytest

from collectors import log_files
from collectors.kernel_log import KernelLogCollector
from collectors.kernel_patterns import UserRule
from collectors.log_files import LogFilesCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.config import ConfigError, load
from tests.conftest import collected_service

FIX = Path(__file__).resolve().parent.parent / "fixtures"
REAL_KMSG = FIX / "kmsg" / "linux-6.18-real-faults.kmsg"


def rule(name: str, source: str, pattern: str, **kw) -> UserRule:
    clear = kw.pop("clear", None)
    return UserRule(name, source, re.compile(pattern), clear=re.compile(clear) if clear else None, **kw)


def collector(tmp_path: Path, *rules: UserRule, state: bool = True, boot: str = "boot-1") -> LogFilesCollector:
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot + "\n")
    settings = CollectorSettings(state_dir=tmp_path / "state" if state else None, log_rules=rules)
    return LogFilesCollector(Roots(proc=proc), settings)


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def custom(batch) -> list:
    return [s for s in batch.signals if s.kind == "custom"]


# -- through a real Service ------------------------------------------------------------------

def test_a_line_appended_to_a_log_file_becomes_an_event_of_the_service(tmp_path):
    logf = tmp_path / "app.log"
    logf.write_text("app crashed: history\n")  # written before the service: not news
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    s = collected_service(tmp_path / "data", paths={"kmsg": str(kmsg)}, log_patterns={
        "AppCrash": {"source": str(logf), "pattern": r"app crashed: (?P<reason>\w+)", "level": "CRITICAL"}})
    try:
        assert s.events.list(types=["Custom.AppCrash"]) == []
        append(logf, "app started", "app crashed: segfault")
        s.collect()
        events = s.events.list(types=["Custom.AppCrash"])
        assert len(events) == 1
        e = events[0]
        assert (e["level"], e["status"]) == ("CRITICAL", "Executed")
        assert e["details"]["message"] == "app crashed: segfault"
        assert e["details"]["labels"]["reason"] == "segfault"
        assert e["details"]["labels"]["source"] == str(logf)
        # Nothing new in the file: no new event, no new count.
        s.collect()
        assert s.events.list(types=["Custom.AppCrash"])[0]["details"]["count"] == 1
    finally:
        s.close()


def test_a_kernel_log_rule_on_a_fixture_kmsg_line_becomes_an_event_beside_the_catalogue(tmp_path):
    # Two "mounted filesystem" lines in the real capture (seq 340 and 877, 170 s apart):
    # one event with a count of 2. The catalogue's own findings are unchanged.
    s = collected_service(tmp_path / "data", paths={"kmsg": str(REAL_KMSG), "pstore": str(tmp_path / "none")},
                          log_patterns={"Ext4Mounted": {
                              "pattern": r"^EXT4-fs \((?P<device>\w+)\): mounted filesystem (?P<uuid>[0-9a-f-]+)",
                              "level": "INFO"}})
    try:
        events = s.events.list(types=["Custom.Ext4Mounted"])
        assert len(events) == 1
        e = events[0]
        assert e["level"] == "INFO" and e["details"]["count"] == 2
        assert e["details"]["labels"]["device"] == "loop0"
        assert e["details"]["labels"]["uuid"] == "e7904549-98b0-496f-b543-3e16807546e9"
        assert e["details"]["labels"]["seq"] == "340"
        assert len(e["details"]["lines"]) == 2 and "75496452" in e["details"]["lines"][1]
        assert len(s.events.list(types=["Kernel.HungTask"])) >= 1
    finally:
        s.close()


def test_a_kernel_rule_never_takes_a_line_the_catalogue_knows(tmp_path):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("3,10,5000000,-;INFO: task dd:123 blocked for more than 120 seconds.\n"
                    "6,11,6000000,-;nfs: server fs1 not responding, still trying\n")
    settings = CollectorSettings(log_rules=(rule("Blocked", "kernel", r"blocked|not responding"),))
    c = KernelLogCollector(Roots(kmsg=kmsg, pstore=tmp_path / "none"), settings)
    b = c.collect(time.time())
    assert [s.kind for s in b.signals if s.kind != "custom"] == ["hung_task"]
    [sig] = custom(b)
    assert sig.message == "nfs: server fs1 not responding, still trying"
    assert sig.labels["type"] == "Custom.Blocked" and sig.labels["seq"] == "11"


# -- config ----------------------------------------------------------------------------------

BAD = r"nfs: server (?P<server>\S+ not responding"


def test_a_bad_regex_in_yaml_is_refused_with_file_line_and_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"port: 8081\nlog_patterns:\n  NfsTimeout:\n    source: /var/log/syslog\n    pattern: '{BAD}'\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 5, "log_patterns.NfsTimeout.pattern")
    assert "regex does not compile: missing ), unterminated subpattern at position 12" in str(e.value)


def test_a_bad_regex_in_toml_is_refused_with_file_line_and_field(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("port = 8081\n\n[log_patterns.Ok]\npattern = 'fine'\n\n"
                 f"[log_patterns.NfsTimeout]\nlevel = \"WARN\"\nclear = '('\ntype = \"permanent\"\npattern = 'x'\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 8, "log_patterns.NfsTimeout.clear")
    assert str(e.value).startswith(f"{f}:8: log_patterns.NfsTimeout.clear: regex does not compile")


@pytest.mark.parametrize("body, field, message", [
    ("  Bad:\n    pattern: x\n    source: var/log/syslog\n", "log_patterns.Bad.source", "absolute path"),
    ("  Bad:\n    pattern: x\n    level: ERROR\n", "log_patterns.Bad.level", "CRITICAL"),
    ("  Bad:\n    pattern: x\n    clear: y\n", "log_patterns.Bad.clear", "only a permanent rule"),
    ("  Bad:\n    pattern: '(?P<type>x)'\n", "log_patterns.Bad.pattern", "label the service sets"),
    ("  bad-name:\n    pattern: x\n", "log_patterns.bad-name", "String should match pattern"),
])
def test_other_bad_rules_are_refused_with_their_field(tmp_path, body, field, message):
    f = tmp_path / "c.yaml"
    f.write_text("log_patterns:\n" + body)
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert e.value.field == field and message in e.value.message
    assert e.value.line is not None and e.value.line >= 2


def test_rules_reach_the_collectors_as_compiled_data(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[log_patterns.Oops]\nsource = "journal"\npattern = "oops (?P<n>\\\\d+)"\ntype = "permanent"\n'
                 'clear = "fixed"\nlevel = "CRITICAL"\n')
    [r] = load(f, env={}).collector_settings().log_rules
    assert (r.name, r.source, r.level, r.permanent, r.event) == ("Oops", "journal", "CRITICAL", True, "Custom.Oops")
    assert r.regex.search("oops 42").group("n") == "42" and r.clear is not None and r.clear.search("fixed")


# -- files -----------------------------------------------------------------------------------

def test_rotation_by_rename_and_a_new_file_is_followed(tmp_path):
    logf = tmp_path / "syslog"
    logf.write_text("")
    c = collector(tmp_path, rule("Boom", str(logf), r"boom (?P<n>\d+)"))
    c.collect(1.0)
    append(logf, "boom 1")
    with open(logf, "a") as f:
        f.write("boom 2")  # no newline yet: logrotate moves the file mid-line
    logf.rename(tmp_path / "syslog.1")
    append(logf, "boom 3")  # the new file, before the old one was read to its end
    got = custom(c.collect(2.0))
    assert len(got) == 1 and got[0].count == 3
    assert list(got[0].lines) == ["boom 1", "boom 2", "boom 3"]
    append(tmp_path / "syslog.1", "boom 4")  # the old file is no longer followed
    append(logf, "boom 5")
    assert [s.lines for s in custom(c.collect(3.0))] == [("boom 5",)]


def test_truncation_is_followed(tmp_path):
    logf = tmp_path / "app.log"
    logf.write_text("x" * 500 + "\n")
    c = collector(tmp_path, rule("Boom", str(logf), r"boom"))
    c.collect(1.0)
    logf.write_text("boom after truncate\n")  # shorter than where the reader was
    assert [s.message for s in custom(c.collect(2.0))] == ["boom after truncate"]
    assert custom(c.collect(3.0)) == []


def test_a_missing_file_is_reported_once_and_costs_nothing_else(tmp_path, caplog):
    there, missing = tmp_path / "there.log", tmp_path / "missing.log"
    there.write_text("")
    c = collector(tmp_path, rule("Gone", str(missing), r"boom"), rule("Here", str(there), r"boom"))
    with caplog.at_level(logging.WARNING, logger="collectors.log_files"):
        c.collect(0.5)  # the start: both files tailed from their end
        for i in range(5):
            append(there, f"boom {i}")
            b = c.collect(float(i + 1))
            assert [s.labels["rule"] for s in custom(b)] == ["Here"]
            assert b.errors == []
    warnings = [r.getMessage() for r in caplog.records if str(missing) in r.getMessage()]
    assert len(warnings) == 1 and "not readable" in warnings[0]
    # Created after the service started: every line of it is new.
    missing.write_text("boom early\n")
    assert [s.message for s in custom(c.collect(9.0)) if s.labels["rule"] == "Gone"] == ["boom early"]


def test_a_file_is_tailed_from_its_end_at_start_and_resumed_after_a_restart(tmp_path):
    logf = tmp_path / "app.log"
    logf.write_text("boom old\n")
    c = collector(tmp_path, rule("Boom", str(logf), r"boom (?P<n>\w+)"))
    assert custom(c.collect(1.0)) == []
    append(logf, "boom one")
    assert [s.labels["n"] for s in custom(c.collect(2.0))] == ["one"]
    c.close()
    append(logf, "boom while-down")  # written while the service was stopped
    c2 = collector(tmp_path, rule("Boom", str(logf), r"boom (?P<n>\S+)"))
    assert [s.labels["n"] for s in custom(c2.collect(3.0))] == ["while-down"]
    saved = json.loads((tmp_path / "state" / "logfiles.json").read_text())
    assert saved["files"][str(logf)]["offset"] == logf.stat().st_size


def test_bytes_per_cycle_are_bounded_and_the_rest_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(log_files, "MAX_BYTES", 1000)
    logf = tmp_path / "app.log"
    logf.write_text("")
    c = collector(tmp_path, rule("Boom", str(logf), r"boom"))
    c.collect(1.0)
    append(logf, *[f"boom {i:04d}" for i in range(300)])  # 3000 bytes
    counts = [sum(s.count for s in custom(c.collect(float(t)))) for t in range(2, 7)]
    assert all(n <= 100 for n in counts) and sum(counts) == 300
    assert counts[-1] == 0


def test_a_fifo_is_refused_without_blocking(tmp_path, caplog):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    c = collector(tmp_path, rule("Boom", str(fifo), r"boom"))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="collectors.log_files"):
        c.collect(1.0)
        c.collect(2.0)
    assert time.monotonic() - t0 < 1
    assert sum("not a regular file" in r.getMessage() for r in caplog.records) == 1


# -- permanent conditions --------------------------------------------------------------------

def test_a_permanent_rule_holds_until_its_clear_line_and_survives_a_restart(tmp_path):
    logf = tmp_path / "app.log"
    logf.write_text("")
    r = rule("DbDown", str(logf), r"db down", level="CRITICAL", permanent=True, clear=r"db up")
    c = collector(tmp_path, r)
    c.collect(1.0)
    append(logf, "db down", "db down again")
    b = c.collect(2.0)
    [sig] = custom(b)
    assert (sig.labels["condition"], sig.labels["level"], sig.count) == ("set", "CRITICAL", 1)
    assert [(s.metric, s.labels, s.value) for s in b.samples] == [("log_condition", {"rule": "DbDown"}, 1.0)]
    c.close()
    c = collector(tmp_path, r)  # restarted within the boot: still held, no second "set"
    append(logf, "db down")
    b = c.collect(3.0)
    assert custom(b) == [] and b.samples[0].value == 1
    append(logf, "db up")
    b = c.collect(4.0)
    [sig] = custom(b)
    assert (sig.labels["condition"], sig.labels["level"]) == ("cleared", "INFO")
    assert b.samples[0].value == 0


def test_a_reboot_clears_a_permanent_condition(tmp_path):
    logf = tmp_path / "app.log"
    logf.write_text("")
    r = rule("DbDown", str(logf), r"db down", permanent=True)
    c = collector(tmp_path, r, boot="boot-1")
    c.collect(1.0)
    append(logf, "db down")
    assert custom(c.collect(2.0))[0].labels["condition"] == "set"
    c.close()
    b = collector(tmp_path, r, boot="boot-2").collect(3.0)
    [sig] = custom(b)
    assert sig.labels["condition"] == "cleared" and "reboot" in sig.message
    assert b.samples[0].value == 0


def test_a_permanent_kernel_rule_is_kept_in_the_kmsg_state(tmp_path):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,1000000,-;mydrv: firmware wedged\n")
    settings = CollectorSettings(state_dir=tmp_path / "state", log_rules=(
        rule("Wedged", "kernel", r"firmware wedged", permanent=True, clear=r"firmware reset"),))
    roots = Roots(kmsg=kmsg, pstore=tmp_path / "none")
    b = KernelLogCollector(roots, settings).collect(1.0)
    assert custom(b)[0].labels["condition"] == "set"
    assert list(json.loads((tmp_path / "state" / "kmsg.json").read_text())["held"]) == ["Wedged"]
    append(kmsg, "6,2,2000000,-;mydrv: firmware wedged", "6,3,3000000,-;mydrv: firmware reset")
    b = KernelLogCollector(roots, settings).collect(2.0)  # a restart in the same boot
    assert [s.labels["condition"] for s in custom(b)] == ["cleared"]
    assert [s.value for s in b.samples if s.metric == "log_condition"] == [0]


# -- the journal -----------------------------------------------------------------------------

FAKE_JOURNALCTL = """#!/bin/sh
echo "$@" >> "{calls}"
case "$*" in
  *--after-cursor*) printf '%s\\n' '{{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"1700000003000000","MESSAGE":"disk sdb offline","_SYSTEMD_UNIT":"smartd.service"}}' ;;
  *) printf '%s\\n' '{{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1700000001000000","MESSAGE":"disk sda offline","SYSLOG_IDENTIFIER":"smartd"}}' \
                   '{{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"1700000002000000","MESSAGE":[104,105]}}' ;;
esac
{sleep}
"""


def fake_journalctl(tmp_path: Path, monkeypatch, sleep: str = "") -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    exe = bindir / "journalctl"
    exe.write_text(FAKE_JOURNALCTL.format(calls=calls, sleep=sleep))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return calls


def test_journal_entries_match_and_the_cursor_carries_on(tmp_path, monkeypatch):
    calls = fake_journalctl(tmp_path, monkeypatch)
    c = collector(tmp_path, rule("DiskOffline", "journal", r"disk (?P<disk>\w+) offline"))
    [sig] = custom(c.collect(1.0))
    assert (sig.ts, sig.labels["disk"], sig.labels["identifier"]) == (1700000001.0, "sda", "smartd")
    [sig] = custom(c.collect(2.0))
    assert (sig.labels["disk"], sig.labels["unit"]) == ("sdb", "smartd.service")
    first, second = calls.read_text().splitlines()
    assert "--since @" in first and "--after-cursor c2" in second
    c.close()
    collector(tmp_path, rule("DiskOffline", "journal", r"disk")).collect(3.0)  # a restart keeps the cursor
    assert "--after-cursor c3" in calls.read_text().splitlines()[-1]


def test_a_stalled_journalctl_is_abandoned_at_its_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(log_files, "JOURNAL_DEADLINE", 0.5)
    fake_journalctl(tmp_path, monkeypatch, sleep="exec sleep 30")
    c = collector(tmp_path, rule("DiskOffline", "journal", r"disk (?P<disk>\w+) offline"))
    t0 = time.monotonic()
    got = custom(c.collect(1.0))
    assert time.monotonic() - t0 < 2
    assert [s.labels["disk"] for s in got] == ["sda"]  # what it printed before it stalled


def test_journal_rules_without_journalctl_are_skipped_and_logged_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(log_files.shutil, "which", lambda name: None)
    logf = tmp_path / "app.log"
    logf.write_text("")
    c = collector(tmp_path, rule("J", "journal", r"x"), rule("F", str(logf), r"boom"))
    with caplog.at_level(logging.WARNING, logger="collectors.log_files"):
        c.collect(0.5)
        for t in range(3):
            append(logf, "boom")
            assert [s.labels["rule"] for s in custom(c.collect(float(t + 1)))] == ["F"]
    assert sum("journalctl is not installed" in r.getMessage() for r in caplog.records) == 1
