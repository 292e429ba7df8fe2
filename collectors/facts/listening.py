"""Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}, with the processes that own them.

A socket's owner is found by reading every process's /proc/<pid>/fd links and matching
`socket:[inode]`. That walk is the costly part of the snapshot (one readlink per open
file on the host) and is acceptable only because facts are taken every few minutes.
Without permission to read another user's fd directory its sockets get no pids.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from collectors.base import read_text
from collectors.facts.processes import Proc

_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"  # TCP_CLOSE: a bound UDP socket with no fixed peer
_FILES = (("tcp", "inet", "tcp", _TCP_LISTEN), ("tcp6", "inet6", "tcp", _TCP_LISTEN),
          ("udp", "inet", "udp", _UDP_UNCONNECTED), ("udp6", "inet6", "udp", _UDP_UNCONNECTED))


def _address(hex_addr: str) -> str:
    # The kernel prints each 32-bit word of the network-order address as a host-order int.
    raw = b"".join(int(hex_addr[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hex_addr), 8))
    return str(ipaddress.ip_address(raw))


def read_sockets(proc: Path) -> tuple[list[dict], dict[int, int], list[str]]:
    """(sockets without owners, inode -> index into sockets, errors of unreadable files).

    Sockets bound to the same (proto, family, address, port) several times (SO_REUSEPORT
    workers) are one entry.
    """
    sockets: list[dict] = []
    by_key: dict[tuple, int] = {}
    by_inode: dict[int, int] = {}
    errors: list[str] = []
    for name, family, proto, state in _FILES:
        try:
            text = read_text(proc / "net" / name)
        except OSError as e:
            if name in ("tcp", "udp"):
                errors.append(f"{proc / 'net' / name}: {e.strerror or e}")
            continue  # tcp6/udp6 are absent when IPv6 is disabled
        for line in text.splitlines()[1:]:
            f = line.split()
            if len(f) < 10 or f[3] != state:
                continue
            addr, _, port = f[1].partition(":")
            key = (proto, family, _address(addr), int(port, 16))
            i = by_key.get(key)
            if i is None:
                i = by_key[key] = len(sockets)
                sockets.append({"proto": proto, "family": family, "address": key[2], "port": key[3],
                                "pids": [], "process": None})
            inode = int(f[9])
            if inode:
                by_inode[inode] = i
    return sockets, by_inode, errors


def attach_owners(proc: Path, procs: list[Proc], sockets: list[dict], by_inode: dict[int, int]) -> None:
    """Fill each socket's pids and process name from the fd links of `procs`."""
    if not by_inode:
        return
    comm = {p.pid: p.comm for p in procs}
    top = str(proc)
    for p in procs:
        fd_dir = f"{top}/{p.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # not ours to read, or gone
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            i = by_inode.get(int(target[8:-1]))
            if i is not None and p.pid not in sockets[i]["pids"]:
                sockets[i]["pids"].append(p.pid)
    for s in sockets:
        s["pids"].sort()
        if s["pids"]:
            s["process"] = comm.get(s["pids"][0])


def listening(proc: Path, procs: list[Proc]) -> tuple[list[dict], str | None]:
    sockets, by_inode, errors = read_sockets(proc)
    attach_owners(proc, procs, sockets, by_inode)
    sockets.sort(key=lambda s: (s["proto"], s["port"], s["family"], s["address"]))
    return sockets, "; ".join(errors) or None
