"""Connections: TCP sockets by state, conntrack table and file handle usage.

On the live system TCP states come from netlink sock_diag (the kernel walks its socket
hash tables and we read one state byte per socket); a fixture tree has only
/proc/net/tcp{,6}, which is parsed instead. Measured on this 2-core VM, 2 sockets,
one cycle (see the project report): /proc/net/tcp{,6} ~7 ms, pyroute2 DiagSocket
~1.3 ms, inet_diag_req_v2 per family ~0.35 ms, one legacy TCPDIAG_GETSOCK dump
~0.19 ms. The legacy request is answered for both families in a single walk of the
hash tables, so it is tried first and v2 is the fallback. TIME_WAIT sockets are left
out of the dump and counted from /proc/net/sockstat (what `ss -s` shows): with the
805 of them left on this machine by a benchmark, the cycle's connections reading went
from 0.86 to 0.2 ms.

Its three readings come from independent files and fail alone: without /proc/net/tcp (a
container, a partial capture) conntrack and file-handle usage are still read, as
node_exporter keeps them in separate collectors. A netlink dump that stalls is given up
at NETLINK_DEADLINE_S and that cycle reads /proc/net/tcp instead.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from pathlib import Path

from collectors.base import Parts, read_bytes
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

# Kernel TCP state numbers (include/net/tcp_states.h); every one is emitted, zeros too,
# so charts stay continuous.
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}
_NEW_SYN_RECV = 12  # a request socket; /proc/net/tcp shows it as SYN_RECV, so do we

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18
NLMSG_MIN_TYPE = 0x10  # below: netlink control messages (NOOP, ERROR, DONE, OVERRUN)
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_LEN_TYPE = struct.Struct("=IH")
# inet_diag_req_v2: family, protocol, ext, pad, states; then an all-zero inet_diag_sockid.
_REQ_V2 = struct.Struct("=BBBBI48x")
# inet_diag_req (v1): family, src_len, dst_len, ext, inet_diag_sockid, states, dbs.
_REQ_V1 = struct.Struct("=BBBB48xII")
# States 1..12. Not bit 13 (TCP_BOUND_INACTIVE, 6.6+): bound-only sockets, which
# /proc/net/tcp does not list either.
_ALL_STATES = 0x1FFE
_TIME_WAIT = 6
# TIME_WAIT sockets are the many on a busy server (tens of thousands): the kernel keeps
# their count, so the dump leaves them out and /proc/net/sockstat's "tw" gives it.
_NO_TIME_WAIT = _ALL_STATES & ~(1 << _TIME_WAIT)
_RECV_BUF = 65536
# A dump of 100,000 sockets takes tens of ms; a dump still unanswered after this is
# stalled (a socket lock held by a stuck process), and the cycle must not wait on it.
NETLINK_DEADLINE_S = 2.0
_TIMEVAL = struct.Struct("@ll")


def _v2_request(family: int, seq: int, states: int) -> bytes:
    body = _REQ_V2.pack(family, socket.IPPROTO_TCP, 0, 0, states)
    head = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return head + body


def _legacy_request(seq: int, states: int) -> bytes:
    # The kernel's compat path dumps with family AF_UNSPEC: IPv4 and IPv6 in one walk.
    body = _REQ_V1.pack(0, 0, 0, 0, states, 0)
    head = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return head + body


def _recv_by(s: socket.socket, deadline: float) -> bytes:
    """One recv that gives up at `deadline` (time.monotonic()) with TimeoutError.

    SO_RCVTIMEO keeps the socket blocking (no poll before every recv, as settimeout
    adds); it is set to what is left of the deadline, so a dump of many reads cannot
    take more than the deadline in all.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("sock_diag: dump not finished by its deadline")
    sec = int(left)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(sec, max(1, int((left - sec) * 1e6))))
    try:
        return s.recv(_RECV_BUF)
    except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out
        raise TimeoutError("sock_diag: no answer by the deadline") from None


