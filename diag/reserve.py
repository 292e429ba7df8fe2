"""Room kept back on the data dir's filesystem for the moment it fills up.

When the disk is full, the event saying so must still be written, and it lives on the
same filesystem as the samples that failed. A small file of zeros is held while there
is room and deleted at the first "disk full", so the event log (and the metadata a
collection updates) can commit; it is taken back once writes succeed again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SIZE = 4 << 20  # several event-log commits' worth of WAL pages, little beside any real disk


class Reserve:
    def __init__(self, path: Path, size: int = SIZE) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Hold the reserve if there is clearly room for it; True when it is held."""
        try:
            if self.path.stat().st_size >= self.size:
                return True
        except FileNotFoundError:
            pass
        try:
            # Only with twice its size free: taking the last megabytes back would cause
            # the very failure it is there for.
            if shutil.disk_usage(self.path.parent).free < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # real blocks, not a sparse promise
            finally:
                os.close(fd)
            return True
        except OSError:
            self.release()
            return False

    def release(self) -> bool:
        """Give the room back to the filesystem; True when there was any to give."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
