"""KernelLogCollector against kmsg fixtures (real and hand-written), pstore, and the real /dev/kmsg.

Expected numbers were counted by hand in the fixture files (sequence numbers listed below),
with grep as a cross-check, not taken from the code's output.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from collectors.kernel_log import KernelLogCollector, ReportAssembler, parse_record
from collectors.kernel_patterns import SIGNAL_KINDS
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch, Signal

FIX = Path(__file__).resolve().parent.parent / "fixtures"
KMSG = FIX / "kmsg"
REAL = KMSG / "linux-6.18-real-faults.kmsg"
HAND = KMSG / "handwritten-faults.kmsg"
RATELIMITED = KMSG / "linux-6.18-ext4-ratelimited.kmsg"
BTIME = 1795600000  # tests/fixtures/kmsg/proc/stat

# First lines of reports in the real capture, by kind (their sequence numbers).
HUNG = [341, 878, 923, 968]
IO = [770, 771, 773, 775, 777, 778, 779, 780, 781, 782, 783, 785, 786, 787, 788, 789, 791, 792, 793,
      1014, 1017, 1018, 1019, 1021, 1022, 1023, 1026, 1027]
FS = [774, 776, 784, 790, 794, 1015, 1016, 1020, 1024]
RO = [795, 1025]
OOM = [874, 1106]


def roots(kmsg: Path, tmp: Path, proc: Path = KMSG / "proc", pstore: Path | None = None) -> Roots:
    return Roots(proc=proc, kmsg=kmsg, pstore=pstore if pstore is not None else tmp / "no-pstore")


def by_key(batch: Batch) -> dict[tuple[str, ...], Signal]:
    """Signals keyed by kind and their identifying label (one signal per key, asserted)."""
    out: dict[tuple[str, ...], Signal] = {}
    for s in batch.signals:
        ident = s.labels.get("task", "") + s.labels.get("pid", "") + s.labels.get("device", "") + s.labels.get("interface", "")
        key = (s.kind, ident)
        assert key not in out, f"two signals for {key}"
        out[key] = s
    return out


def counts(batch: Batch, metric: str = "kernel_signals") -> dict[str, float]:
    rows = batch.samples if metric == "kernel_signals" else batch.totals
    got = {s.labels["kind"]: s.value for s in rows if s.metric == metric}
    assert set(got) == set(SIGNAL_KINDS)  # every kind, zeros included
    return got


def records(path: Path) -> list[tuple[int, int, int, str]]:
    return [r for line in path.read_text().splitlines() if not line.startswith(" ") and (r := parse_record(line))]


def test_real_capture_every_fault_found_and_folded(tmp_path: Path) -> None:
    c = KernelLogCollector(roots(REAL, tmp_path), CollectorSettings())
    b = c.collect(1000.0)
    sig = by_key(b)
    assert set(sig) == {
        ("hung_task", "dd15605"), ("hung_task", "dd15963"), ("io_error", "loop0"), ("fs_error", "loop0"),
        ("readonly_remount", "loop0"), ("oom_kill", "15776"), ("oom_kill", "16021"),
    }
    h = sig[("hung_task", "dd15605")]
    assert (h.count, h.labels["seq"], h.labels["seconds"], h.labels["priority"]) == (1, "341", "5", "3")
    assert h.ts == pytest.approx(BTIME + 4159.339359)
    assert h.message == "INFO: task dd:15605 blocked for more than 5 seconds."
    assert h.lines[0] == "      Not tainted 6.18.44-fc-v782 #1" and "Call Trace:" in h.lines
    assert len(h.lines) == 30  # the trace is longer: capped
    h2 = sig[("hung_task", "dd15963")]  # blocked for 5, 10, 15 s: one fault
    assert (h2.count, h2.labels["seq"], h2.ts) == (3, "878", pytest.approx(BTIME + 4250.475225))

    io = sig[("io_error", "loop0")]
    assert (io.count, io.labels["seq"], io.labels["sector"]) == (len(IO), "770", "24000")
    assert io.message.startswith("I/O error, dev loop0, sector 24000 op 0x0:(READ)")
    fs = sig[("fs_error", "loop0")]
    assert (fs.count, fs.labels["seq"], fs.labels["fstype"]) == (len(FS), "774", "EXT4")
    ro = sig[("readonly_remount", "loop0")]
    assert (ro.count, ro.labels["seq"], ro.message) == (2, "795", "EXT4-fs (loop0): Remounting filesystem read-only")

    oom = sig[("oom_kill", "15776")]
    assert oom.count == 1 and oom.labels["process"] == "python3" and oom.labels["seq"] == "874"
    assert oom.message.startswith("Memory cgroup out of memory: Killed process 15776 (python3) total-vm:61680kB")
    # The header names who asked for memory; the summary line the cgroup; both are its evidence.
    assert (oom.labels["trigger"], oom.labels["constraint"], oom.labels["memcg"]) == ("python3", "CONSTRAINT_MEMCG", "/fault-oom")
    assert oom.lines[0].startswith("python3 invoked oom-killer:")
    assert oom.lines[-1].startswith("oom-kill:constraint=CONSTRAINT_MEMCG")
    assert oom.ts == pytest.approx(BTIME + 4192.912818)

    n = counts(b)
    assert n == {**dict.fromkeys(SIGNAL_KINDS, 0.0), "hung_task": 4, "io_error": len(IO), "fs_error": len(FS),
                 "readonly_remount": 2, "oom_kill": 2}
    assert counts(b, "kernel_signals_total") == n

    b2 = c.collect(1010.0)  # nothing new: zeros, totals kept
    assert b2.signals == [] and set(counts(b2).values()) == {0.0}
    assert counts(b2, "kernel_signals_total") == n


def test_only_first_lines_are_findings() -> None:
    """Call traces, register dumps, the OOM memory report and its task table are never findings."""
    a = ReportAssembler()
    found = {}
    for rec in records(REAL):
        rep = a.feed(rec)
        if rep is not None:
            found.setdefault(rep.kind, []).append(rep.seq)
    assert found == {"hung_task": HUNG, "io_error": IO, "fs_error": FS, "readonly_remount": RO, "oom_kill": OOM}


def test_rate_limit_notices_are_counted_and_belong_to_no_report(tmp_path: Path) -> None:
    """The kernel's "N callbacks suppressed" lines say how many lines it dropped itself."""
    b = KernelLogCollector(roots(RATELIMITED, tmp_path), CollectorSettings()).collect(1000.0)
    [total] = [s.value for s in b.totals if s.metric == "kernel_log_suppressed_total"]
    assert total == 89 + 89 + 752 + 3
    fs = by_key(b)[("fs_error", "loop0")]
    assert fs.message.startswith("EXT4-fs (loop0): failed to convert unwritten extents")
    # I/O and filesystem errors are one-line reports: the warnings between them are not their evidence.
    assert {s.kind for s in b.signals} == {"io_error", "fs_error"} and all(s.lines == () for s in b.signals)
    assert not [s for s in b.signals if s.kind == "readonly_remount"]  # the kernel never logged it


