"""Storage checks: I/O hang, space, inodes, read-only filesystems, busy and slow disks, I/O errors.

Recommendations follow the seeds' disk chapters (Tencent CVM "硬盘问题定位及处理": inode
full, space full, read-only, %util high; the FAQ on finding big files and on space not
freed after `rm`).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext, CheckResult, Raises, Status, level_status, two_level
from checks.happenings import (event_json, event_time, events_for, happening_status, kernel_log_read_at,
                               kernel_log_unread, source)
from checks.windows import fmt_duration, fmt_time, groups, held, runs, thresholds
from diag.settings.stale import SERIES_FLOOR, stale_after

_RANK = {"ok": 0, "warning": 1, "critical": 2}



def _worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK.get(s, 0), default="ok")


def wide(ctx: CheckContext, metrics: list[str], lookback: float, key: str = "device") -> pd.DataFrame | None:
    """Several raw per-device series side by side: columns key, ts, one per metric present."""
    parts = []
    for m in metrics:
        f = ctx.series(m, lookback)
        if not f.empty:
            parts.append(f[[key, "ts", "value"]].rename(columns={"value": m}).set_index([key, "ts"]))
    if not parts:
        return None
    return pd.concat(parts, axis=1).reset_index().sort_values([key, "ts"], kind="stable")


# -- storage.io_hang ------------------------------------------------------------------------

def _io_hang(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    disks = _disk_hangs(ctx, check, th["seconds"])
    mounts = _stuck_mounts(ctx, check, th["seconds"])
    if isinstance(disks, str) and mounts is None:
        return CheckResult("unknown", disks, {"thresholds": th})
    hangs = [] if isinstance(disks, str) else disks[0]
    ev: dict[str, Any] = {"thresholds": th, "devices_checked": 0 if isinstance(disks, str) else disks[1],
                          "hangs": hangs}
    if mounts is not None:
        ev["stuck_mounts"] = mounts
    if isinstance(disks, str):
        ev["disks_unknown"] = disks
    # A hung task is not needed (the kernel may never print one: submit_bio_wait waits in
    # slices short of hung_task_timeout_secs), but where there is one it is evidence.
    hung = [event_json(e) for e in events_for(ctx, check, ["Kernel.HungTask"])]
    if hung:
        ev["hung_tasks"] = hung
    now_devs = [h["device"] for h in hangs if h["ongoing"]]
    stuck = [m for m in (mounts or []) if m["finding"]]
    stuck_now = [m for m in stuck if m["ongoing"]]
    if not hangs and not stuck:
        msg = f"every disk completed its I/O (no stall of {th['seconds']:g} s or more)"
        if isinstance(disks, str):
            msg = f"{disks}; "
        else:
            msg += "; "
        msg += "every filesystem answered statvfs" if mounts is not None else "no filesystem that can hang is mounted"
        return CheckResult("ok" if not isinstance(disks, str) else "unknown", msg, ev)
    status = level_status(check, bool(now_devs or stuck_now), True)
    parts = []
    if now_devs:
        worst = max((h for h in hangs if h["ongoing"]), key=lambda h: h["seconds"])
        parts.append(f"{', '.join(now_devs)}: I/O in flight and none completed for "
                     f"{fmt_duration(worst['seconds'])}, through the latest sample")
    if stuck_now:
        parts.append("; ".join(f"{m['mountpoint']} ({m['fstype']}) has not answered statvfs since "
                               f"{fmt_time(m['since'])}" for m in stuck_now))
    if not parts:
        if hangs:
            w = max(hangs, key=lambda h: h["seconds"])
            parts.append(f"{w['device']} stopped completing I/O for {fmt_duration(w['seconds'])} at "
                         f"{fmt_time(w['start'])} ({len(hangs)} stall(s) in the lookback; it completes I/O again now)")
        if stuck:
            parts.append("; ".join(f"{m['mountpoint']} ({m['fstype']}) did not answer statvfs for "
                                   f"{fmt_duration(m['seconds'])} from {fmt_time(m['since'])} (it answers again now)"
                                   for m in stuck))
    recs = []
    if hangs:
        dev = max(hangs, key=lambda h: (h["ongoing"], h["seconds"]))["device"]
        recs.append(
            f"Disk {dev} stopped completing I/O. Look for tasks stuck in D state "
            f"(`ps -eo pid,stat,wchan:32,comm | awk '$2 ~ /D/'`), read `dmesg -T | grep -iE 'blocked for more than|"
            f"I/O error|reset|timeout'`, and watch `iostat -x 1 {dev}`: r/s and w/s at 0 while aqu-sz stays above 0 "
            f"confirms the hang; `cat /sys/block/{dev}/inflight` shows the stuck requests. A loop device hangs with "
            f"the filesystem its backing file is on (`losetup -l`). On a cloud or network disk the backing storage "
            f"is the usual cause (ask the provider, fail over); on a local disk check `smartctl -a /dev/{dev}` and "
            f"the controller.")
    if stuck:
        m = max(stuck, key=lambda m: (m["ongoing"], m["seconds"]))
        recs.append(
            f"{m['mountpoint']} ({m['fstype']}, {m['device']}) does not answer: every process that touches it hangs. "
            f"For FUSE (sshfs, s3fs...) find its daemon (`ps -ef | grep -i {m['fstype'].split('.')[-1]}`, "
            f"`fuser -vm {m['mountpoint']}` may hang too) and check that it runs (state T means stopped: "
            f"`kill -CONT <pid>`) and reaches its server; for NFS/CIFS check the server and the network. If it "
            f"cannot come back, `umount -l {m['mountpoint']}` (or `umount -f` for NFS) detaches it; for FUSE "
            f"`echo 1 > /sys/fs/fuse/connections/<dev minor>/abort` ends the stuck requests.")
    return CheckResult(status, "; ".join(parts), ev, " ".join(recs))


def _disk_hangs(ctx: CheckContext, check: Check, seconds: float) -> tuple[list[dict[str, Any]], int] | str:
    """Per device, the runs with I/O in flight and no completion (iops from the completed
    counters at 0) held for `seconds`; or why they cannot be judged."""
    frame = wide(ctx, ["disk_inflight", "disk_read_iops", "disk_write_iops"], check.lookback)
    if frame is None or "disk_inflight" not in frame:
        return "no disk_inflight samples in the lookback"
    if "disk_read_iops" not in frame and "disk_write_iops" not in frame:
        return "no disk_read_iops or disk_write_iops samples in the lookback"
    done = frame.reindex(columns=["disk_read_iops", "disk_write_iops"]).sum(axis=1, min_count=1).to_numpy(dtype=float)
    infl = frame["disk_inflight"].to_numpy(dtype=float)
    # Only points with both readings say anything; NaN compares False on both sides.
    mask = (infl > 0) & (done == 0)
    hangs = []
    devices = frame["device"].to_numpy()
    ts_all = frame["ts"].to_numpy(dtype=float)
    for dev in pd.unique(devices):
        sel = devices == dev
        ts, m, v = ts_all[sel], mask[sel], infl[sel]
        for r in held(ts, m, v, float(ctx.interval), seconds):
            hangs.append({"device": str(dev), **r.to_json(), "inflight_max": r.peak, "ongoing": bool(r.end == ts[-1])})
    return hangs, int(len(pd.unique(devices)))


def _stuck_mounts(ctx: CheckContext, check: Check, seconds: float) -> list[dict[str, Any]] | None:
    """Mounts whose statvfs went unanswered (fs_stuck), each with since when; a finding once
    unanswered for `seconds`. None when no mount that can hang reported at all."""
    frame = ctx.series("fs_stuck", check.lookback)
    if frame.empty:
        return None
    newest = float(frame["ts"].max())
    out = []
    for labels, ts, v in groups(frame, ["mountpoint", "device", "fstype"]):
        stuck = v > 0
        if not stuck.any():
            continue
        current = ts[-1] >= newest - stale_after(ctx.interval, SERIES_FLOOR)
        ongoing = bool(current and stuck[-1])
        # The latest stuck point knows how long the call had waited then: since = ts - value.
        last = int(np.flatnonzero(stuck)[-1])
        longest = float(v[stuck].max())
        out.append({**labels, "since": float(ts[last] - v[last]), "seconds": round(longest, 3),
                    "ongoing": ongoing, "until": None if ongoing else float(ts[last]),
                    "finding": longest >= seconds})
    return out


# -- storage.disk_usage / storage.inode_usage -----------------------------------------------

def _current(ctx: CheckContext, metric: str) -> pd.DataFrame:
    lat = ctx.latest(metric)
    if lat.empty:
        return lat
    newest = float(lat["ts"].max())
    return lat[lat["ts"] >= newest - stale_after(ctx.interval, SERIES_FLOOR)]


def _fs_row(r: Any) -> dict[str, Any]:
    return {"mountpoint": str(r.mountpoint), "device": str(r.device or ""), "fstype": str(r.fstype or ""),
            "value": round(float(r.value), 3), "ts": float(r.ts)}


def _usage_check(metric: str, what: str) -> Any:
    def evaluate(ctx: CheckContext, check: Check) -> CheckResult:
        th = thresholds(check)
        lat = _current(ctx, metric)
        if lat.empty:
            return CheckResult("unknown", f"no {metric} samples: no filesystem reported", {"thresholds": th})
        lat = lat.reindex(columns=["ts", "value", "mountpoint", "device", "fstype"]).sort_values("value", ascending=False)
        rows = [_fs_row(r) for r in lat.itertuples(index=False)]
        for r in rows:
            r["status"] = two_level(r["value"], th["warning"], th["critical"], check.severity)
        over = [r for r in rows if r["status"] != "ok"]
        status = _worst([r["status"] for r in rows])
        top = rows[0]
        ev = {"thresholds": th, "filesystems": len(rows), "over": over, "highest": top}
        if not over:
            return CheckResult("ok", f"{what} below {th['warning']:g} % on all {len(rows)} filesystems "
                                     f"(highest: {top['mountpoint']} at {top['value']:.1f} %)", ev)
        msg = "; ".join(f"{r['mountpoint']} {r['value']:.1f} %" for r in over)
        msg = f"{what} at or above {th['warning']:g} %: {msg}"
        return CheckResult(status, msg, ev, _space_advice(over) if metric == "fs_usage" else _inode_advice(over[0]))
    return evaluate


# Filesystems that live in RAM, belong to a container engine, or are another machine's: their
# room comes back another way than growing a disk.
MEMORY_FS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "glusterfs", "ceph", "lustre", "9p", "virtiofs"})
EXT_FS = frozenset({"ext2", "ext3", "ext4"})
LOG_DIRS = ("/", "/var", "/var/log")
ADVISED_FILESYSTEMS = 3


def _grow_step(fs: dict[str, Any], mp: str) -> str:
    fstype, dev = fs["fstype"], shlex.quote(fs["device"])
    if fstype in MEMORY_FS:
        return (f"It lives in memory ({fstype}): what it holds is gone at reboot anyway; give it more room with "
                f"`mount -o remount,size=<new size> {mp}` (and its line in /etc/fstab) if the RAM allows.")
    if fstype == "overlay":
        return ("It is a container's writable layer: `docker system df` (or `podman system df`) shows what images, "
                "containers and volumes take, `docker system prune` removes the unused ones; the room itself is that of "
                "the filesystem holding /var/lib/docker (or /var/lib/containers).")
    if fstype in NETWORK_FS or fstype.startswith("fuse"):
        return f"It is served by another machine ({fstype}): free or grow it there; nothing on this host resizes it."
    grow = {"xfs": f"`xfs_growfs {mp}`", "btrfs": f"`btrfs filesystem resize max {mp}`"}.get(
        fstype, f"`resize2fs {dev}`" if fstype in EXT_FS else f"the {fstype or 'filesystem'}'s own grow tool")
    step = (f"If nothing can go, grow the disk (a cloud volume, a virtual disk, LVM), then its partition "
            f"(`growpart <disk> <partition number>`, from cloud-guest-utils) or logical volume (`lvextend -r`), "
            f"then the filesystem: {grow}.")
    if fstype == "btrfs":
        step += (f" On btrfs, full metadata fills it before the data does: `btrfs filesystem usage {mp}`, and "
                 f"`btrfs balance start -dusage=50 {mp}` gives back half-empty chunks.")
    return step


def _space_advice(over: list[dict[str, Any]]) -> str:
    """Numbered steps per filesystem over the threshold (the fullest first), fitted to its type."""
    blocks = []
    for fs in over[:ADVISED_FILESYSTEMS]:
        mp = shlex.quote(fs["mountpoint"])
        steps = [f"Find what fills it: `du -xh --max-depth=1 {mp} | sort -h` (repeat in the largest directory) and "
                 f"`find {mp} -xdev -type f -size +100M -exec ls -lh {{}} +`."]
        if fs["mountpoint"] in LOG_DIRS:
            steps.append("Logs are the usual suspects: `journalctl --disk-usage`, then `journalctl --vacuum-size=500M`; "
                         "logrotate for /var/log.")
        steps.append(f"If `df -h {mp}` stays high after deleting, a process still holds deleted files open: "
                     f"`lsof +L1 {mp}` lists them; restart that process.")
        steps.append(_grow_step(fs, mp))
        head = f"{fs['mountpoint']} ({fs['fstype'] or 'unknown type'} on {fs['device'] or 'no device'}, {fs['value']:.1f} % full):"
        blocks.append("\n".join([head, *(f"{i}. {step}" for i, step in enumerate(steps, 1))]))
    if len(over) > ADVISED_FILESYSTEMS:
        blocks.append(f"And {len(over) - ADVISED_FILESYSTEMS} more filesystems over the threshold: the same steps for each "
                      f"(see the evidence).")
    return "\n\n".join(blocks)


def _inode_advice(top: dict[str, Any]) -> str:
    mp = top["mountpoint"]
    return (f"{mp} has used {top['value']:.1f} % of its inodes (`df -i {mp}`): new files fail with \"No space left on "
            f"device\" although space remains. Find the directories with the most entries: "
            f"`find {mp} -xdev -type d -exec sh -c 'echo $(ls -a \"$1\" | wc -l) \"$1\"' _ {{}} \\; | sort -n | tail` "
            f"(session files, mail queues and caches of small files are typical) and delete or archive what is no longer "
            f"needed. A filesystem made for many small files needs more inodes (`mkfs.ext4 -i`), or XFS.")


# -- storage.readonly -------------------------------------------------------------------------

# A kernel line's time is boot time (whole seconds) plus the kernel's clock, a sample's is the
# start of its cycle: a mount-table reading made after the line can carry a time this much
# before it.
EVIDENCE_SLACK_S = 5.0


def _kernel_lines(e: dict[str, Any]) -> list[str]:
    return [ln for ln in [e["message"], *e["lines"]] if ln]


def _readonly(ctx: CheckContext, check: Check) -> CheckResult:
    frame = ctx.series("fs_readonly", check.lookback)
    # Only the kernel's word counts: a Disk.ReadOnly raised from this very check is no evidence of its own.
    events = [e for e in events_for(ctx, check, ["Disk.ReadOnly", "Disk.IOError"]) if source(e) != check.id]
    evs = [event_json(e) for e in events if e["type"] == "Disk.ReadOnly"]
    # ext4 rate-limits its own messages (10 in 5 s per filesystem), so after a burst of errors
    # "Remounting filesystem read-only" may never be logged; the filesystem's errors (journal
    # aborted, "EXT4-fs error") are then the kernel's account of why it refuses writes.
    fs_errors = [event_json(e) for e in events if (e.get("details") or {}).get("kind") == "fs_error"]
    if frame.empty:
        return CheckResult("unknown", "no fs_readonly samples in the lookback", {"events": evs})
    newest = float(frame["ts"].max())
    interval = float(ctx.interval)
    # Filesystems that turned themselves read-only under a rw mount (errors=remount-ro):
    # older data and agents have no such series, and then the kernel line must say it.
    forced_now = set()
    forced = ctx.latest("fs_forced_readonly")
    if not forced.empty:
        for r in forced.itertuples(index=False):
            if float(r.value) >= 0.5 and float(r.ts) >= newest - stale_after(ctx.interval, SERIES_FLOOR):
                forced_now.add((str(r.mountpoint), str(r.device)))
    now_ro, unconfirmed, recovered, by_design, matched = [], [], [], [], set()
    for labels, ts, v in groups(frame):
        dev = os.path.basename(labels.get("device", "")) or labels.get("device", "")
        dev_events = [e for e in evs if dev and os.path.basename(e["labels"].get("device", "")) == dev]
        matched.update(id(e) for e in dev_events)
        ro = v >= 0.5
        episodes = runs(ts, ro, v, interval)
        current = ts[-1] >= newest - stale_after(ctx.interval, SERIES_FLOOR)
        base = {"mountpoint": labels.get("mountpoint", ""), "device": labels.get("device", ""),
                "fstype": labels.get("fstype", "")}
        lines = [ln for e in dev_events for ln in _kernel_lines(e)]
        if current and ro[-1]:
            was_rw = bool((~ro).any())
            is_forced = (base["mountpoint"], base["device"]) in forced_now
            if is_forced and not lines:
                lines = [ln for e in sorted(fs_errors, key=lambda e: e["last_time"])
                         if dev and os.path.basename(e["labels"].get("device", "")) == dev for ln in _kernel_lines(e)]
            if was_rw or dev_events or is_forced:
                since = episodes[-1].start if was_rw else None
                now_ro.append({**base, "since": since, "after_errors": is_forced,
                               "events": [e["time"] for e in dev_events], "kernel_lines": lines})
            else:
                by_design.append(base["mountpoint"])
            continue
        for r in episodes:
            rw_after = np.flatnonzero(~ro & (ts > r.end))
            seen = (f"read-write from {fmt_time(float(ts[rw_after[0]]))}" if rw_after.size
                    else f"no reading after {fmt_time(r.end)} (unmounted)")
            recovered.append({**base, "from": r.start, "to": r.end,
                              "evidence": f"the mount table showed it read-only from {fmt_time(r.start)}; {seen}"})
        for e in dev_events:
            if not current:
                recovered.append({**base, "from": e["time"], "to": e["last_time"], "event_id": e["event_id"],
                                  "evidence": f"unmounted after {fmt_time(float(ts[-1]))}"})
                continue
            # Writable again only if the mount table said so: it showed the filesystem read-only
            # after the kernel's line and read-write later (a remount, or a fresh mount; mount ids
            # are reused, so the id alone proves nothing). A kernel that keeps "rw" in the table
            # for a filesystem refusing writes gives no such reading: then it stays read-only.
            seen_ro = np.flatnonzero(ro & (ts >= e["last_time"] - EVIDENCE_SLACK_S))
            if seen_ro.size:
                i = int(seen_ro[-1])
                j = i + 1 + int(np.argmax(~ro[i + 1:]))
                recovered.append({**base, "from": e["time"], "to": e["last_time"], "event_id": e["event_id"],
                                  "evidence": f"the mount table showed it read-only at {fmt_time(float(ts[i]))} "
                                              f"and read-write from {fmt_time(float(ts[j]))}"})
            else:
                unconfirmed.append({**base, "since": e["time"], "last": e["last_time"], "event_id": e["event_id"],
                                    "kernel_lines": _kernel_lines(e)})
    unmatched = [e for e in evs if id(e) not in matched]
    ev = {"readonly_now": now_ro, "readonly_unconfirmed_rw": unconfirmed, "recovered": recovered,
          "readonly_by_design": by_design, "unmatched_events": unmatched, "events": evs}
    if now_ro:
        r0 = next((r for r in now_ro if r["after_errors"]), now_ro[0])
        names = ", ".join(f"{r['mountpoint']} ({r['device']})" for r in now_ro)
        since = f" since {fmt_time(r0['since'])}" if r0["since"] else ""
        if r0["after_errors"]:
            msg = (f"read-only after errors: {names}{since}; the filesystem refuses writes under a read-write mount "
                   f"(superblock options ro, emergency_ro or shutdown)")
        else:
            msg = f"read-only now after being read-write: {names}{since}"
        if r0["kernel_lines"]:
            msg += f"; kernel: \"{r0['kernel_lines'][-1]}\""
        return CheckResult(level_status(check, True, True), msg, ev, _readonly_advice(r0))
    if unconfirmed:
        r0 = unconfirmed[-1]
        names = ", ".join(sorted({f"{r['mountpoint']} ({r['device']})" for r in unconfirmed}))
        line = f" (\"{r0['kernel_lines'][0]}\")" if r0["kernel_lines"] else ""
        msg = (f"the kernel made {names} read-only at {fmt_time(r0['last'])}{line} and nothing since shows it "
               f"writable again: the mount table never showed it read-only and then remounted, as some kernels keep "
               f"\"rw\" there for a filesystem that refuses writes")
        return CheckResult(level_status(check, True, True), msg, ev, _readonly_advice(r0))
    if unmatched:
        devs = ", ".join(sorted({e["labels"].get("device", "?") for e in unmatched}))
        return CheckResult("warning", f"the kernel log reported a read-only remount of {devs}, which is not among the "
                                      f"monitored filesystems", ev,
                           f"Check the device with `findmnt -S /dev/{devs.split(', ')[0]}` and `dmesg -T | grep -iE "
                           f"'read-only|error'`; see the storage.readonly advice for repairing it.")
    msg = "every filesystem mounted read-write is still read-write"
    if recovered:
        msg += "; read-only earlier and recovered: " + ", ".join(
            f"{r['mountpoint']} ({fmt_time(r['from'])} to {fmt_time(r['to'])})" for r in recovered)
    if by_design:
        msg += f"; mounted read-only through the window (by design): {', '.join(by_design)}"
    return CheckResult("ok", msg, ev)


def _silent_remounts(result: CheckResult) -> list[tuple[str, str, dict[str, str]]]:
    """A Disk.ReadOnly for each filesystem found read-only now. One the kernel log already
    reported has its event (from the collector), so only a silent remount (`mount -o
    remount,ro`, a read-only bind) gets one here: one event per happening."""
    out = []
    for fs in result.evidence.get("readonly_now", []):
        if fs.get("events"):
            continue
        device, mountpoint = fs.get("device", ""), fs.get("mountpoint", "")
        out.append((f"{mountpoint} ({device}) is read-only after being read-write",
                    f"storage.readonly|{device}|{mountpoint}", {"device": device, "mountpoint": mountpoint}))
    return out


def _readonly_advice(r: dict[str, Any]) -> str:
    mp, dev, fstype = r["mountpoint"], r["device"], r["fstype"]
    repair = f"`xfs_repair {dev}`" if fstype == "xfs" else f"`fsck -y {dev}`"
    return (f"{mp} ({dev}, {fstype}) was remounted read-only, usually by the filesystem after an error. Read the cause "
            f"in `dmesg -T | grep -iE 'remount|error|I/O'`; rule out a full disk or inode table (`df -h {mp}`, "
            f"`df -i {mp}`). Snapshot or back up the data first. For a data disk: stop its users, `umount {mp}`, run "
            f"{repair}, then mount it again; for the root filesystem reboot so fsck runs at boot. `mount -o "
            f"remount,rw` does not undo a read-only the filesystem imposed after errors (recent kernels even report "
            f"success and it still refuses writes: try `touch {mp}/.rw-test`). Repeated I/O errors for {dev} mean a "
            f"failing disk: replace it.")


# -- storage.io_util / storage.latency --------------------------------------------------------

def _held_per_device(ctx: CheckContext, frame: pd.DataFrame, col: str, limit: float, seconds: float) -> list[dict]:
    found = []
    for dev, sub in frame.groupby("device", sort=True):
        ts, v = sub["ts"].to_numpy(dtype=float), sub[col].to_numpy(dtype=float)
        for r in held(ts, v >= limit, v, float(ctx.interval), seconds):
            found.append({"device": str(dev), **r.to_json()})
    return found


def _io_util(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    frame = wide(ctx, ["disk_util"], check.lookback)
    if frame is None:
        return CheckResult("unknown", "no disk_util samples in the lookback", {"thresholds": th})
    busy = _held_per_device(ctx, frame, "disk_util", th["percent"], th["minutes"] * 60)
    ev = {"thresholds": th, "periods": busy, "peak": _peaks(frame, "disk_util")}
    if not busy:
        return CheckResult("ok", f"no disk was {th['percent']:g} % busy for {th['minutes']:g} min", ev)
    w = max(busy, key=lambda b: b["seconds"])
    dev = w["device"]
    msg = (f"{dev} was at least {th['percent']:g} % busy for {fmt_duration(w['seconds'])} from {fmt_time(w['start'])}"
           f" ({len(busy)} period(s) in the lookback)")
    rec = (f"Disk {dev} was saturated. Find the processes doing the I/O with `iotop -oPa` or `pidstat -d 1`, and "
           f"`iostat -x 1 {dev}` for the load shape. Decide whether that I/O is expected; if so spread or reduce it "
           f"(caching, batching, moving logs elsewhere) or move to a faster disk or a higher-performance disk type.")
    return CheckResult(level_status(check, False, True), msg, ev, rec)


def _peaks(frame: pd.DataFrame, col: str) -> list[dict[str, Any]]:
    out = []
    for dev, sub in frame.groupby("device", sort=True):
        v = sub[col].to_numpy(dtype=float)
        if np.isfinite(v).any():
            i = int(np.nanargmax(v))
            out.append({"device": str(dev), "peak": round(float(v[i]), 3), "at": float(sub["ts"].to_numpy()[i])})
    return out


def _latency(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    frame = wide(ctx, ["disk_await_read", "disk_await_write", "disk_read_iops", "disk_write_iops"], check.lookback)
    if frame is None or ("disk_await_read" not in frame and "disk_await_write" not in frame):
        return CheckResult("unknown", "no disk_await_read or disk_await_write samples in the lookback", {"thresholds": th})
    f = frame.reindex(columns=["device", "ts", "disk_await_read", "disk_await_write", "disk_read_iops", "disk_write_iops"])
    ra, wa = f["disk_await_read"].to_numpy(dtype=float), f["disk_await_write"].to_numpy(dtype=float)
    ri, wi = f["disk_read_iops"].to_numpy(dtype=float), f["disk_write_iops"].to_numpy(dtype=float)
    # iostat's await: the mean over all requests, reads and writes weighted by their counts.
    ops = np.nan_to_num(ri) + np.nan_to_num(wi)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = (np.nan_to_num(ra) * np.nan_to_num(ri) + np.nan_to_num(wa) * np.nan_to_num(wi)) / ops
    fallback = np.fmax(ra, wa)
    no_counts = np.isnan(ri) & np.isnan(wi)
    f = f.assign(await_ms=np.where(no_counts, fallback, np.where(ops > 0, weighted, 0.0)))
    slow = _held_per_device(ctx, f, "await_ms", th["await_ms"], th["minutes"] * 60)
    ev = {"thresholds": th, "periods": slow, "peak": _peaks(f, "await_ms")}
    if not slow:
        return CheckResult("ok", f"no disk had an average await of {th['await_ms']:g} ms for {th['minutes']:g} min", ev)
    w = max(slow, key=lambda b: b["seconds"])
    dev = w["device"]
    msg = (f"{dev} averaged {th['await_ms']:g} ms or more per request for {fmt_duration(w['seconds'])} from "
           f"{fmt_time(w['start'])} (peak {w['peak']:.0f} ms)")
    rec = (f"Requests to {dev} waited long. Compare `iostat -x 1 {dev}` r_await/w_await with %util: a busy disk "
           f"needs less I/O or a faster disk (find the writers with `iotop -oPa`); slow requests on an idle disk point "
           f"at the device or its backing storage (`dmesg -T` for resets and timeouts, `smartctl -a /dev/{dev}`).")
    return CheckResult(level_status(check, False, True), msg, ev, rec)


# -- storage.io_errors ------------------------------------------------------------------------

def _io_errors(ctx: CheckContext, check: Check) -> CheckResult:
    events = events_for(ctx, check, ["Disk.IOError"])
    evs = [event_json(e) for e in events]
    status, now = happening_status(ctx, check, [event_time(e) for e in events])
    devices = sorted({e["labels"].get("device", "") for e in evs} - {""})
    ev = {"events": evs, "devices": devices, "count": sum(e["count"] for e in evs),
          "kernel_log_read_at": kernel_log_read_at(ctx, check)}
    if not evs:
        if ev["kernel_log_read_at"] is None:
            return CheckResult("unknown", kernel_log_unread(ctx, check, "block or filesystem errors"), ev)
        return CheckResult("ok", "no block or filesystem errors in the kernel log in the lookback", ev)
    last = evs[-1]
    when = "in the last 15 minutes" if now else f"last at {fmt_time(last['last_time'])}"
    msg = f"{ev['count']} kernel I/O or filesystem error(s) on {', '.join(devices) or 'an unnamed device'}, {when}"
    dev = devices[0] if devices else "<device>"
    rec = (f"The kernel reported I/O or filesystem errors on {dev}: `dmesg -T | grep -iE '{dev}|I/O error'`. Back up "
           f"what matters now, check the disk's health (`smartctl -a /dev/{dev}`; on a cloud disk, the provider's "
           f"disk status), and repair the filesystem after unmounting it (`fsck -y /dev/{dev}` or `xfs_repair`). "
           f"Errors that keep coming mean a failing disk: replace it.")
    return CheckResult(status, msg, ev, rec)


CHECKS: tuple[Check, ...] = (
    Check("storage.io_hang", "storage", "Disk I/O hang", "critical",
          "A disk has I/O in flight and completes none for a while (the cloud's IO HANG).",
          "Find the disk that stopped completing I/O with `iostat -x 1` and `dmesg -T`.",
          _io_hang, thresholds={"seconds": 30}, raises=Raises("Disk.IOHang")),
    Check("storage.disk_usage", "storage", "Filesystem space", "critical",
          "Space used on each filesystem, as df reports it.",
          "Find what fills the filesystem with `du -xh --max-depth=1 <mountpoint> | sort -h`.",
          _usage_check("fs_usage", "space used"), thresholds={"warning": 90, "critical": 98},
          raises=Raises("Disk.Full")),
    Check("storage.inode_usage", "storage", "Filesystem inodes", "critical",
          "Inodes used on each filesystem.",
          "Find the directories with the most files and delete what is no longer needed.",
          _usage_check("fs_inode_usage", "inodes used"), thresholds={"warning": 90, "critical": 98},
          raises=Raises("Disk.Full")),
    Check("storage.readonly", "storage", "Read-only filesystem", "critical",
          "A filesystem mounted read-write became read-only, or the kernel log reports a read-only remount.",
          "Read the cause in dmesg, then repair the filesystem with fsck after unmounting it.",
          _readonly, raises=Raises("Disk.ReadOnly", _silent_remounts)),
    Check("storage.io_util", "storage", "Disk busy time", "non_critical",
          "A disk busy (I/O in flight) nearly all the time for minutes.",
          "Find the processes doing the I/O with `iotop -oPa` and reduce it or use a faster disk.",
          _io_util, thresholds={"percent": 99, "minutes": 5}),
    Check("storage.latency", "storage", "Disk latency", "non_critical",
          "Average time per I/O request (await) high for minutes.",
          "Compare await with %util in `iostat -x 1`; check the device in dmesg.",
          _latency, thresholds={"await_ms": 100, "minutes": 5}),
    Check("storage.io_errors", "storage", "Disk I/O errors", "critical",
          "Block I/O or filesystem errors in the kernel log.",
          "Back up, check the disk's health with smartctl, repair the filesystem after unmounting it.",
          _io_errors),
)
