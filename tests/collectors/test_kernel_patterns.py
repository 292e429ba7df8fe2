"""The kernel-log catalogue: its invariants, and the wording of other kernel versions."""

from __future__ import annotations

import pytest

from collectors.kernel_patterns import CRITICAL, KINDS, PATTERNS, SIGNAL_KINDS, WARN, classify, event_of

# The event types of spec/PRODUCT.md ("Events") that kernel-log signals raise.
SPEC_EVENTS = {"Kernel.HungTask", "Kernel.SoftLockup", "Kernel.HardLockup", "Kernel.Panic", "Kernel.OOMKill",
               "Kernel.RCUStall", "Disk.IOError", "Disk.ReadOnly", "Network.ConntrackFull", "Network.LinkDown"}
# Beyond PRODUCT.md's table: NVIDIA's Xid lines (issue 20).
GPU_EVENTS = {"GPU.XidError"}


def test_catalogue_is_consistent() -> None:
    assert set(SIGNAL_KINDS) == {"hung_task", "soft_lockup", "hard_lockup", "rcu_stall", "panic", "oops", "oom_kill",
                                 "io_error", "fs_error", "readonly_remount", "conntrack_full", "link_down",
                                 "gpu_xid_critical", "gpu_xid"}
    assert {k.event for k in KINDS.values()} == SPEC_EVENTS | GPU_EVENTS
    assert event_of("oops") == ("Kernel.Panic", CRITICAL) and event_of("link_down") == ("Network.LinkDown", WARN)
    for p in PATTERNS:
        assert p.role in {"finding", "follow", "header", "context"}
        assert (p.event, p.level, p.fold) == (KINDS[p.kind].event, KINDS[p.kind].level, KINDS[p.kind].fold)
        if p.role in {"finding", "follow"}:
            # Folding reads these labels from every finding of the kind.
            assert set(p.fold) <= set(p.labels), (p.kind, p.regex.pattern)
    for kind in SIGNAL_KINDS:
        assert any(p.kind == kind and p.role == "finding" for p in PATTERNS), kind


