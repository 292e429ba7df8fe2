"""Storage checks on constructed series: pass, each status they can reach, missing data."""

from __future__ import annotations

import numpy as np

from checks.base import RECENT
from checks.windows import fmt_time
from tests.checks.context import TableContext, evaluate, kernel_log_read

NOW = 1_800_000_000.0


def ctx_with_disk(inflight: np.ndarray, done: np.ndarray, dev: str = "sda") -> TableContext:
    ctx = TableContext(NOW)
    ts = ctx.times(len(inflight) * 10)
    ctx.add("disk_inflight", ts, inflight, device=dev)
    ctx.add("disk_read_iops", ts, done, device=dev)
    ctx.add("disk_write_iops", ts, 0.0, device=dev)
    return ctx


# -- io_hang ------------------------------------------------------------------------------------

def test_io_hang_ok_when_io_completes():
    r = evaluate("storage.io_hang", ctx_with_disk(np.full(360, 4.0), np.full(360, 100.0)))
    assert r.status == "ok"
    assert r.evidence["hangs"] == []


def test_io_hang_critical_when_the_hang_reaches_the_latest_point():
    inflight, done = np.full(360, 2.0), np.full(360, 50.0)
    done[-4:] = 0  # 4 points x 10 s = 40 s without a completion, through the newest point
    r = evaluate("storage.io_hang", ctx_with_disk(inflight, done))
    assert r.status == "critical"
    [h] = r.evidence["hangs"]
    assert h["device"] == "sda" and h["seconds"] == 40 and h["ongoing"] is True
    assert "sda" in r.recommendation and "/sys/block/sda/inflight" in r.recommendation


def test_io_hang_warning_when_only_earlier():
    inflight, done = np.full(360, 2.0), np.full(360, 50.0)
    done[100:106] = 0
    r = evaluate("storage.io_hang", ctx_with_disk(inflight, done))
    assert r.status == "warning"
    assert r.evidence["hangs"][0]["seconds"] == 60 and r.evidence["hangs"][0]["ongoing"] is False


def test_io_hang_needs_30_seconds_and_something_in_flight():
    inflight, done = np.full(360, 2.0), np.full(360, 50.0)
    done[-2:] = 0  # 20 s only
    assert evaluate("storage.io_hang", ctx_with_disk(inflight, done)).status == "ok"
    inflight, done = np.zeros(360), np.zeros(360)  # idle disk: nothing in flight, nothing completed
    assert evaluate("storage.io_hang", ctx_with_disk(inflight, done)).status == "ok"


def test_io_hang_unknown_without_inflight():
    ctx = TableContext(NOW)
    ctx.add("disk_read_iops", ctx.times(600), 1.0, device="sda")
    r = evaluate("storage.io_hang", ctx)
    assert r.status == "unknown" and "disk_inflight" in r.message


def test_io_hang_threshold_is_read_from_the_check():
    from dataclasses import replace

    from checks.catalogue import get

    inflight, done = np.full(360, 2.0), np.full(360, 50.0)
    done[-4:] = 0
    check = replace(get("storage.io_hang"), thresholds={"seconds": 60})
    assert check.evaluate(ctx_with_disk(inflight, done), check).status == "ok"


def stuck_ctx(ctx: TableContext, values: np.ndarray, mp: str = "/mnt/sshfs") -> TableContext:
    ctx.add("fs_stuck", ctx.times(len(values) * 10), values, mountpoint=mp, device="me@host:/srv", fstype="fuse.sshfs")
    return ctx


def test_io_hang_a_mount_that_stopped_answering_is_critical_with_where_what_and_since():
    stuck = np.zeros(360)
    stuck[-5:] = [1, 11, 21, 31, 41]  # the collector's seconds unanswered, one point every 10 s
    r = evaluate("storage.io_hang", stuck_ctx(ctx_with_disk(np.zeros(360), np.full(360, 5.0)), stuck))
    assert r.status == "critical"
    [m] = r.evidence["stuck_mounts"]
    assert m["mountpoint"] == "/mnt/sshfs" and m["fstype"] == "fuse.sshfs" and m["device"] == "me@host:/srv"
    assert m["since"] == NOW - 41 and m["ongoing"] is True and m["seconds"] == 41
    assert "/mnt/sshfs (fuse.sshfs) has not answered statvfs since" in r.message
    assert "kill -CONT" in r.recommendation and "umount -l /mnt/sshfs" in r.recommendation
    assert r.evidence["hangs"] == []


