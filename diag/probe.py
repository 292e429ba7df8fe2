"""A real probe from this host towards one address: TCP connect, UDP, ICMP echo.

Every probe has a deadline and touches only the address and port it is given. Each
answers a dict: `outcome` (a word), `verdict` (ok / problem / unknown), `message`,
`elapsed_ms`, and for ICMP whether it could be sent at all.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import time

MAX_TIMEOUT_S = 3.0
_UNREACH = {errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable",
            errno.EACCES: "not permitted", errno.EPERM: "not permitted (a local firewall rule rejected it)",
            errno.EADDRNOTAVAIL: "address not available"}


def _result(outcome: str, verdict: str, message: str, t0: float, **extra) -> dict:
    return {"outcome": outcome, "verdict": verdict, "message": message,
            "elapsed_ms": round((time.monotonic() - t0) * 1000, 1), **extra}


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def tcp(address: str, port: int, timeout: float) -> dict:
    t0 = time.monotonic()
    s = socket.socket(_family(address), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        return _result("connected", "ok", f"TCP connect to {address} port {port} succeeded", t0)
    except ConnectionRefusedError:
        return _result("refused", "problem", f"{address} answered port {port} with a reset: nothing listens there, "
                       "or a firewall rejects with tcp-reset", t0)
    except (socket.timeout, TimeoutError):
        return _result("timed_out", "problem", f"no answer from {address} port {port} within {timeout:g} s: "
                       "a firewall drops the packets, or the host is down", t0)
    except OSError as e:
        why = _UNREACH.get(e.errno or 0, e.strerror or str(e))
        return _result("error", "problem", f"TCP connect to {address} port {port} failed: {why}", t0)
    finally:
        s.close()


def udp(address: str, port: int, timeout: float) -> dict:
    """A datagram on a connected UDP socket: an ICMP port-unreachable comes back as
    ECONNREFUSED on the next receive; silence says only "open or filtered"."""
    t0 = time.monotonic()
    s = socket.socket(_family(address), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        s.send(b"\0")
        s.recv(512)
        return _result("answered", "ok", f"{address} port {port} answered a UDP datagram", t0)
    except ConnectionRefusedError:
        return _result("refused", "problem", f"{address} answered with ICMP port unreachable: nothing listens on "
                       f"UDP port {port}", t0)
    except (socket.timeout, TimeoutError):
        return _result("no_answer", "unknown", f"no answer within {timeout:g} s: UDP port {port} is open (a "
                       "service that does not answer an empty datagram) or filtered; UDP cannot tell which", t0)
    except OSError as e:
        why = _UNREACH.get(e.errno or 0, e.strerror or str(e))
        return _result("error", "problem", f"UDP to {address} port {port} failed: {why}", t0)
    finally:
        s.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ping_allowed() -> tuple[bool, str]:
    """Whether this process may open an unprivileged ICMP socket (ping_group_range)."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return False, "net.ipv4.ping_group_range cannot be read"
    groups = {os.getegid(), *os.getgroups()}
    if any(lo <= g <= hi for g in groups):
        return True, ""
    return False, f"net.ipv4.ping_group_range is {lo} {hi}, which holds none of this process's groups"


def icmp(address: str, timeout: float) -> dict:
    """One echo request. An unprivileged ICMP socket when ping_group_range allows, else a raw
    socket when root, else `unknown` with the reason: never a ping binary."""
    t0 = time.monotonic()
    v6 = ipaddress.ip_address(address).version == 6
    fam, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    allowed, why = _ping_allowed()
    kind = socket.SOCK_DGRAM if allowed else socket.SOCK_RAW if os.geteuid() == 0 else None
    if kind is None:
        return _result("not_allowed", "unknown", f"ICMP echo is not allowed here: {why}, and the service is not "
                       "root", t0)
    try:
        s = socket.socket(fam, kind, proto)
    except OSError as e:
        return _result("not_allowed", "unknown", f"no ICMP socket: {e.strerror or e}", t0)
    ident, seq = os.getpid() & 0xFFFF, int(time.time()) & 0xFFFF
    req_type, rep_type = (128, 129) if v6 else (8, 0)
    payload = b"diag-connectivity"
    header = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
    packet = header if v6 else struct.pack("!BBHHH", req_type, 0, _checksum(header + payload), ident, seq)
    try:
        s.sendto(packet + payload, (address, 0))  # the kernel checksums ICMPv6 itself
        end = t0 + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                return _result("timed_out", "problem", f"no echo reply from {address} within {timeout:g} s", t0)
            data = s.recv(2048)
            if kind == socket.SOCK_RAW and not v6:
                data = data[(data[0] & 0x0F) * 4:]  # a raw IPv4 socket hands the IP header too
            if len(data) < 8:
                continue
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
            # The kernel rewrites the id of an unprivileged socket's echo and delivers only its replies.
            if typ == rep_type and rseq == seq and (kind == socket.SOCK_DGRAM or rid == ident):
                return _result("echo_reply", "ok", f"{address} answered an ICMP echo", t0)
    except OSError as e:
        why = _UNREACH.get(e.errno or 0, e.strerror or str(e))
        return _result("error", "problem", f"ICMP echo to {address} failed: {why}", t0)
    finally:
        s.close()


def probe(address: str, port: int, protocol: str, timeout: float) -> dict:
    timeout = max(0.05, min(float(timeout), MAX_TIMEOUT_S))
    if protocol == "tcp":
        return tcp(address, port, timeout)
    if protocol == "udp":
        return udp(address, port, timeout)
    return icmp(address, timeout)