# Lines from other kernel versions and drivers (wording from their printk formats).
CASES = [
    ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 3", "hard_lockup", {"cpu": "3"}),
    ("watchdog: CPU3: Watchdog detected hard LOCKUP on cpu 3", "hard_lockup", {"cpu": "3"}),
    ("Kernel panic - not syncing: Hard LOCKUP", "panic", {"reason": "Hard LOCKUP"}),
    ("Kernel panic - not syncing: Watchdog detected hard LOCKUP on cpu 0", "panic", {}),
    ("INFO: task kworker/u8:2:123 blocked for more than 120 seconds.", "hung_task", {"task": "kworker/u8:2", "pid": "123", "seconds": "120"}),
    ("BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]", "soft_lockup", {"cpu": "0", "process": "swapper/0", "pid": "0"}),
    ("rcu: INFO: rcu_sched self-detected stall on CPU", "rcu_stall", {"flavor": "rcu_sched"}),
    ("INFO: rcu_sched detected stalls on CPUs/tasks:", "rcu_stall", {"flavor": "rcu_sched"}),
    ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 3-... } 21020 jiffies s: 1405 root: 0x8/.", "rcu_stall", {"flavor": "rcu_preempt"}),
    ("BUG: unable to handle page fault for address: ffffffffc0a5e000", "oops", {"address": "ffffffffc0a5e000"}),
    ("BUG: unable to handle kernel NULL pointer dereference at 0000000000000008", "oops", {"address": "0000000000000008"}),
    ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008", "oops", {}),
    ("kernel BUG at mm/slub.c:4127!", "oops", {"location": "mm/slub.c:4127"}),
    ("Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN NOPTI", "oops", {"code": "0000", "number": "1"}),
    ("general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP PTI", "oops", {}),
    ("Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP", "oops", {"code": "0000000096000005"}),
    ("Out of memory: Killed process 1234 (java) total-vm:8243948kB, anon-rss:6204480kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:12644kB oom_score_adj:0", "oom_kill", {"pid": "1234", "process": "java", "anon_rss_kb": "6204480"}),
    ("Killed process 1234 (java) total-vm:8243948kB, anon-rss:6204480kB, file-rss:0kB", "oom_kill", {"pid": "1234"}),
    ("blk_update_request: I/O error, dev sda, sector 2048 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0", "io_error", {"device": "sda", "error": "I/O"}),
    ("end_request: I/O error, dev sdb, sector 0", "io_error", {"device": "sdb", "sector": "0"}),
    ("critical medium error, dev nvme0n1, sector 123 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0", "io_error", {"device": "nvme0n1", "error": "critical medium"}),
    ("Buffer I/O error on dev dm-0, logical block 0, async page read", "io_error", {"device": "dm-0", "block": "0"}),
    ("XFS (dm-0): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x12c/0x150 (fs/xfs/xfs_trans.c:1097).  Shutting down filesystem.", "readonly_remount", {"device": "dm-0", "fstype": "XFS"}),
    ("XFS (sdb1): Metadata corruption detected at xfs_buf_ioend+0x51/0x100, xfs_inode block 0x4c0 xfs_inode_buf_verify", "fs_error", {"device": "sdb1"}),
    ('XFS (sda1): metadata I/O error in "xfs_trans_read_buf_map" at daddr 0x1d8d3d0 len 8 error 5', "fs_error", {"device": "sda1"}),
    ("BTRFS error (device sda1 state EA): bdev /dev/sda1 errs: wr 1, rd 0, flush 0, corrupt 0, gen 0", "fs_error", {"device": "sda1"}),
    ("BTRFS: error (device dm-1) in btrfs_commit_transaction:2418: errno=-5 IO failure (Error while writing out transaction)", "fs_error", {"device": "dm-1"}),
    ("BTRFS info (device sda1 state EA): forced readonly", "readonly_remount", {"device": "sda1", "fstype": "BTRFS"}),
    ("EXT4-fs (sda1): Remounting filesystem read-only", "readonly_remount", {"device": "sda1"}),
    ("Aborting journal on device dm-0-8.", "fs_error", {"device": "dm-0"}),
    ("JBD2: Error -5 detected when updating journal superblock for sdb1-8.", "fs_error", {"device": "sdb1"}),
    ("nf_conntrack: table full, dropping packet", "conntrack_full", {}),
    ("nf_conntrack: nf_conntrack: table full, dropping packet", "conntrack_full", {}),
    ("r8169 0000:02:00.0 enp2s0: Link is Down", "link_down", {"interface": "enp2s0"}),
    ("e1000: eth0 NIC Link is Down", "link_down", {"interface": "eth0"}),
    ("ixgbe 0000:03:00.0 eth2: NIC Link is Down", "link_down", {"interface": "eth2"}),
    ("igb 0000:01:00.0 eth1: igb: eth1 NIC Link is Down", "link_down", {"interface": "eth1"}),
    # NVIDIA kernel_rc.c: "NVRM: Xid (PCI:%04x:%02x:%02x): %d, pid=%s, name=%s, %s", MIG and older forms
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.", "gpu_xid_critical",
     {"pci": "0000:3b:00", "xid": "79", "pid": None, "process": None, "detail": "GPU has fallen off the bus."}),
    ("NVRM: Xid (PCI:0000:cb:00): 109, pid=1797828, name=pt_main_thread, Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005",
     "gpu_xid", {"pci": "0000:cb:00", "xid": "109", "pid": "1797828", "process": "pt_main_thread",
                 "detail": "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005"}),
    ("NVRM: Xid (PCI:0000:3b:00 GPU-I:01 GPU-CI:00): 48, pid=412, name=python3, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 1, subpartition 0.",
     "gpu_xid_critical", {"pci": "0000:3b:00", "xid": "48", "pid": "412"}),
    ("NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, reset gpu to activate.",
     "gpu_xid_critical", {"xid": "63", "pid": "1896", "detail": "Row Remapper: New row marked for remapping, reset gpu to activate."}),
    ("NVRM: Xid (0000:01:00): 13, 0005 00000000 0000502d 00000104 00000000 00000100", "gpu_xid",
     {"pci": "0000:01:00", "xid": "13"}),
    # 4 and 154 are not 46 and 15: the number ends at its comma
    ("NVRM: Xid (PCI:0000:01:00): 4, Channel 1", "gpu_xid", {"xid": "4"}),
    ("NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)",
     "gpu_xid_critical", {"xid": "154"}),
]


@pytest.mark.parametrize(("line", "kind", "labels"), CASES)
def test_wording_of_other_kernels(line: str, kind: str, labels: dict[str, str]) -> None:
    hit = classify(line)
    assert hit is not None, line
    assert hit[0].kind == kind
    assert {k: hit[1].get(k) for k in labels} == labels


@pytest.mark.parametrize("line", [
    "---[ end Kernel panic - not syncing: Fatal exception ]---",
    " panic+0x6b/0x6b",
    " ? out_of_memory+0x214/0x500",
    " oom_kill_process.cold+0x8/0x8a",
    "Out of memory: Kill process 1234 (java) score 999 or sacrifice child",  # 4.x: the Killed line follows
    "oom_reaper: reaped process 15776 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "EXT4-fs warning (device loop0): ext4_end_bio:368: I/O error 10 writing to inode 13 starting block 9217)",
    "EXT4-fs (loop0): mounted filesystem e7904549-98b0-496f-b543-3e16807546e9 r/w with ordered data mode. Quota mode: none.",
    "Future hung task reports are suppressed, see sysctl kernel.hung_task_warnings",
    "net_ratelimit: 3939 callbacks suppressed",
    "[  15776]     0 15776    15420    13861    12192     1669         0   163840        0             0 python3",
    # the driver's lines around an Xid 79 are part of it, never a second finding
    "NVRM: GPU at PCI:0000:3b:00: GPU-5b1c0e42-8d07-4b1a-9c3e-2f6d7a9e1b04",
    "NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.",
    "NVRM: A GPU crash dump has been created. If possible, please run",
])
def test_not_a_finding(line: str) -> None:
    hit = classify(line)
    assert hit is None or hit[0].role in {"header", "context"}, (line, hit)
