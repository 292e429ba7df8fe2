"""A panic or Oops from the previous boot, kept by pstore (ramoops, EFI) in /sys/fs/pstore.

pstore writes the tail of the kernel log at a crash as `dmesg-<backend>-<id>` files:
a header line (`Panic#1 Part1`, `Oops#1 Part1`) then syslog-style lines
(`<0>[  812.118893] Kernel panic - not syncing: ...`). The file's mtime is the crash time.
"""

from __future__ import annotations

import os
from pathlib import Path

from collectors.kernel_patterns import classify
from diag.model import Signal

MAX_LINES = 30
# Parts of one multi-part dump share the header and were written within the same moment.
_SAME_DUMP_S = 60.0


def _message(line: str) -> str:
    """`<6>[  812.118401] text` -> `text`."""
    if line.startswith("<"):
        end = line.find(">")
        if end > 0:
            line = line[end + 1 :]
    if line.startswith("["):
        end = line.find("] ")
        if end > 0:
            line = line[end + 2 :]
    return line


def parse_dump(text: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(header, panic or Oops line, the lines after it) for a dump that holds one; else None.

    The panic line is preferred; without one (an Oops that did not panic, dumped with
    printk.always_kmsg_dump or oops kmsg_dump) the first line of the Oops is used.
    """
    lines = text.splitlines()
    if not lines:
        return None
    header = lines[0].strip()
    msgs = [_message(line) for line in lines[1:]]
    first_oops = None
    for i, msg in enumerate(msgs):
        hit = classify(msg)
        if hit is None:
            continue
        kind = hit[0].kind
        if kind == "panic":
            return header, msg, tuple(msgs[i + 1 : i + 1 + MAX_LINES])
        if kind == "oops" and first_oops is None:
            first_oops = i
    if first_oops is None:
        return None
    return header, msgs[first_oops], tuple(msgs[first_oops + 1 : first_oops + 1 + MAX_LINES])


def find_pstore_panics(pstore: Path, seen: set[str]) -> tuple[list[Signal], list[str], set[str]] | None:
    """New panic signals, the keys to remember (every new dump file that held a panic),
    and the keys of every dump file present; None when there is no pstore directory.
    A key is `name@mtime_ns`, so a new crash written under an old name is new."""
    try:
        names = sorted(n for n in os.listdir(pstore) if n.startswith("dmesg-"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    signals: list[Signal] = []
    remember: list[str] = []
    present: set[str] = set()
    last: tuple[str, float] | None = None
    for name in names:
        path = pstore / name
        try:
            st = path.stat()
            key = f"{name}@{st.st_mtime_ns}"
            present.add(key)
            if key in seen:
                continue
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        dump = parse_dump(text)
        if dump is None:
            continue
        header, message, lines = dump
        remember.append(key)
        if last is not None and last[0] == header and abs(last[1] - st.st_mtime) < _SAME_DUMP_S:
            continue  # another part of a dump already reported
        last = (header, st.st_mtime)
        signals.append(Signal(st.st_mtime, "panic", message, {"source": "pstore", "file": name}, 1, lines))
    return signals, remember, present