def test_io_hang_a_stuck_mount_is_judged_without_disk_samples_and_clears():
    stuck = np.zeros(360)
    stuck[-5:] = [1, 11, 21, 31, 41]
    assert evaluate("storage.io_hang", stuck_ctx(TableContext(NOW), stuck)).status == "critical"
    stuck[-1] = 0  # answered again: an earlier episode only
    r = evaluate("storage.io_hang", stuck_ctx(TableContext(NOW), stuck))
    assert r.status == "warning" and "it answers again now" in r.message
    assert r.evidence["stuck_mounts"][0]["until"] == NOW - 10
    # shorter than the threshold: noted, not a finding
    stuck[:] = 0
    stuck[-2:] = [1, 11]
    r = evaluate("storage.io_hang", stuck_ctx(ctx_with_disk(np.zeros(360), np.full(360, 5.0)), stuck))
    assert r.status == "ok" and r.evidence["stuck_mounts"][0]["finding"] is False
    r = evaluate("storage.io_hang", stuck_ctx(ctx_with_disk(np.zeros(360), np.full(360, 5.0)), np.zeros(360)))
    assert r.status == "ok" and "every filesystem answered statvfs" in r.message


def test_io_hang_a_device_never_completing_anything_is_found_with_no_hung_task():
    # The real loop device over a frozen FUSE mount: I/O in flight from its first reading,
    # no completion ever, no kernel line.
    ctx = TableContext(NOW)
    ts = ctx.times(60)
    ctx.add("disk_inflight", ts, 1.0, device="loop1")
    ctx.add("disk_read_iops", ts[1:], 0.0, device="loop1")  # no rate on the first reading
    ctx.add("disk_write_iops", ts[1:], 0.0, device="loop1")
    r = evaluate("storage.io_hang", ctx)
    assert r.status == "critical" and r.message.startswith("loop1: I/O in flight")
    assert "losetup -l" in r.recommendation and "hung_tasks" not in r.evidence


# -- disk_usage / inode_usage ---------------------------------------------------------------------

def fs_ctx(metric: str, values: dict[str, float]) -> TableContext:
    ctx = TableContext(NOW)
    ts = ctx.times(600)
    for mp, v in values.items():
        ctx.add(metric, ts, v, mountpoint=mp, device="/dev/x" + mp.strip("/"), fstype="ext4")
    return ctx


def test_disk_usage_levels():
    assert evaluate("storage.disk_usage", fs_ctx("fs_usage", {"/": 50, "/data": 89.9})).status == "ok"
    r = evaluate("storage.disk_usage", fs_ctx("fs_usage", {"/": 50, "/data": 93}))
    assert r.status == "warning"
    assert [o["mountpoint"] for o in r.evidence["over"]] == ["/data"]
    assert "du -xh --max-depth=1 /data | sort -h" in r.recommendation
    assert "find /data -xdev -type f -size +100M" in r.recommendation and "lsof +L1" in r.recommendation
    r = evaluate("storage.disk_usage", fs_ctx("fs_usage", {"/": 99, "/data": 93}))
    assert r.status == "critical"
    assert [o["mountpoint"] for o in r.evidence["over"]] == ["/", "/data"]
    assert "du -xh --max-depth=1 / | sort -h" in r.recommendation


