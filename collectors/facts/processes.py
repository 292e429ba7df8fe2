"""Finding processes by name under a /proc tree: one read of `comm` per process.

`cmdline` and `stat` are read only for the few processes whose name matched, so a scan
of a busy host costs one small read per pid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The kernel keeps 15 characters of a process name (TASK_COMM_LEN - 1):
# systemd-networkd shows up as "systemd-network".
COMM_LEN = 15


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    comm: str


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process exited while we looked, or it is not ours to read
        return None


def scan(proc: Path) -> list[Proc]:
    """Every process in the tree with its name; raises when the tree itself is unreadable."""
    out: list[Proc] = []
    top = str(proc)
    for entry in os.scandir(top):
        if not entry.name.isdigit():
            continue
        data = _read(f"{top}/{entry.name}/comm")
        if data is not None:
            out.append(Proc(int(entry.name), data.decode("utf-8", "replace").rstrip("\n")))
    out.sort(key=lambda p: p.pid)
    return out


def named(procs: list[Proc], names: tuple[str, ...]) -> list[Proc]:
    """The processes whose name is one of `names` (compared as the kernel truncates them)."""
    wanted = {n[:COMM_LEN] for n in names}
    return [p for p in procs if p.comm in wanted]


def cmdline(proc: Path, pid: int) -> str:
    """The command line with NULs as spaces; "" for a kernel thread or a vanished process."""
    data = _read(f"{proc}/{pid}/cmdline")
    return data.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") if data else ""


def ppid(proc: Path, pid: int) -> int | None:
    data = _read(f"{proc}/{pid}/stat")
    if not data:
        return None
    # comm may hold spaces and parentheses: the fields that follow start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None
