"""FilesystemCollector: the fixture mountinfo with a statvfs table, and a real tmpfs."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time

import pytest

from collectors.filesystem import FilesystemCollector
from collectors.roots import Roots
from collectors.runner import CollectionCycle
from collectors.settings import CollectorSettings
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch


def st(frsize: int, blocks: int, bfree: int, bavail: int, files: int, ffree: int) -> os.statvfs_result:
    return os.statvfs_result((frsize, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


# What statvfs says on the fixture host, per mountpoint.
TABLE = {
    "/": st(4096, 1_000_000, 400_000, 200_000, 655_360, 491_520),  # used 600k, avail 200k -> 75 %
    "/run": st(4096, 1000, 900, 900, 1000, 900),
    "/dev/shm": st(4096, 1000, 1000, 1000, 100, 99),
    "/sys/fs/cgroup": st(4096, 1000, 1000, 1000, 100, 90),
    "/run/user/0": st(4096, 1000, 1000, 1000, 100, 99),
    "/data": st(4096, 2_000_000, 1_000_000, 1_000_000, 100, 10),
    "/srv/data": st(4096, 2_000_000, 1_000_000, 1_000_000, 100, 10),
    "/var/www": st(4096, 2_000_000, 1_000_000, 1_000_000, 100, 10),
    "/boot": st(1024, 100_000, 20_000, 20_000, 0, 0),  # vfat: no inode table
    "/var/lib/docker/overlay2/abc/merged": st(4096, 1_000_000, 400_000, 200_000, 655_360, 491_520),
    "/mnt/my disk": st(4096, 400, 100, 100, 1000, 500),
    "/mnt/nfs": st(65536, 1000, 500, 500, 2000, 1500),
}


class Table:
    """A statvfs that answers from TABLE, fails for /mnt/broken (and `fail`), and records
    its calls: `paths` as called, `calls` as mountpoints (the fixture root taken off)."""

    def __init__(self, hang: threading.Event | None = None, root: str = "/",
                 fail: dict[str, OSError] | None = None) -> None:
        self.calls: list[str] = []
        self.paths: list[str] = []
        self.hang = hang
        self.root = root
        self.fail = fail or {}

    def __call__(self, full: str) -> os.statvfs_result:
        self.paths.append(full)
        assert self.root == "/" or full.startswith(self.root + "/"), f"{full} is outside the tree {self.root}"
        path = full if self.root == "/" else full[len(self.root):]
        self.calls.append(path)
        if path == "/mnt/broken":
            raise OSError(errno.EIO, "Input/output error", path)
        if path in self.fail:
            raise self.fail[path]
        if path == "/mnt/nfs" and self.hang is not None:
            self.hang.wait(30)  # a dead NFS server: blocks until the test lets it go
        return TABLE[path]


def by_mount(batch: Batch, metric: str) -> dict[str, float]:
    return {s.labels["mountpoint"]: s.value for s in batch.samples if s.metric == metric}


def collector(roots: Roots, table: Table) -> FilesystemCollector:
    table.root = str(roots.root)
    c = FilesystemCollector(roots, CollectorSettings())
    c.statvfs = table
    return c


def test_fixture_mounts_kept_and_skipped():
    table = Table()
    b = collector(HOST_T0, table).collect(1000.0)
    usage = by_mount(b, "fs_usage")
    # proc, sysfs, devtmpfs, devpts, cgroup*, squashfs skipped by type; the tmpfs on
    # /dev/shm and /sys/fs/cgroup and a container's overlay by where they are mounted;
    # /srv/data is a bind of /data (same device and root) so counted once; /var/www binds
    # another root: kept.
    assert set(usage) == {"/", "/run", "/run/user/0", "/data", "/var/www", "/boot", "/mnt/my disk", "/mnt/nfs"}
    assert "/srv/data" not in table.calls
    assert [s.labels for s in b.samples if s.metric == "fs_usage" and s.labels["mountpoint"] == "/"] == [
        {"mountpoint": "/", "device": "/dev/vda", "fstype": "ext4"}]
    # /run/user/0 is mounted twice on one path: only the visible (last) mount gives a sample
    assert [s.labels["device"] for s in b.samples
            if s.metric == "fs_readonly" and s.labels["mountpoint"] == "/run/user/0"] == ["usertmp"]
    for s in b.samples:
        assert set(s.labels) == set(get(s.metric).labels), s


def test_fixture_df_numbers():
    b = collector(HOST_T0, Table()).collect(1000.0)
    usage, inodes, ro = by_mount(b, "fs_usage"), by_mount(b, "fs_inode_usage"), by_mount(b, "fs_readonly")
    assert usage["/"] == 75.0  # (1M - 400k) / ((1M - 400k) + 200k): root's reserve left out, as df does
    assert inodes["/"] == 25.0
    assert usage["/data"] == 50.0 and inodes["/data"] == 90.0
    assert usage["/boot"] == 80.0
    assert "/boot" not in inodes  # f_files == 0
    assert usage["/mnt/my disk"] == 75.0 and inodes["/mnt/my disk"] == 50.0
    assert usage["/run/user/0"] == 0.0 and inodes["/run/user/0"] == 1.0
    assert usage["/mnt/nfs"] == 50.0
    assert ro["/boot"] == 1.0 and ro["/"] == 0.0 and ro["/data"] == 0.0 and ro["/mnt/my disk"] == 0.0


def test_fixture_readonly_per_mount_and_superblock():
    b = collector(HOST_T1, Table()).collect(1010.0)
    ro = by_mount(b, "fs_readonly")
    assert ro["/data"] == 1.0  # per-mount options ro (remount,bind,ro)
    assert ro["/mnt/my disk"] == 1.0  # superblock ro after an fs error, mount flags still rw
    assert ro["/var/www"] == 0.0


def test_statvfs_goes_through_the_root():
    table = Table()
    collector(HOST_T0, table).collect(1000.0)
    top = str(HOST_T0.root)
    assert f"{top}/" in table.paths and f"{top}/mnt/my disk" in table.paths
    assert all(p.startswith(top + "/") for p in table.paths)


def test_a_tree_without_its_root_reports_only_the_readonly_flag(caplog):
    # --proc of another machine, root left at "/": statvfs here would give this machine's
    # numbers under that machine's mountpoints.
    table = Table()
    with caplog.at_level(logging.INFO, logger="collectors.filesystem"):
        c = FilesystemCollector(HOST_T1.with_(root="/"), CollectorSettings())
        c.statvfs = table
        b = c.collect(1010.0)
    assert table.paths == []
    assert by_mount(b, "fs_usage") == {} and by_mount(b, "fs_inode_usage") == {}
    ro = by_mount(b, "fs_readonly")
    assert ro["/data"] == 1.0 and ro["/mnt/my disk"] == 1.0 and ro["/var/www"] == 0.0
    assert any("read-only flag only" in r.getMessage() for r in caplog.records)


def test_the_live_proc_statvfs_the_real_mountpoints():
    b = FilesystemCollector(Roots(), CollectorSettings()).collect(time.time())
    assert "/" in by_mount(b, "fs_readonly")
    sv = os.statvfs("/")
    used = (sv.f_blocks - sv.f_bfree) * sv.f_frsize
    if used + sv.f_bavail * sv.f_frsize > 0:
        assert by_mount(b, "fs_usage")["/"] == pytest.approx(used / (used + sv.f_bavail * sv.f_frsize) * 100, abs=0.5)


@pytest.mark.parametrize("error", [OSError(errno.EACCES, "Permission denied"), OSError(errno.ENOENT, "No such file")])
def test_failing_statvfs_is_counted_and_logged_once_per_mount_and_kind(caplog, error):
    table = Table(fail={"/data": error})
    cycle = CollectionCycle([collector(HOST_T0, table)])
    kind = type(error).__name__  # PermissionError, FileNotFoundError
    with caplog.at_level(logging.WARNING):
        b = cycle.run(1000.0)
        assert "/data" not in by_mount(b, "fs_usage") and by_mount(b, "fs_usage")["/"] == 75.0
        assert cycle.errors[("filesystem", kind)] == 1 and cycle.errors[("filesystem", "OSError")] == 1  # + /mnt/broken
        cycle.run(1010.0)  # within the minute: not retried, not counted again
        assert cycle.errors[("filesystem", kind)] == 1
        cycle.run(1061.0)  # retried, failed again: counted, not logged again
        cycle.run(1122.0)
    assert table.calls.count("/data") == 3
    assert cycle.errors[("filesystem", kind)] == 3
    logged = [r.getMessage() for r in caplog.records if "/data" in r.getMessage()]
    assert len(logged) == 1 and str(HOST_T0.root / "data") in logged[0], logged
    assert len([r for r in caplog.records if "/mnt/broken" in r.getMessage()]) == 1


def test_failing_mount_skipped_for_a_minute():
    table = Table()
    c = collector(HOST_T0, table)
    b = c.collect(1000.0)
    assert "/mnt/broken" not in by_mount(b, "fs_usage")
    assert "/" in by_mount(b, "fs_usage")
    c.collect(1010.0)
    assert table.calls.count("/mnt/broken") == 1
    c.collect(1061.0)
    assert table.calls.count("/mnt/broken") == 2


def test_hanging_statvfs_does_not_stop_the_cycle():
    release = threading.Event()
    table = Table(hang=release)
    c = collector(HOST_T0, table)
    c.statvfs_timeout = 0.3
    try:
        t = time.monotonic()
        b = c.collect(1000.0)
        assert time.monotonic() - t < 2.0
        assert "/mnt/nfs" not in by_mount(b, "fs_usage")
        assert by_mount(b, "fs_usage")["/"] == 75.0
        # still blocked: not called again, even after a minute
        c.collect(1010.0)
        c.collect(1070.0)
        assert table.calls.count("/mnt/nfs") == 1
        # the timeout is a collector error like any other failure
        assert b.errors.count("TimeoutError") == 1
    finally:
        release.set()
    time.sleep(0.1)
    c.collect(1080.0)
    assert table.calls.count("/mnt/nfs") == 2


# ---- a real tmpfs


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def test_real_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = os.path.realpath(tmp_path / "mnt")
    os.mkdir(mnt)
    try:
        _mount("-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "tmpfs", mnt)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot mount tmpfs here: {e.stderr.decode().strip()}")
    try:
        with open(os.path.join(mnt, "fill"), "wb") as f:
            f.write(b"\0" * (2 << 20))
        c = FilesystemCollector(Roots(), CollectorSettings())
        b = c.collect(time.time())
        sv = os.statvfs(mnt)
        used = (sv.f_blocks - sv.f_bfree) * sv.f_frsize
        assert by_mount(b, "fs_usage")[mnt] == pytest.approx(used / (used + sv.f_bavail * sv.f_frsize) * 100, rel=1e-12)
        assert by_mount(b, "fs_usage")[mnt] == pytest.approx(50.0, abs=1.0)
        assert by_mount(b, "fs_inode_usage")[mnt] == pytest.approx((sv.f_files - sv.f_ffree) / sv.f_files * 100)
        assert by_mount(b, "fs_readonly")[mnt] == 0.0
        labels = [s.labels for s in b.samples if s.metric == "fs_usage" and s.labels["mountpoint"] == mnt]
        assert labels == [{"mountpoint": mnt, "device": "tmpfs", "fstype": "tmpfs"}]

        _mount("-o", "remount,ro", mnt)
        assert by_mount(c.collect(time.time()), "fs_readonly")[mnt] == 1.0
        _mount("-o", "remount,rw", mnt)
        assert by_mount(c.collect(time.time()), "fs_readonly")[mnt] == 0.0
    finally:
        subprocess.run(["umount", mnt], check=False)


# mountinfo lines as kernels print them for an ext4 that hit I/O errors with errors=remount-ro.
# 6.18 (seen in tests/faults/test_ext4_faults.py): both fields "rw", emergency_ro in the
# superblock options; older kernels: "ro" in the superblock options only.
EXT4_AFTER_ERRORS = {
    "new": "46 27 7:0 / /mnt/new rw,relatime - ext4 /dev/loop0 rw,errors=remount-ro,emergency_ro",
    "old": "47 27 7:1 / /mnt/old rw,relatime - ext4 /dev/loop1 ro,errors=remount-ro,data=ordered",
    "shut": "48 27 7:2 / /mnt/shut rw,relatime - ext4 /dev/loop2 rw,shutdown",
    "admin": "49 27 7:3 / /mnt/admin ro,relatime - ext4 /dev/loop3 ro,errors=remount-ro",
    "fine": "50 27 7:4 / /mnt/fine rw,relatime - ext4 /dev/loop4 rw,errors=remount-ro",
}
RW = st(4096, 1000, 900, 900, 100, 90)


def ext4_tree(tmp_path) -> Roots:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text("\n".join(EXT4_AFTER_ERRORS.values()) + "\n")
    return Roots.under(tmp_path)


def test_ext4_readonly_after_errors_on_new_and_old_kernels(tmp_path):
    c = FilesystemCollector(ext4_tree(tmp_path), CollectorSettings())
    c.statvfs = lambda path: RW  # as on 6.18: no ST_RDONLY for emergency_ro
    b = c.collect(1000.0)
    ro, forced = by_mount(b, "fs_readonly"), by_mount(b, "fs_forced_readonly")
    assert ro == {"/mnt/new": 1.0, "/mnt/old": 1.0, "/mnt/shut": 1.0, "/mnt/admin": 1.0, "/mnt/fine": 0.0}
    # Read-only by the administrator's choice (the mount itself ro) is no fault of the filesystem.
    assert forced == {"/mnt/new": 1.0, "/mnt/old": 1.0, "/mnt/shut": 1.0, "/mnt/admin": 0.0, "/mnt/fine": 0.0}
    for s in b.samples:
        assert set(s.labels) == set(get(s.metric).labels), s


def test_ext4_readonly_after_errors_without_statvfs(tmp_path):
    # Another machine's tree: the mount table alone still says it.
    c = FilesystemCollector(ext4_tree(tmp_path).with_(root="/"), CollectorSettings())
    b = c.collect(1000.0)
    assert by_mount(b, "fs_readonly")["/mnt/new"] == 1.0 and by_mount(b, "fs_forced_readonly")["/mnt/new"] == 1.0


def test_statvfs_read_only_flag_counts(tmp_path):
    c = FilesystemCollector(ext4_tree(tmp_path), CollectorSettings())
    c.statvfs = lambda path: os.statvfs_result((4096, 4096, 1000, 900, 900, 100, 90, 90, os.ST_RDONLY, 255))
    ro = by_mount(c.collect(1000.0), "fs_readonly")
    assert ro["/mnt/fine"] == 1.0


# ---- what can hang goes to a thread; a stuck mount is a finding


class Blocking(Table):
    """A statvfs that blocks on some mountpoints until released, recording the thread used."""

    def __init__(self, hang_on: set[str], release: threading.Event, root: str = "/") -> None:
        super().__init__(root=root)
        self.hang_on, self.release = hang_on, release
        self.threads: dict[str, str] = {}
        self.asked: list[str] = []

    def __call__(self, full: str) -> os.statvfs_result:
        path = full if self.root == "/" else full[len(self.root):]
        self.threads[path] = threading.current_thread().name
        self.asked.append(path)
        if path in self.hang_on:
            self.release.wait(30)
        return super().__call__(full) if path in TABLE or path == "/mnt/broken" else TABLE["/data"]


def with_mounts(tmp_path, lines: list[str]) -> Roots:
    """The fixture host's mount table plus `lines`, in a tree of its own."""
    import shutil

    shutil.copytree(HOST_T0.root, tmp_path / "host", symlinks=True)
    roots = Roots.under(tmp_path / "host")
    mi = roots.proc / "self" / "mountinfo"
    mi.write_text(mi.read_text() + "".join(line + "\n" for line in lines))
    return roots


