"""Where collectors read from: the real system by default, a fixture tree in tests."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Roots:
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")
    etc: Path = Path("/etc")
    pstore: Path = Path("/sys/fs/pstore")
    # Everything else the facts snapshot reads by its system path (/usr/sbin/sshd, /run/sshd).
    root: Path = Path("/")

    @classmethod
    def under(cls, top: str | Path) -> "Roots":
        """A fixture tree laid out like a root filesystem: top/proc, top/sys, ..."""
        top = Path(top)
        return cls(
            proc=top / "proc",
            sys=top / "sys",
            kmsg=top / "dev" / "kmsg",
            etc=top / "etc",
            pstore=top / "sys" / "fs" / "pstore",
            root=top,
        )

    def with_(self, **changes: str | Path | None) -> "Roots":
        """These roots with some replaced; `None` values are ignored (CLI flags not given).

        Changing `sys` also moves `pstore` beneath it unless pstore is given too.
        """
        given = {k: Path(v) for k, v in changes.items() if v is not None}
        if "sys" in given and "pstore" not in given:
            given["pstore"] = given["sys"] / "fs" / "pstore"
        return replace(self, **given)

    @property
    def is_live(self) -> bool:
        """True when reading the running kernel's own /proc (netlink then sees the same)."""
        return self.proc == Path("/proc")
