"""A synthetic fleet of container cgroups for bench/collect.py: real cgroups in the running
kernel, laid out as Docker's cgroupfs driver makes them, so the cgroups collector reads
the kernel's own files (and keeps them open) exactly as it would on a container host."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CGROUP = Path("/sys/fs/cgroup")


def _parents() -> list[Path]:
    """Where Docker's cgroupfs driver would put containers: docker/ in every v1 hierarchy the
    collector reads, or in the v2 root."""
    if (CGROUP / "cgroup.controllers").exists():
        return [CGROUP / "docker"]
    return [CGROUP / c / "docker" for c in ("memory", "cpuacct", "blkio") if (CGROUP / c).is_dir()]


@contextmanager
def container_cgroups(n: int) -> Iterator[str]:
    """`n` empty container cgroups (/docker/<64 hex>), each with a 256 MiB memory limit,
    removed afterwards; yields what was made, or why nothing was (not root, no cgroups)."""
    if n <= 0:
        yield "no synthetic containers"
        return
    if os.geteuid() != 0:
        yield f"no synthetic containers: making {n} cgroups needs root"
        return
    parents = _parents()
    if not parents:
        yield "no synthetic containers: no cgroup filesystem"
        return
    made: list[Path] = []
    try:
        for parent in parents:
            try:
                parent.mkdir()
                made.append(parent)
            except FileExistsError:
                pass
            for i in range(n):
                d = parent / f"{i + 0xbe0c:064x}"
                try:
                    d.mkdir()
                except FileExistsError:
                    continue  # another run's (two benches at once): theirs to remove
                made.append(d)
                for limit in ("memory.limit_in_bytes", "memory.max"):
                    if (d / limit).exists():
                        (d / limit).write_text(str(256 << 20))
        yield f"{n} synthetic container cgroups under {', '.join(map(str, parents))}"
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass  # something joined it; left for the operator rather than killed