def _count_dump(s: socket.socket, request: bytes, counts: list[int], deadline: float) -> None:
    """Send one dump request and add each answered socket to counts[state]."""
    s.send(request)
    while True:
        buf = _recv_by(s, deadline)
        if not buf:
            raise OSError("sock_diag: empty netlink read")
        off, end = 0, len(buf)
        while off + 16 <= end:
            length, kind = _LEN_TYPE.unpack_from(buf, off)
            if kind > NLMSG_MIN_TYPE and length >= 18:
                # inet_diag_msg starts with family, state: the state is byte 17.
                counts[buf[off + 17] & 15] += 1
                off += (length + 3) & ~3
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", buf, off + 16)[0]
                raise OSError(err, f"sock_diag: {os.strerror(err)}")
            if length < 16:
                raise OSError("sock_diag: malformed netlink message")
            off += (length + 3) & ~3  # NLMSG_NOOP and the like


def sock_diag_tcp_states(legacy: bool, states: int = _ALL_STATES,
                         timeout: float = NETLINK_DEADLINE_S) -> list[int]:
    """Sockets per kernel TCP state number (index = state), via NETLINK_SOCK_DIAG.

    `legacy`: one TCPDIAG_GETSOCK dump; otherwise an inet_diag_req_v2 dump per family.
    `states`: a bit mask of the state numbers to dump; the others count 0.
    Raises TimeoutError when the whole reading takes more than `timeout` seconds, and
    OSError when the kernel refuses (no inet_diag module, seccomp, no compat path).
    """
    counts = [0] * 16
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
        if legacy:
            _count_dump(s, _legacy_request(1, states), counts, deadline)
        else:
            _count_dump(s, _v2_request(socket.AF_INET, 1, states), counts, deadline)
            try:
                _count_dump(s, _v2_request(socket.AF_INET6, 2, states), counts, deadline)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EINVAL, errno.EAFNOSUPPORT):
                    raise  # those three: IPv6 disabled or not built, so no IPv6 sockets
    counts[3] += counts[_NEW_SYN_RECV]
    counts[_NEW_SYN_RECV] = 0
    return counts


def proc_tcp_states(paths: tuple[str | Path, ...]) -> list[int]:
    """The same counts from /proc/net/tcp-style files; a missing tcp6 (no IPv6) is skipped."""
    counts = [0] * 16
    for i, path in enumerate(paths):
        try:
            text = read_bytes(path)
        except FileNotFoundError:
            if i == 0:
                raise  # tcp (IPv4) is the source itself
            continue
        for line in text.splitlines()[1:]:
            parts = line.split(None, 4)
            if len(parts) > 3:
                counts[int(parts[3], 16) & 15] += 1
    return counts


def sockstat_time_wait(proc: str | Path) -> int | None:
    """TIME_WAIT sockets of both families, the "tw" of /proc/net/sockstat's TCP line
    (the kernel's one death row counts IPv4 and IPv6); None when it cannot be read."""
    try:
        text = read_bytes(f"{proc}/net/sockstat")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(b"TCP:"):
            fields = line.split()
            try:
                return int(fields[fields.index(b"tw") + 1])
            except (ValueError, IndexError):
                return None
    return None


def _read_numbers(path: str) -> list[int] | None:
    """The numbers of a sysctl file; None when it does not exist (module not loaded)."""
    try:
        return list(map(int, read_bytes(path).split()))
    except FileNotFoundError:
        return None


# The state breakdown walks the kernel's whole established hash, whose size follows the RAM
# (262,144 buckets on a 24 GiB VM: about 1 ms a dump however few sockets there are), and no
# check reads it: it is a slow-moving gauge for charts and scrapes. So the live system is
# dumped every TCP_STATES_EVERY cycles (30 s at the default 10 s interval); the cycles between
# repeat the last dump's counts, which keeps the series whole for scrapes, with TIME_WAIT
# (from sockstat, nearly free) read fresh.
TCP_STATES_EVERY = 3


