"""Real I/O errors on an ext4 mounted errors=remount-ro, through a real `diag serve` reading
the host's /dev/kmsg.

No device-mapper here: the ext4 lives on a loop device over a sparse 256 MiB image on a
16 MiB tmpfs. Writing more than the tmpfs holds makes the loop driver's writes fail with
ENOSPC, which the block layer reports as real I/O errors ("critical space allocation
error, dev loopN"); a failed metadata write aborts ext4's journal and the kernel turns the
filesystem read-only. What 6.18 shows then: the mount table says "rw" in both option fields
with "emergency_ro" added to the superblock's, statvfs has no ST_RDONLY, every write fails
with EROFS, and `mount -o remount,rw` succeeds without making it writable. The kernel's
"Remounting filesystem read-only" line comes through ext4's own rate limit (10 messages in
5 s per filesystem): in some runs the "potential data loss" lines use it up and the log says
"EXT4-fs: N callbacks suppressed" instead, leaving those lines, "Aborting journal on device
loop0-8." and "EXT4-fs error (device loop0) ..." as the kernel's account.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from collectors.kernel_patterns import classify
from tests.conftest import http
from tests.faults.helpers import diagnose, need_root, result, tmpfs, wait_for


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@contextmanager
def ext4_on_a_small_tmpfs(top: Path):
    """(mountpoint, loop device, backing tmpfs); all of it gone after, whatever happens."""
    need_root()
    with tmpfs(top / "backing", "size=16m") as backing:
        image = backing / "disk.img"
        with open(image, "wb") as f:
            f.truncate(256 << 20)
        loop = run("losetup", "--find", "--show", str(image)).stdout.strip()
        mnt = top / "mnt"
        mnt.mkdir()
        try:
            # No background zeroing of the inode tables: by default ext4lazyinit
            # writes 16 MiB of inode tables after the mount and, on a busy machine, had filled
            # the backing tmpfs before the test's first write (ENOSPC with no fault made yet).
            run("mkfs.ext4", "-q", "-F", loop)
            run("mount", "-o", "errors=remount-ro,noinit_itable", loop, str(mnt))
            yield mnt, loop, backing
        finally:
            run("umount", str(mnt), check=False)
            run("umount", "-l", str(mnt), check=False)
            run("losetup", "-d", loop, check=False)


def mountinfo_line(mnt: Path) -> str:
    return next((ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if f" {mnt} " in ln), "")


def write_errno(mnt: Path) -> int:
    """0 when a small file can be written and synced, else the errno."""
    try:
        fd = os.open(mnt / "probe", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0
    except OSError as e:
        return e.errno or -1


def break_it(mnt: Path) -> list[str]:
    """Fill the backing tmpfs past full, then make metadata writes until ext4 gives up."""
    seen = []
    try:
        fd = os.open(mnt / "fill", os.O_CREAT | os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 1 << 20)  # O_DIRECT wants an aligned buffer: an anonymous map is page-aligned
        try:
            for _ in range(40):
                os.write(fd, memoryview(buf))
        finally:
            os.close(fd)
    except OSError as e:
        seen.append(f"data write: {errno.errorcode.get(e.errno, e.errno)}")
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        i += 1
        try:
            (mnt / f"d{i}").mkdir()
            fd = os.open(mnt / f"d{i}" / "f", os.O_CREAT | os.O_WRONLY)
            try:  # an fd left open would keep the filesystem busy for the repair's umount
                os.write(fd, b"y" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            what = f"metadata writes: {errno.errorcode.get(e.errno, e.errno)}"
            if not seen or seen[-1] != what:
                seen.append(what)
            if e.errno == errno.EROFS:
                return seen
        time.sleep(0.05)
    return seen


class CollectionGaps:
    """Polls /healthz's last_collection, so the test can say how long collection paused."""

    def __init__(self, url: str) -> None:
        self.url, self.times, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                last = json.loads(http("GET", self.url + "/healthz", timeout=5)[2]).get("last_collection")
            except (OSError, ValueError):
                continue
            if last and (not self.times or last != self.times[-1]):
                self.times.append(last)

    def longest(self) -> float:
        self.stop.set()
        self.thread.join(10)
        ts = [float(t) for t in self.times]
        return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)