def test_disk_usage_advice_is_numbered_steps_for_each_full_filesystem_by_its_type():
    ctx = TableContext(NOW)
    ts = ctx.times(600)
    for mp, dev, fstype, v in (("/", "/dev/sda1", "ext4", 97), ("/run", "tmpfs", "tmpfs", 95), ("/srv/my data", "/dev/sdb", "xfs", 93),
                               ("/var/lib/docker/overlay2/abc/merged", "overlay", "overlay", 92), ("/home", "/dev/sdc", "ext4", 10)):
        ctx.add("fs_usage", ts, float(v), mountpoint=mp, device=dev, fstype=fstype)
    r = evaluate("storage.disk_usage", ctx)
    blocks = r.recommendation.split("\n\n")
    assert [b.split(" (", 1)[0] for b in blocks[:3]] == ["/", "/run", "/srv/my data"]
    root, run, srv = blocks[:3]
    assert root.splitlines()[1].startswith("1. Find what fills it: `du -xh --max-depth=1 / | sort -h`")
    assert "journalctl --vacuum-size=500M" in root and "`resize2fs /dev/sda1`" in root and "growpart" in root
    assert "lives in memory (tmpfs)" in run and "remount,size=" in run and "growpart" not in run
    assert "journalctl" not in srv and "`xfs_growfs '/srv/my data'`" in srv and "`lsof +L1 '/srv/my data'`" in srv
    assert [ln.split(".", 1)[0] for ln in srv.splitlines()[1:]] == ["1", "2", "3"]
    assert blocks[3] == "And 1 more filesystems over the threshold: the same steps for each (see the evidence)."
    assert "/home" not in r.recommendation


def test_disk_usage_advice_for_a_container_layer_and_a_network_share():
    for mp, dev, fstype, want in (("/var/lib/docker/overlay2/x/merged", "overlay", "overlay", "docker system df"),
                                  ("/mnt/share", "nas:/export", "nfs4", "served by another machine (nfs4)")):
        ctx = TableContext(NOW)
        r = evaluate("storage.disk_usage", ctx.add("fs_usage", ctx.times(600), 96.0, mountpoint=mp, device=dev, fstype=fstype))
        assert want in r.recommendation and "growpart" not in r.recommendation, r.recommendation


def test_disk_usage_uses_the_latest_value_and_ignores_gone_mounts():
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    ctx.add("fs_usage", ts, np.where(ts < NOW - 600, 99.0, 40.0), mountpoint="/", device="/dev/sda1", fstype="ext4")
    old = ctx.times(600, end=NOW - 7200)  # unmounted two hours ago, full when it went
    ctx.add("fs_usage", old, 99.0, mountpoint="/mnt/usb", device="/dev/sdc1", fstype="vfat")
    r = evaluate("storage.disk_usage", ctx)
    assert r.status == "ok" and r.evidence["filesystems"] == 1


def test_inode_usage_levels_and_advice():
    r = evaluate("storage.inode_usage", fs_ctx("fs_inode_usage", {"/var": 98.5}))
    assert r.status == "critical"
    assert "find /var -xdev -type d -exec sh -c" in r.recommendation and "sort -n | tail" in r.recommendation
    assert evaluate("storage.inode_usage", fs_ctx("fs_inode_usage", {"/var": 10})).status == "ok"


def test_usage_unknown_without_samples():
    assert evaluate("storage.disk_usage", TableContext(NOW)).status == "unknown"
    assert evaluate("storage.inode_usage", TableContext(NOW)).status == "unknown"


# -- readonly -----------------------------------------------------------------------------------------

def ro_ctx(values: np.ndarray, mp: str = "/data", device: str = "/dev/sdb1", fstype: str = "ext4") -> TableContext:
    ctx = TableContext(NOW)
    ctx.add("fs_readonly", ctx.times(len(values) * 10), values, mountpoint=mp, device=device, fstype=fstype)
    return ctx


def test_readonly_critical_when_rw_became_ro():
    v = np.zeros(360)
    v[-30:] = 1
    r = evaluate("storage.readonly", ro_ctx(v))
    assert r.status == "critical"
    [now] = r.evidence["readonly_now"]
    assert now["mountpoint"] == "/data" and now["since"] == NOW - 290
    assert "umount /data" in r.recommendation and "fsck -y /dev/sdb1" in r.recommendation
    assert "dmesg" in r.recommendation


def test_readonly_by_design_is_ok():
    r = evaluate("storage.readonly", ro_ctx(np.ones(360), mp="/mnt/cdrom", device="/dev/sr0", fstype="iso9660"))
    assert r.status == "ok" and r.evidence["readonly_by_design"] == ["/mnt/cdrom"]