class ConnectionsCollector:
    name = "connections"
    sources = ('netlink sock_diag (or /proc/net/tcp, tcp6)', '/proc/net/sockstat', '/proc/sys/net/netfilter/nf_conntrack_{count,max}', '/proc/sys/fs/file-nr')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        # Which live source answers: legacy sock_diag, v2 sock_diag, then /proc.
        self.tcp_source = "legacy"
        self.parts = Parts(log)
        self.tcp_states_every = TCP_STATES_EVERY
        self._tcp_counts: list[int] | None = None
        self._tcp_age = 0  # cycles since the last dump

    def tcp_states(self, batch: Batch | None = None) -> list[int]:
        """Sockets per state number; a stalled netlink dump is counted in `batch.errors`."""
        proc = self.roots.proc
        if self.roots.is_live:
            # A refused source is not retried every cycle: it stays refused for this kernel.
            time_wait = sockstat_time_wait(proc)
            for source, legacy in (("legacy", True), ("v2", False)):
                if self.tcp_source != source:
                    continue
                try:
                    if time_wait is None:
                        return sock_diag_tcp_states(legacy)
                    counts = sock_diag_tcp_states(legacy, _NO_TIME_WAIT)
                    counts[_TIME_WAIT] = time_wait
                    return counts
                except TimeoutError as e:
                    # Stalled, not refused: this cycle reads /proc, the next tries netlink again.
                    if batch is not None:
                        self.parts.failed(batch, "sock_diag", f"sock_diag {source} dump", e)
                    break
                except OSError as e:
                    self.tcp_source = "v2" if legacy else "proc"
                    log.warning("sock_diag %s dump refused (%s); trying the next TCP state source", source, e)
        return proc_tcp_states((f"{proc}/net/tcp", f"{proc}/net/tcp6"))

    def _tcp(self, batch: Batch, sysctl: str) -> None:
        if self.roots.is_live and self._tcp_counts is not None and self._tcp_age < self.tcp_states_every - 1:
            self._tcp_age += 1
            counts = list(self._tcp_counts)
            time_wait = sockstat_time_wait(self.roots.proc)
            if time_wait is not None:
                counts[_TIME_WAIT] = time_wait
        else:
            errors = len(batch.errors)
            counts = self.tcp_states(batch)
            # A stalled dump is tried again next cycle, not repeated from /proc's fallback.
            self._tcp_counts = None if len(batch.errors) > errors else counts
            self._tcp_age = 0
        for number, state in TCP_STATES.items():
            batch.add("tcp_connections", counts[number], state=state)

    def _conntrack(self, batch: Batch, sysctl: str) -> None:
        # The conntrack files exist only while nf_conntrack is loaded.
        count = _read_numbers(f"{sysctl}/net/netfilter/nf_conntrack_count")
        limit = _read_numbers(f"{sysctl}/net/netfilter/nf_conntrack_max")
        if self.settings.raw_counters:
            if count:
                batch.counters["nf_conntrack_count"] = count[0]
            if limit:
                batch.counters["nf_conntrack_max"] = limit[0]
        if count and limit and limit[0] > 0:
            batch.add("conntrack_usage", count[0] * 100.0 / limit[0])

    def _file_handles(self, batch: Batch, sysctl: str) -> None:
        # allocated, allocated-but-free (always 0 since 2.6), max (may be 2**63 - 1)
        allocated, free, maximum = (int(v) for v in read_bytes(f"{sysctl}/fs/file-nr").split()[:3])
        if self.settings.raw_counters:  # one sysctl with three numbers: named by the kernel doc's words
            batch.counters["fs.file-nr.allocated"] = allocated
            batch.counters["fs.file-nr.unused"] = free
            batch.counters["fs.file-nr.max"] = maximum
        if maximum > 0:
            batch.add("file_handles_usage", (allocated - free) * 100.0 / maximum)

    # (part name as counted in the errors, its file under /proc, the method reading it)
    _PARTS = (
        ("net/tcp", "net/tcp", _tcp),
        ("nf_conntrack", "sys/net/netfilter/nf_conntrack_{count,max}", _conntrack),
        ("file-nr", "sys/fs/file-nr", _file_handles),
    )

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        proc = self.roots.proc
        sysctl = f"{proc}/sys"  # string paths: a Path join costs more than the read
        for part, path, read in self._PARTS:
            try:
                read(self, batch, sysctl)
            except Exception as e:  # noqa: BLE001 - one part's failure leaves the others
                self.parts.failed(batch, part, f"{proc}/{path}", e)
        return batch
