"""Send file: write a small file with a mode, owner and group, atomically, refusing to
replace an existing one unless asked (`FileAlreadyExists`)."""

from __future__ import annotations

import grp
import os
import posixpath
import pwd
import re
import tempfile
import threading
import time

from diag.commands.runner import Result, failed

MAX_BYTES = 32 * 1024
MODE = re.compile(r"^0?[0-7]{3,4}$")
SPECIAL_BITS = 0o7000  # setuid, setgid, sticky
# Kernel filesystems: a file "sent" there is a kernel knob written or an error, never a file.
VIRTUAL_DIRS = ("/proc", "/sys", "/dev")
NAME_MAX = 255  # bytes, as the kernel counts


def check_name(name: str) -> str:
    if not name or len(name.encode()) > NAME_MAX or "/" in name or "\x00" in name or name in (".", ".."):
        raise ValueError(f"a file name of 1-{NAME_MAX} bytes without '/'")
    return name


def check_dir(path: str) -> str:
    if not path.startswith("/") or "\x00" in path or len(path) > 1024:
        raise ValueError("an absolute directory path")
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if any(norm == d or norm.startswith(d + "/") for d in VIRTUAL_DIRS):
        raise ValueError(f"{norm} is on a kernel filesystem ({', '.join(VIRTUAL_DIRS)}), not a place for files")
    return path


def write(name: str, content: bytes, target_dir: str, mode: str = "0644", owner: str = "", group: str = "",
          overwrite: bool = False) -> Result:
    start = time.time()
    path = os.path.join(target_dir, name)
    if not os.path.isdir(target_dir):
        return failed("ExecutionException", f"no directory {target_dir}")
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        return failed("ExecutionException", f"unknown owner {owner!r} or group {group!r} on this machine")
    if not overwrite and os.path.lexists(path):
        return failed("FileAlreadyExists", f"{path} exists and overwrite is false")
    try:
        # Not named after the file: a 250-byte name plus a suffix would exceed NAME_MAX.
        fd, tmp = tempfile.mkstemp(prefix=".diag-sendfile-", dir=target_dir)
    except OSError as e:
        return failed("ExecutionException", f"cannot create a file in {target_dir}: {e.strerror}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), int(mode, 8))  # after chown, which may clear setuid bits
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if a file appeared meanwhile: never replaces one
    except FileExistsError:
        return failed("FileAlreadyExists", f"{path} exists and overwrite is false")
    except OSError as e:
        return failed("ExecutionException", f"cannot write {path}: {e.strerror}")
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return Result("Finished", exit_code=0, output=f"wrote {len(content)} bytes to {path}".encode(),
                  start_time=start, finish_time=time.time())


def write_within(timeout: float, name: str, content: bytes, target_dir: str, mode: str = "0644", owner: str = "",
                 group: str = "", overwrite: bool = False) -> Result:
    """`write` with the send's timeout: a directory on a hung NFS server or a slow user
    lookup (NSS over the network) can block it, and the record must still end. The write
    goes on in its thread; a late success is not reported, since the record is already
    failed."""
    box: list[Result] = []
    t = threading.Thread(target=lambda: box.append(write(name, content, target_dir, mode, owner, group, overwrite)),
                         name=f"sendfile {name}", daemon=True)
    t.start()
    t.join(timeout)
    if box:
        return box[0]
    return failed("ExecutionTimeout", f"writing {os.path.join(target_dir, name)} took longer than the timeout "
                                      f"({timeout:g}s)")