def test_readonly_ro_throughout_with_a_remount_event_is_critical():
    ctx = ro_ctx(np.ones(360), fstype="xfs")
    ctx.event("Disk.ReadOnly", NOW - 7200, labels={"device": "sdb1", "fstype": "XFS"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "critical" and "xfs_repair /dev/sdb1" in r.recommendation


def test_readonly_recovery_is_ok_and_names_the_episode():
    v = np.zeros(360)
    v[100:130] = 1
    ctx = ro_ctx(v)
    ctx.event("Disk.ReadOnly", NOW - 2600, labels={"device": "sdb1"})  # the log line stays; the state cleared
    r = evaluate("storage.readonly", ctx)
    assert r.status == "ok"
    episodes = [x for x in r.evidence["recovered"] if "event_id" not in x]
    assert episodes == [{"mountpoint": "/data", "device": "/dev/sdb1", "fstype": "ext4",
                         "from": NOW - 2590, "to": NOW - 2300,
                         "evidence": f"the mount table showed it read-only from {fmt_time(NOW - 2590)}; "
                                     f"read-write from {fmt_time(NOW - 2290)}"}]
    assert "recovered" in r.message and "/data" in r.message


def test_readonly_event_for_an_unmonitored_device_warns():
    ctx = ro_ctx(np.zeros(60))
    ctx.event("Disk.ReadOnly", NOW - 60, labels={"device": "sdz1"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "warning" and "sdz1" in r.message


def test_readonly_raises_one_disk_readonly_per_silent_remount_and_ignores_the_ones_it_raised():
    from checks.catalogue import get

    v = np.zeros(360)
    v[-30:] = 1
    check = get("storage.readonly")
    [raised] = check.raises.events(check.id, evaluate("storage.readonly", ro_ctx(v)))
    assert (raised.type, raised.source, raised.fold_key) == ("Disk.ReadOnly", "storage.readonly",
                                                             "storage.readonly|/dev/sdb1|/data")
    assert raised.labels == {"device": "/dev/sdb1", "mountpoint": "/data"}
    # Once remounted rw, the event this check raised is no kernel report of an unmonitored device.
    ctx = ro_ctx(np.zeros(60))
    ctx.event("Disk.ReadOnly", NOW - 60, labels={"check_id": "storage.readonly", "device": "/dev/sdz1"})
    assert evaluate("storage.readonly", ctx).status == "ok"


def test_readonly_unknown_without_samples():
    assert evaluate("storage.readonly", TableContext(NOW)).status == "unknown"


# -- io_util / latency ----------------------------------------------------------------------------------

def test_io_util_warns_after_five_minutes():
    ctx = TableContext(NOW)
    v = np.full(360, 30.0)
    v[50:80] = 99.5  # 30 points = 300 s
    ctx.add("disk_util", ctx.times(3600), v, device="nvme0n1")
    r = evaluate("storage.io_util", ctx)
    assert r.status == "warning" and r.evidence["periods"][0]["seconds"] == 300
    assert "iotop" in r.recommendation and "nvme0n1" in r.recommendation
    ctx2 = TableContext(NOW)
    v[79] = 50  # 290 s only
    ctx2.add("disk_util", ctx2.times(3600), v, device="nvme0n1")
    assert evaluate("storage.io_util", ctx2).status == "ok"
    assert evaluate("storage.io_util", TableContext(NOW)).status == "unknown"


def test_latency_weights_reads_and_writes():
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    ra, wa = np.full(360, 5.0), np.full(360, 5.0)
    ra[10:50] = 400.0  # slow reads, but only 1 read per 99 writes: await 8.95 ms
    ctx.add("disk_await_read", ts, ra, device="sda")
    ctx.add("disk_await_write", ts, wa, device="sda")
    ctx.add("disk_read_iops", ts, 1.0, device="sda")
    ctx.add("disk_write_iops", ts, 99.0, device="sda")
    assert evaluate("storage.latency", ctx).status == "ok"
    ctx.add("disk_await_write", ts, 0.0, device="sdb")
    wa2 = np.full(360, 5.0)
    wa2[-40:] = 150.0
    ctx.add("disk_await_read", ts, wa2, device="sdb")
    ctx.add("disk_read_iops", ts, 10.0, device="sdb")
    ctx.add("disk_write_iops", ts, 0.0, device="sdb")
    r = evaluate("storage.latency", ctx)
    assert r.status == "warning" and r.evidence["periods"][0]["device"] == "sdb"
    assert r.evidence["periods"][0]["seconds"] == 400
    assert evaluate("storage.latency", TableContext(NOW)).status == "unknown"


# -- io_errors ------------------------------------------------------------------------------------------

def test_io_errors_critical_recent_warning_earlier_ok_after_the_lookback():
    ctx = kernel_log_read(TableContext(NOW), NOW - 12 * 3600, NOW + 13 * 3600, step=60)
    assert evaluate("storage.io_errors", ctx).status == "ok"
    ctx.event("Disk.IOError", NOW - 60, labels={"device": "sdb"}, count=7,
              lines=["blk_update_request: I/O error, dev sdb, sector 2048"])
    r = evaluate("storage.io_errors", ctx)
    assert r.status == "critical" and r.evidence["devices"] == ["sdb"] and r.evidence["count"] == 7
    assert "smartctl -a /dev/sdb" in r.recommendation
    ctx.at(NOW + RECENT + 1)
    assert evaluate("storage.io_errors", ctx).status == "warning"
    ctx.at(NOW + 12 * 3600)  # the event left the 12 h lookback
    assert evaluate("storage.io_errors", ctx).status == "ok"


def test_io_errors_unknown_when_the_kernel_log_was_not_read():
    ctx = TableContext(NOW)
    r = evaluate("storage.io_errors", ctx)
    assert r.status == "unknown" and "kernel log was not read" in r.message
    assert r.evidence["kernel_log_read_at"] is None
    kernel_log_read(ctx, NOW - 600, NOW)
    r = evaluate("storage.io_errors", ctx)
    assert r.status == "ok" and r.evidence["kernel_log_read_at"] == NOW
    # The reads stopped 13 h ago: no evidence for this lookback again.
    ctx.at(NOW + 13 * 3600)
    assert evaluate("storage.io_errors", ctx).status == "unknown"


# What Linux 6.18 showed after real I/O errors on an ext4 mounted errors=remount-ro (tests/faults/
# test_ext4_faults.py): "EXT4-fs (loop0): Remounting filesystem read-only", mount options "rw",
# superblock options "rw,errors=remount-ro,emergency_ro", no ST_RDONLY, EROFS on every write.
EXT4_RO_LINE = "EXT4-fs (loop0): Remounting filesystem read-only"


def ext4_ctx(ro: np.ndarray, forced: np.ndarray | None = None) -> TableContext:
    ctx = TableContext(NOW)
    ts = ctx.times(len(ro) * 10)
    labels = {"mountpoint": "/mnt/d", "device": "/dev/loop0", "fstype": "ext4"}
    ctx.add("fs_readonly", ts, ro, **labels)
    if forced is not None:
        ctx.add("fs_forced_readonly", ts, forced, **labels)
    return ctx


def test_readonly_after_errors_is_critical_without_a_history_or_a_kernel_line():
    # The kernel line has left the lookback (or the ring buffer): the mount table alone says it.
    r = evaluate("storage.readonly", ext4_ctx(np.ones(360), np.ones(360)))
    assert r.status == "critical" and r.evidence["readonly_by_design"] == []
    assert "after errors" in r.message and "/mnt/d" in r.message and "emergency_ro" in r.message
    assert "remount,rw` does not undo" in r.recommendation


def test_readonly_after_errors_cites_the_filesystem_errors_when_ext4_rate_limited_its_line():
    # What 6.18 logged in one real run: three "potential data loss" lines and the writeback
    # errors used up ext4's message budget, "EXT4-fs: 2 callbacks suppressed" followed, and
    # "Remounting filesystem read-only" was never logged. The journal abort and the error are.
    v = np.zeros(360)
    v[300:] = 1
    ctx = ext4_ctx(v, v)
    # The two lines fold into one event per device ("Aborting journal…" then the error), which keeps the last.
    ctx.event("Disk.IOError", NOW - 600, message="EXT4-fs error (device loop0) in __ext4_new_inode:1181: IO failure",
              labels={"device": "loop0"}, kind="fs_error", last_time=NOW - 599, count=2)
    ctx.event("Disk.IOError", NOW - 600, message="Buffer I/O error on dev loop0, logical block 285, lost async page write",
              labels={"device": "loop0"}, kind="io_error")
    ctx.event("Disk.IOError", NOW - 600, message="EXT4-fs error (device sdb1): ext4_find_entry:1455: comm ls",
              labels={"device": "sdb1"}, kind="fs_error")
    r = evaluate("storage.readonly", ctx)
    assert r.status == "critical" and "/mnt/d" in r.message
    assert r.message.endswith('kernel: "EXT4-fs error (device loop0) in __ext4_new_inode:1181: IO failure"'), r.message
    [now] = r.evidence["readonly_now"]
    assert now["kernel_lines"] == ["EXT4-fs error (device loop0) in __ext4_new_inode:1181: IO failure"]
    # Block-layer errors are not the filesystem's account, and another device's errors are not this one's.
    assert r.evidence["events"] == []


def test_kernel_readonly_line_with_a_rw_mount_table_is_never_recovered():
    # Data from a collector (or kernel) that read "rw" all along: only the kernel line knows.
    ctx = ext4_ctx(np.zeros(360))
    ctx.event("Disk.ReadOnly", NOW - 600, message=EXT4_RO_LINE, labels={"device": "loop0", "fstype": "EXT4"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "critical", r.message
    assert "recovered" not in r.message and EXT4_RO_LINE in r.message
    [u] = r.evidence["readonly_unconfirmed_rw"]
    assert u["mountpoint"] == "/mnt/d" and u["kernel_lines"] == [EXT4_RO_LINE]


def test_readonly_before_the_kernel_line_is_no_evidence_of_recovery_after_it():
    v = np.zeros(360)
    v[100:110] = 1  # an earlier episode, over long before the line
    ctx = ext4_ctx(v, np.zeros(360))
    ctx.event("Disk.ReadOnly", NOW - 600, message=EXT4_RO_LINE, labels={"device": "loop0"})
    assert evaluate("storage.readonly", ctx).status == "critical"


def test_readonly_after_errors_recovers_when_the_mount_table_shows_it_rw_again():
    v = np.zeros(360)
    v[300:340] = 1  # emergency_ro seen from the line on, then umount + fsck + mount
    ctx = ext4_ctx(v, v)
    ctx.event("Disk.ReadOnly", NOW - 595, message=EXT4_RO_LINE, labels={"device": "loop0"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "ok" and "recovered" in r.message
    [by_event] = [x for x in r.evidence["recovered"] if "event_id" in x]
    assert "read-only at" in by_event["evidence"] and "read-write from" in by_event["evidence"]


def test_readonly_after_errors_still_critical_while_the_table_says_so():
    v = np.zeros(360)
    v[300:] = 1  # `mount -o remount,rw` "succeeded" yet emergency_ro stays (6.18)
    ctx = ext4_ctx(v, v)
    ctx.event("Disk.ReadOnly", NOW - 595, message=EXT4_RO_LINE, labels={"device": "loop0"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "critical" and r.message.startswith("read-only after errors: /mnt/d (/dev/loop0)")
    assert EXT4_RO_LINE in r.message


def test_readonly_unmounted_after_the_kernel_line_is_not_read_only_now():
    ctx = TableContext(NOW)
    ctx.add("fs_readonly", ctx.times(600, end=NOW - 3000), 0.0, mountpoint="/mnt/d", device="/dev/loop0", fstype="ext4")
    ctx.add("fs_readonly", ctx.times(3600), 0.0, mountpoint="/", device="/dev/vda", fstype="ext4")
    ctx.event("Disk.ReadOnly", NOW - 3300, message=EXT4_RO_LINE, labels={"device": "loop0"})
    r = evaluate("storage.readonly", ctx)
    assert r.status == "ok" and "unmounted after" in r.evidence["recovered"][0]["evidence"]