def test_ext4_errors_remount_ro_is_critical_until_repaired(serve, tmp_path):
    with ext4_on_a_small_tmpfs(tmp_path) as (mnt, loop, backing):
        p = serve("--interval", "1s")
        gaps = CollectionGaps(p.url)
        readonly = lambda: result(diagnose(p.url, "storage.readonly"), "storage.readonly")  # noqa: E731
        io_errors = lambda: result(diagnose(p.url, "storage.io_errors"), "storage.io_errors")  # noqa: E731
        assert write_errno(mnt) == 0

        seen = break_it(mnt)
        line, flags = mountinfo_line(mnt), os.statvfs(mnt).f_flag
        kernel = {"mountinfo": line, "statvfs_rdonly": bool(flags & os.ST_RDONLY),
                  "write": errno.errorcode.get(write_errno(mnt), "ok"), "writes": seen,
                  "errors_count": Path(f"/sys/fs/ext4/{Path(loop).name}/errors_count").read_text().strip()}
        print("kernel after the fault:", kernel)
        assert kernel["write"] == "EROFS", kernel

        # The mount table shows the state at the next collection; the kernel's lines arrive
        # with the kernel-log collector, which may be a cycle behind on a busy ring buffer.
        dev = Path(loop).name

        def critical_with_the_kernels_account() -> dict | None:
            c = readonly()
            lines = [ln for r in c["evidence"].get("readonly_now", []) for ln in r["kernel_lines"]]
            cited = c["message"].rpartition('kernel: "')[2].removesuffix('"')
            kind, labels = classify(cited) or (None, {})
            ok = (c["status"] == "critical" and cited in lines and labels.get("device") == dev
                  and kind is not None and kind.kind in {"readonly_remount", "fs_error"})
            return c if ok else None

        got = wait_for(critical_with_the_kernels_account, timeout=60)
        # On failure, show what the kernel's own buffer holds of the device.
        last = readonly()
        assert got, (last["status"], last["message"], last["evidence"].get("readonly_now"), [ln for ln in subprocess.run(["dmesg"], capture_output=True, text=True)
                                          .stdout.splitlines() if dev in ln][-8:])
        assert str(mnt) in got["message"] and "recovered" not in got["message"], got
        err = wait_for(lambda: (c := io_errors())["status"] == "critical" and c, timeout=30)
        assert err and Path(loop).name in err["message"], io_errors()

        # It stays read-only, so the check stays critical: a few collections later, and after a
        # remount to rw that the kernel accepts (util-linux would pass emergency_ro back and fail).
        time.sleep(3)
        assert readonly()["status"] == "critical"
        run("mount", "--options-source", "disable", "-o", "remount,rw", str(mnt), check=False)
        after_remount = {"mountinfo": mountinfo_line(mnt), "write": errno.errorcode.get(write_errno(mnt), "ok")}
        print("kernel after remount,rw:", after_remount)
        time.sleep(3)
        if after_remount["write"] != "ok":
            assert readonly()["status"] == "critical", (after_remount, readonly())

        # The repair: room for the disk again, fsck, a fresh mount.
        run("umount", str(mnt))
        run("mount", "-o", "remount,size=320m", str(backing))
        subprocess.run(["e2fsck", "-fy", loop], capture_output=True, check=False)  # 1 = errors fixed
        run("mount", "-o", "errors=remount-ro", loop, str(mnt))
        assert write_errno(mnt) == 0
        print("kernel after the repair:", mountinfo_line(mnt))
        cleared = wait_for(lambda: (c := readonly())["status"] == "ok" and c, timeout=30)
        assert cleared, readonly()
        assert any("read-write from" in r.get("evidence", "") for r in cleared["evidence"]["recovered"]), cleared
        longest = gaps.longest()
        print(f"longest pause between collections: {longest:.1f} s")
        assert longest <= 2.5, longest
