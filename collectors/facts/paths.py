"""System paths (what a user reads in a report) <-> where they are in the tree being read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from collectors.roots import Roots


def host_path(roots: Roots, system: str) -> Path:
    """Where the system path `system` (/etc/ssh/sshd_config, /run/sshd) is under `roots`."""
    p = PurePosixPath("/") / system
    if p.parts[1:2] == ("etc",):
        return roots.etc.joinpath(*p.parts[2:])
    return roots.root.joinpath(*p.parts[1:])


def system_path(roots: Roots, host: str | Path) -> str:
    """The system path of a file found under `roots` (the inverse of host_path)."""
    h = Path(host)
    for base, prefix in ((roots.etc, "/etc"), (roots.root, "")):
        try:
            rel = h.relative_to(base)
        except ValueError:
            continue
        return f"{prefix}/{rel.as_posix()}" if rel.parts else (prefix or "/")
    return str(h)
