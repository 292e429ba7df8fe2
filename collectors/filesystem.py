"""Space, inodes and read-only state of every real filesystem in /proc/self/mountinfo.

statvfs goes to `Roots.root` + mountpoint, like node_exporter's --path.rootfs: a
container that sees the host's filesystems at /host reads /host/proc and statvfs's
/host/var. A /proc tree that is not the live one, with no root given, names another
machine's mountpoints: then only the read-only flag (from the mount table itself) is
reported, never this machine's usage under that machine's labels.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from collectors.base import read_text
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

StatvfsFn = Callable[[str], os.statvfs_result]

# Kernel views, not storage. overlay and tmpfs stay: they fill up like any disk.
# squashfs/erofs are read-only images, 100 % full by design.
PSEUDO_TYPES = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs",
    "binfmt_misc", "nsfs", "devtmpfs", "squashfs", "erofs", "rpc_pipefs", "nfsd",
    "selinuxfs", "efivarfs", "ramfs",
})
# Filesystems whose statfs the kernel answers from memory: called directly, since a thread
# each would cost more than the rest of the collector. Every other type goes to a thread
# the cycle abandons at a deadline: statfs on a network filesystem, FUSE (sshfs, s3fs,
# ntfs-3g as fuseblk) or a type this list does not know can wait for good on a dead
# server or a stopped daemon. An allow-list, because a wrong guess here costs a thread,
# while a wrong guess the other way blocks the whole cycle. overlay asks its upper layer,
# which is local in every container runtime's layout.
LOCAL_TYPES = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "vfat", "msdos", "exfat", "f2fs", "zfs",
    "jfs", "reiserfs", "ntfs3", "hfsplus", "nilfs2", "bcachefs", "udf", "iso9660", "minix",
})
# Mount points under these are kernel views or other programs' private layers, whatever
# their type (a tmpfs on /sys/fs/cgroup, /dev/shm, each container's overlay): the same
# default as node_exporter's --collector.filesystem.mount-points-exclude.
EXCLUDED_UNDER = ("/dev", "/proc", "/sys")
EXCLUDED_BELOW = ("/run/credentials/", "/var/lib/docker/", "/var/lib/containers/storage/")
# Superblock options by which a filesystem says it refuses writes on its own after errors
# while the mount table still reads "rw": ext4 after `errors=remount-ro` on recent kernels
# (6.18 shows "rw,errors=remount-ro,emergency_ro" there; statvfs has no ST_RDONLY and every
# write fails with EROFS), and after a forced shutdown (EIO).
FORCED_RO_OPTIONS = frozenset({"emergency_ro", "shutdown"})
# Well inside the cycle's smallest per-collector budget (runner.MIN_BUDGET, 0.5 s): a stuck
# mount must cost its own readings, never make the runner drop every filesystem's. A
# healthy network or FUSE filesystem answers in milliseconds; a slower one is asked again
# as soon as its late call returns.
STATVFS_TIMEOUT_S = 0.3
RETRY_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class Mount:
    mountpoint: str
    device: str
    fstype: str
    readonly: bool
    dev_root: tuple[str, str]  # major:minor and root within it: same pair = a bind mount
    # Read-only by the filesystem's own doing under a read-write mount (see FORCED_RO_OPTIONS):
    # no administrator chose it, so it is a fault whatever the history says.
    forced: bool = False


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal.
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def read_mounts(roots: Roots) -> list[Mount]:
    """The real filesystems, one per mountpoint and per bind group.

    A mount over an earlier one on the same path hides it (statvfs sees the top one), so
    the last line for a path wins; bind mounts of one device+root keep the first path.
    """
    by_path: dict[str, Mount] = {}
    for line in read_text(roots.proc / "self" / "mountinfo").splitlines():
        f = line.split()
        try:
            sep = f.index("-", 6)
        except ValueError:
            continue
        if len(f) < sep + 4:
            continue
        fstype = f[sep + 1]
        if fstype in PSEUDO_TYPES:
            continue
        # The per-mount flag (`mount -o remount,ro /x`) is field 6. A filesystem that turns
        # itself read-only after an error leaves it "rw": older kernels set "ro" in the
        # superblock options (the last field), recent ones keep "rw" there too and add
        # emergency_ro. Writes fail just the same in every case.
        mount_ro = "ro" in f[5].split(",")
        sb_opts = f[sep + 3].split(",")
        forced = not mount_ro and ("ro" in sb_opts or not FORCED_RO_OPTIONS.isdisjoint(sb_opts))
        ro = mount_ro or forced
        path = _unescape(f[4])
        if path.startswith(EXCLUDED_BELOW) or any(path == p or path.startswith(p + "/") for p in EXCLUDED_UNDER):
            continue
        by_path.pop(path, None)  # re-insert so order follows the mount that is visible
        by_path[path] = Mount(path, _unescape(f[sep + 2]), fstype, ro, (f[2], f[3]), forced)
    seen: set[tuple[str, str]] = set()
    out: list[Mount] = []
    for m in by_path.values():
        if m.dev_root not in seen:
            seen.add(m.dev_root)
            out.append(m)
    return out


class _Call:
    """statvfs in a daemon thread, so a blocked one is left behind, not waited for."""

    def __init__(self, fn: StatvfsFn, path: str, started: float) -> None:
        self.started = started  # the cycle's time: a stuck mount is reported since then
        self.result: os.statvfs_result | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, path), daemon=True, name="statvfs")
        self.thread.start()

    def _run(self, fn: StatvfsFn, path: str) -> None:
        try:
            self.result = fn(path)
        except BaseException as e:  # noqa: BLE001 - reported to the cycle, not raised in a thread
            self.error = e


class FilesystemCollector:
    name = "filesystem"
    sources = ('/proc/self/mountinfo', 'statvfs(2) with a deadline')
    # Tests give a table of exact numbers for fixture mountpoints by setting this on the
    # instance; the service uses the real call.
    statvfs: StatvfsFn = staticmethod(os.statvfs)
    statvfs_timeout: float = STATVFS_TIMEOUT_S

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        root = str(roots.root)
        self._prefix = "" if root == "/" else root.rstrip("/")
        self.usage = roots.is_live or roots.root != Path("/")
        if not self.usage:
            log.info("filesystem: %s is not the live /proc and no root is given: reporting the read-only "
                     "flag only, no space or inode usage (give the matching root, e.g. --root)", roots.proc)
        # mountpoint -> (not before this time, the call still blocked if any)
        self.skipped: dict[str, tuple[float, _Call | None]] = {}
        # (mountpoint, error kind) already logged: a mount failing every minute logs once.
        self._logged: set[tuple[str, str]] = set()

    def _skip(self, path: str, now: float) -> bool:
        entry = self.skipped.get(path)
        if entry is None:
            return False
        until, call = entry
        if call is not None:
            if call.thread.is_alive():
                return True  # never stack a second blocked thread on the same mount
            # The stuck call came back: the mount answers again, so ask it now rather than
            # a minute later, and say so once.
            del self.skipped[path]
            self._logged.discard((path, "TimeoutError"))
            log.warning("filesystem: statvfs %s answers again after %.0f s", self._prefix + path, now - call.started)
            return False
        if now < until:
            return True
        del self.skipped[path]
        return False

    def _failed(self, batch: Batch, m: Mount, now: float, error: BaseException, call: _Call | None = None) -> None:
        """Skip the mount for a while, count the failure as a collector error, log it once."""
        self.skipped[m.mountpoint] = (now + RETRY_AFTER_S, call)
        kind = type(error).__name__
        batch.errors.append(kind)
        if (m.mountpoint, kind) not in self._logged:
            self._logged.add((m.mountpoint, kind))
            if call is not None:
                log.warning("filesystem: statvfs %s (%s, %s) is stuck: %s; the cycle goes on without it, reports it "
                            "as fs_stuck and asks again only once that call returns", self._prefix + m.mountpoint,
                            m.fstype, m.device, error)
            else:
                log.warning("filesystem: statvfs %s (%s) failed: %s; retried every %.0f s, logged once per mount "
                            "and kind", self._prefix + m.mountpoint, m.fstype, error, RETRY_AFTER_S)

    def _stuck(self, batch: Batch, m: Mount, now: float) -> bool:
        """fs_stuck for a mount whose abandoned call has not returned; False when there is none."""
        entry = self.skipped.get(m.mountpoint)
        call = entry[1] if entry else None
        if call is None or not call.thread.is_alive():
            return False
        # At least the deadline it already waited through in the cycle that started it.
        batch.add("fs_stuck", max(self.statvfs_timeout, now - call.started), **_labels(m))
        return True

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        every = read_mounts(self.roots)
        if not self.usage:
            for m in every:
                _add(batch, m, None)
            return batch
        if self.skipped or self._logged:
            # Forget mounts that are gone, so mount churn cannot grow these.
            present = {m.mountpoint for m in every}
            self.skipped = {p: e for p, e in self.skipped.items() if p in present}
            self._logged = {k for k in self._logged if k[0] in present}
        mounts = []
        for m in every:
            if not self._skip(m.mountpoint, now):
                mounts.append(m)
                continue
            # Without statvfs the mount table's read-only flag is still known.
            self._stuck(batch, m, now)
            _add(batch, m, None)
        prefix = self._prefix
        calls = {m.mountpoint: _Call(self.statvfs, prefix + m.mountpoint, now)
                 for m in mounts if m.fstype not in LOCAL_TYPES}
        # One shared deadline: several dead servers cost one timeout, not one each.
        deadline = time.monotonic() + self.statvfs_timeout
        for m in mounts:
            if m.mountpoint in calls:
                continue
            try:
                st = self.statvfs(prefix + m.mountpoint)
            except OSError as e:
                self._failed(batch, m, now, e)
                st = None
            _add(batch, m, st)
        for m in mounts:
            call = calls.get(m.mountpoint)
            if call is None:
                continue
            call.thread.join(max(0.0, deadline - time.monotonic()))
            if call.thread.is_alive():
                self._failed(batch, m, now, TimeoutError(f"no answer within {self.statvfs_timeout:g} s"), call)
                self._stuck(batch, m, now)
            else:
                # 0 for every mount that could hang and did not: the finding clears on its own.
                batch.add("fs_stuck", 0.0, **_labels(m))
                if call.result is None:
                    self._failed(batch, m, now, call.error or OSError("statvfs gave nothing"))
            _add(batch, m, call.result)
        return batch


def _labels(m: Mount) -> dict[str, str]:
    return {"mountpoint": m.mountpoint, "device": m.device, "fstype": m.fstype}


def _add(batch: Batch, m: Mount, st: os.statvfs_result | None) -> None:
    labels = _labels(m)
    batch.add("fs_forced_readonly", 1.0 if m.forced else 0.0, **labels)
    if st is None:  # no statvfs for this tree: the mount table's read-only flag only
        batch.add("fs_readonly", 1.0 if m.readonly else 0.0, **labels)
        return
    # df: Use% = used / (used + available to unprivileged users); root's reserve is neither.
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    if used + avail > 0:
        batch.add("fs_usage", used / (used + avail) * 100.0, **labels)
    if st.f_files > 0:  # btrfs, vfat and others have no inode table
        batch.add("fs_inode_usage", (st.f_files - st.f_ffree) / st.f_files * 100.0, **labels)
    # statvfs has ST_RDONLY for a read-only mount or superblock; the mount table read a moment
    # earlier may predate a change, so either counts (ext4's emergency_ro sets neither flag).
    ro = m.readonly or bool(st.f_flag & os.ST_RDONLY)
    batch.add("fs_readonly", 1.0 if ro else 0.0, **labels)