FUSE_LINES = [
    "90 25 0:90 / /mnt/sshfs rw,nosuid,nodev,relatime - fuse.sshfs me@host:/srv rw,user_id=0,group_id=0",
    "91 25 0:91 / /mnt/plain rw,relatime - fuse diagtest rw,user_id=0,group_id=0",
    "92 25 8:33 / /mnt/win rw,relatime - fuseblk /dev/sdc1 rw,user_id=0,group_id=0",
    "93 25 0:93 / /mnt/odd rw,relatime - somethingnew odd rw",
]


def test_only_types_that_can_hang_get_a_thread(tmp_path):
    roots = with_mounts(tmp_path, FUSE_LINES)
    table = Blocking(set(), threading.Event())
    collector(roots, table).collect(1000.0)
    threaded = {p for p, name in table.threads.items() if name == "statvfs"}
    # fuse, fuse.*, fuseblk, network and unknown types; ext4, tmpfs, vfat... answered inline
    assert threaded == {"/mnt/nfs", "/mnt/sshfs", "/mnt/plain", "/mnt/win", "/mnt/odd"}


def test_a_stopped_fuse_daemon_costs_one_deadline_once_and_is_reported_stuck(tmp_path, caplog):
    roots = with_mounts(tmp_path, FUSE_LINES)
    release = threading.Event()
    table = Blocking({"/mnt/sshfs", "/mnt/win"}, release)
    c = collector(roots, table)
    c.statvfs_timeout = 0.3
    cycle = CollectionCycle([c])
    try:
        with caplog.at_level(logging.WARNING, logger="collectors.filesystem"):
            t = time.monotonic()
            b = cycle.run(1000.0)
            first = time.monotonic() - t
            t = time.monotonic()
            b2 = cycle.run(1010.0)
            second = time.monotonic() - t
            b3 = cycle.run(1100.0)
        assert first < 1.0  # two stuck mounts share one 0.3 s deadline
        assert second < 0.2  # and the next cycles do not wait on them at all
        assert by_mount(b, "fs_usage")["/"] == 75.0 and "/mnt/sshfs" not in by_mount(b, "fs_usage")
        assert by_mount(b, "fs_stuck") == {"/mnt/sshfs": 0.3, "/mnt/win": 0.3, "/mnt/nfs": 0.0,
                                           "/mnt/plain": 0.0, "/mnt/odd": 0.0}
        assert by_mount(b2, "fs_stuck")["/mnt/sshfs"] == 10.0 and by_mount(b3, "fs_stuck")["/mnt/sshfs"] == 100.0
        stuck = [s for s in b3.samples if s.metric == "fs_stuck" and s.labels["mountpoint"] == "/mnt/sshfs"]
        assert stuck[0].labels == {"mountpoint": "/mnt/sshfs", "device": "me@host:/srv", "fstype": "fuse.sshfs"}
        # the mount table's flag is still reported while statvfs is stuck
        assert by_mount(b3, "fs_readonly")["/mnt/sshfs"] == 0.0
        # never a second thread on a stuck mount; counted once, logged once per mount
        assert table.asked.count("/mnt/sshfs") == 1
        assert cycle.errors[("filesystem", "TimeoutError")] == 2
        lines = [r.getMessage() for r in caplog.records if "/mnt/sshfs" in r.getMessage()]
        assert len(lines) == 1 and "stuck" in lines[0] and "fuse.sshfs" in lines[0], lines
    finally:
        release.set()
    time.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="collectors.filesystem"):
        b4 = cycle.run(1110.0)  # answered again: asked at once, no minute's wait, cleared
    assert by_mount(b4, "fs_stuck")["/mnt/sshfs"] == 0.0 and "/mnt/sshfs" in by_mount(b4, "fs_usage")
    assert any("answers again after 110 s" in r.getMessage() for r in caplog.records)
