"""A tiny FUSE filesystem for the real-fault tests: every file of a backing directory,
read and written through this process, so stopping it (SIGSTOP) freezes the mount the
way a dead sshfs or s3fs server does.

    python -m tests.faults.fuse_daemon BACKING MOUNTPOINT

Runs in the foreground until unmounted. fusepy over Debian's libfuse2: both install from
their registries, and as root libfuse2 mounts without fusermount. The type in the mount
table is `fuse.diagtest`.
"""

from __future__ import annotations

import errno
import os
import sys

from fuse import FUSE, FuseOSError, Operations  # fusepy

FSTYPE = "fuse.diagtest"


class Passthrough(Operations):
    def __init__(self, backing: str) -> None:
        self.backing = os.path.realpath(backing)

    def _full(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def getattr(self, path: str, fh: int | None = None) -> dict:
        try:
            st = os.lstat(self._full(path))
        except OSError as e:
            raise FuseOSError(e.errno) from None
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def statfs(self, path: str) -> dict:
        sv = os.statvfs(self.backing)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                "f_namemax")
        return {k: getattr(sv, k) for k in keys}

    def open(self, path: str, flags: int) -> int:
        return os.open(self._full(path), flags & ~os.O_DIRECT)

    def create(self, path: str, mode: int, fi: object = None) -> int:
        return os.open(self._full(path), os.O_CREAT | os.O_RDWR | os.O_TRUNC, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        os.truncate(self._full(path), length)

    def flush(self, path: str, fh: int) -> None:
        return None

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        os.fsync(fh)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def unlink(self, path: str) -> None:
        os.unlink(self._full(path))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._full(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._full(path), uid, gid)

    def utimens(self, path: str, times: tuple[float, float] | None = None) -> None:
        os.utime(self._full(path), times)

    def mkdir(self, path: str, mode: int) -> None:
        raise FuseOSError(errno.EROFS)


def main(argv: list[str]) -> None:
    backing, mountpoint = argv
    # One thread: a stopped daemon then answers nothing at all. allow_other so that the
    # loop device's kernel worker and other processes reach the files.
    FUSE(Passthrough(backing), mountpoint, foreground=True, nothreads=True, allow_other=True,
         fsname="diagtest", subtype="diagtest")


if __name__ == "__main__":
    main(sys.argv[1:])