def test_handwritten_kinds(tmp_path: Path) -> None:
    b = KernelLogCollector(roots(HAND, tmp_path), CollectorSettings()).collect(1000.0)
    sig = {(s.kind, s.labels.get("interface", "")): s for s in b.signals}
    assert len(sig) == len(b.signals)
    soft = sig[("soft_lockup", "")]
    assert (soft.count, soft.labels["cpu"], soft.labels["pid"], soft.labels["process"], soft.labels["seconds"]) == (2, "1", "2290", "bash", "26")
    assert soft.message == "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [bash:2290]"
    rcu = sig[("rcu_stall", "")]
    assert (rcu.count, rcu.labels["flavor"], rcu.labels["seq"]) == (1, "rcu_preempt", "2053")
    assert any("kthread starved for 21002 jiffies" in line for line in rcu.lines)  # part of the stall report
    hard = sig[("hard_lockup", "")]
    assert (hard.count, hard.labels["cpu"], hard.labels["priority"]) == (1, "1", "0")
    oops = sig[("oops", "")]
    assert (oops.count, oops.message) == (1, "BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert "Oops: Oops: 0002 [#1] SMP NOPTI" in oops.lines
    ct = sig[("conntrack_full", "")]
    assert (ct.count, ct.labels["seq"]) == (3, "2120")
    assert sig[("link_down", "eth0")].message == "e1000e 0000:00:19.0 eth0: NIC Link is Down"
    assert sig[("link_down", "eth1")].labels["seq"] == "2125"
    panic = sig[("panic", "")]  # the "---[ end Kernel panic" trailer is not a second one
    assert (panic.count, panic.labels["reason"], panic.ts) == (1, "sysrq triggered crash", pytest.approx(BTIME + 5336.748686))
    assert not any("SUBSYSTEM=" in line for s in b.signals for line in s.lines)
    assert counts(b) == {**dict.fromkeys(SIGNAL_KINDS, 0.0), "soft_lockup": 2, "rcu_stall": 1, "hard_lockup": 1,
                         "oops": 1, "conntrack_full": 3, "link_down": 2, "panic": 1}


GPU_XID = KMSG / "handwritten-gpu-xid.kmsg"


def test_gpu_xid_lines(tmp_path: Path) -> None:
    b = KernelLogCollector(roots(GPU_XID, tmp_path), CollectorSettings()).collect(1000.0)
    sig = {(s.labels["pci"], s.labels["xid"]): s for s in b.signals}
    assert len(sig) == len(b.signals) == 5
    # two lines of one application fault (Xid 13, same GPU, same cycle) are one finding
    app = sig[("0000:3b:00", "13")]
    assert (app.kind, app.count, app.labels["pid"], app.labels["process"], app.labels["seq"]) == ("gpu_xid", 2, "4711", "python3", "3002")
    assert app.ts == pytest.approx(BTIME + 7120.000010)
    assert app.lines == ()  # one-line kind: the segfault line after it is not its evidence
    dbe = sig[("0000:86:00", "48")]
    assert dbe.kind == "gpu_xid_critical" and "pid" not in dbe.labels and "process" not in dbe.labels
    assert dbe.labels["detail"].startswith("An uncorrectable double bit error (DBE)")
    assert sig[("0000:86:00", "63")].kind == "gpu_xid_critical"
    bus = sig[("0000:3b:00", "79")]
    assert (bus.kind, bus.count, bus.labels["detail"]) == ("gpu_xid_critical", 1, "GPU has fallen off the bus.")
    assert bus.message == "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
    assert sig[("0000:01:00", "31")].kind == "gpu_xid"  # the older form, without PCI: and pid
    assert counts(b) == {**dict.fromkeys(SIGNAL_KINDS, 0.0), "gpu_xid": 3, "gpu_xid_critical": 3}


def test_gpu_xid_events_fold_and_take_their_level(tmp_path: Path) -> None:
    from diag.db import Database
    from diag.events import EventLog

    log = EventLog(Database(tmp_path / "diag.db"))
    b = KernelLogCollector(roots(GPU_XID, tmp_path), CollectorSettings()).collect(1000.0)
    log.record_batch("i-1", b)
    events = log.list(types=["GPU.XidError"])
    assert sorted((e["details"]["labels"]["xid"], e["level"], e["details"]["count"]) for e in events) == [
        ("13", "WARN", 2), ("31", "WARN", 1), ("48", "CRITICAL", 1), ("63", "CRITICAL", 1), ("79", "CRITICAL", 1)]


def _split(path: Path, before_seq: int) -> tuple[str, str]:
    """The file's text before the record `before_seq`, and from it on."""
    text = path.read_text()
    at = text.index(f",{before_seq},")
    at = text.rindex("\n", 0, at) + 1
    return text[:at], text[at:]


def test_restart_repeats_nothing_and_skips_nothing(tmp_path: Path) -> None:
    kmsg, state = tmp_path / "kmsg", tmp_path / "state"
    head, tail = _split(REAL, 875)  # up to the first OOM kill, then the second boot of loop0
    kmsg.write_text(head + tail[:40])  # and a record still being written
    first = KernelLogCollector(roots(kmsg, tmp_path), CollectorSettings(state_dir=state))
    b1 = first.collect(1000.0)
    assert sorted(s.labels["seq"] for s in b1.signals) == ["341", "770", "774", "795", "874"]
    assert json.loads((state / "kmsg.json").read_text())["seq"] == 874
    first.close()

    kmsg.write_text(head + tail)  # the service was down while more was logged
    second = KernelLogCollector(roots(kmsg, tmp_path), CollectorSettings(state_dir=state))
    sig = by_key(second.collect(1010.0))
    assert set(sig) == {("hung_task", "dd15963"), ("io_error", "loop0"), ("fs_error", "loop0"),
                        ("readonly_remount", "loop0"), ("oom_kill", "16021")}
    assert sig[("hung_task", "dd15963")].count == 3
    assert sig[("io_error", "loop0")].count == len([s for s in IO if s > 875])
    assert sig[("fs_error", "loop0")].count == len([s for s in FS if s > 875])
    assert sig[("readonly_remount", "loop0")].labels["seq"] == "1025"
    assert json.loads((state / "kmsg.json").read_text())["seq"] == 1107


def test_folding_is_per_cycle(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    head, tail = _split(REAL, 923)  # dd:15963 reported once before the cut, twice after
    kmsg.write_text(head)
    c = KernelLogCollector(roots(kmsg, tmp_path), CollectorSettings())
    assert by_key(c.collect(1000.0))[("hung_task", "dd15963")].count == 1
    with open(kmsg, "a") as f:
        f.write(tail)
    again = by_key(c.collect(1010.0))[("hung_task", "dd15963")]
    assert (again.count, again.labels["seq"], again.labels["seconds"]) == (2, "923", "10")


def test_another_boot_rereads_the_buffer(tmp_path: Path) -> None:
    state = tmp_path / "state"
    KernelLogCollector(roots(REAL, tmp_path), CollectorSettings(state_dir=state)).collect(1000.0)
    assert KernelLogCollector(roots(REAL, tmp_path), CollectorSettings(state_dir=state)).collect(1010.0).signals == []
    proc = tmp_path / "proc"
    shutil.copytree(KMSG / "proc", proc)
    (proc / "sys/kernel/random/boot_id").write_text(str(uuid.uuid4()) + "\n")
    b = KernelLogCollector(roots(REAL, tmp_path, proc=proc), CollectorSettings(state_dir=state)).collect(1020.0)
    assert len(b.signals) == 7 and counts(b)["io_error"] == len(IO)


def _pstore(tmp: Path, mtime: float) -> Path:
    d = tmp / "pstore"
    d.mkdir(exist_ok=True)
    shutil.copy(FIX / "pstore" / "dmesg-ramoops-0", d / "dmesg-ramoops-0")
    os.utime(d / "dmesg-ramoops-0", (mtime, mtime))
    # Neither a console log nor a dump without a panic is a crash.
    (d / "console-ramoops-0").write_text("Kernel panic - not syncing: in the console log, not a dmesg dump\n")
    (d / "dmesg-ramoops-1").write_text("Emergency#1 Part1\n<6>[  900.000000] reboot: Restarting system\n")
    return d


def test_pstore_panic_reported_once_across_restarts(tmp_path: Path) -> None:
    pstore, state = _pstore(tmp_path, 1795500000.0), tmp_path / "state"
    c = KernelLogCollector(roots(tmp_path / "empty", tmp_path, pstore=pstore), CollectorSettings(state_dir=state))
    (tmp_path / "empty").write_text("")
    b = c.collect(1000.0)
    assert len(b.signals) == 1
    s = b.signals[0]
    assert (s.kind, s.labels, s.count, s.ts) == ("panic", {"source": "pstore", "file": "dmesg-ramoops-0"}, 1, 1795500000.0)
    assert s.message == "Kernel panic - not syncing: sysrq triggered crash"
    assert s.lines[0].startswith("CPU: 1 UID: 0 PID: 2291 Comm: bash")
    assert counts(b)["panic"] == 1
    assert c.collect(1010.0).signals == []

    restarted = KernelLogCollector(roots(tmp_path / "empty", tmp_path, pstore=pstore), CollectorSettings(state_dir=state))
    assert restarted.collect(1020.0).signals == []
    # A new crash saved under the same name is a new one.
    os.utime(pstore / "dmesg-ramoops-0", (1795700000.0, 1795700000.0))
    again = KernelLogCollector(roots(tmp_path / "empty", tmp_path, pstore=pstore), CollectorSettings(state_dir=state))
    assert [x.ts for x in again.collect(1030.0).signals] == [1795700000.0]


def test_missing_kmsg_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        KernelLogCollector(roots(tmp_path / "absent", tmp_path), CollectorSettings()).collect(1000.0)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/kmsg"),
                                reason="writing /dev/kmsg needs root and the device")


@pytest.mark.root
@needs_root
def test_real_kmsg_finds_a_written_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    real = Roots(pstore=tmp_path / "no-pstore")
    c = KernelLogCollector(real, CollectorSettings(state_dir=state, kmsg_user_records=True))
    default = KernelLogCollector(real, CollectorSettings(state_dir=tmp_path / "default"))
    c.collect(time.time())  # the whole buffer, whatever it holds
    default.collect(time.time())
    marker = "dt" + uuid.uuid4().hex[:12]  # unique: it cannot match an old line
    with open("/dev/kmsg", "w") as f:
        f.write(f"<4>diag-test {marker}: NIC Link is Down\n")
    # By default a line written from user space is no kernel finding (its facility says so).
    assert not [s for s in default.collect(time.time()).signals if s.labels.get("interface") == marker]
    default.close()
    b = c.collect(time.time())
    mine = [s for s in b.signals if s.labels.get("interface") == marker]
    assert len(mine) == 1 and mine[0].kind == "link_down" and mine[0].count == 1
    assert mine[0].message == f"diag-test {marker}: NIC Link is Down"
    assert abs(mine[0].ts - time.time()) < 5  # monotonic µs + btime is wall time
    assert counts(b)["link_down"] >= 1
    saved = json.loads((state / "kmsg.json").read_text())
    assert saved["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert saved["seq"] >= int(mine[0].labels["seq"])
    c.close()
    # A restart of the service on the same boot does not report it again.
    restarted = KernelLogCollector(real, CollectorSettings(state_dir=state, kmsg_user_records=True))
    assert not [s for s in restarted.collect(time.time()).signals if s.labels.get("interface") == marker]
    restarted.close()


def test_every_record_is_handed_on_as_a_kernel_line_once_and_a_flood_keeps_the_newest(tmp_path):
    from collectors.kernel_log import MAX_BACKLOG, MAX_LINES_PER_CYCLE

    kmsg = tmp_path / "k.kmsg"
    kmsg.write_text("6,10,1500000,-;eth0: link up\n"
                    "3,11,2250000,-;EXT4-fs error (device sda1): bad block\n"
                    " SUBSYSTEM=block\n"  # a dictionary line: part of record 11, no line of its own
                    "12,12,3000000,-;a line user space wrote\n")
    c = KernelLogCollector(roots(kmsg, tmp_path), CollectorSettings(state_dir=tmp_path / "state"))
    b = c.collect(1000.0)
    got = [(ln.seq, ln.level, ln.ts, ln.message) for ln in b.kernel_lines]
    # level is the severity (prio & 7; 12 = user facility, warning); ts the boot time plus the record's µs
    assert got == [(10, 6, BTIME + 1.5, "eth0: link up"),
                   (11, 3, BTIME + 2.25, "EXT4-fs error (device sda1): bad block"),
                   (12, 4, BTIME + 3.0, "a line user space wrote")]
    assert c.collect(1001.0).kernel_lines == []  # nothing read twice

    def append(first: int, n: int) -> None:
        with kmsg.open("a") as f:
            f.writelines(f"6,{seq},{seq * 1000},-;line {seq}\n" for seq in range(first, first + n))

    # More than a cycle's worth (a first read of a full ring buffer): the rest come next cycle.
    append(13, MAX_LINES_PER_CYCLE + 5)
    first = c.collect(1002.0).kernel_lines
    assert [ln.seq for ln in first] == list(range(13, 13 + MAX_LINES_PER_CYCLE))
    assert [ln.seq for ln in c.collect(1003.0).kernel_lines] == list(range(13 + MAX_LINES_PER_CYCLE,
                                                                           18 + MAX_LINES_PER_CYCLE))
    # A flood beyond the backlog: the oldest of it go, the newest MAX_BACKLOG come in order.
    start = 18 + MAX_LINES_PER_CYCLE
    append(start, MAX_BACKLOG + 250)
    seen = []
    for i in range(MAX_BACKLOG // MAX_LINES_PER_CYCLE + 1):
        seen += [ln.seq for ln in c.collect(1004.0 + i).kernel_lines]
    assert seen == list(range(start + 250, start + MAX_BACKLOG + 250))
