"""Interfaces: up or not, MTU, and addresses with their prefix lengths.

State comes from /sys/class/net. IPv4 addresses come from the tree (fib_trie lists the
local addresses, /proc/net/route the prefix routes that give each its device and prefix
length), so a fixture tree answers like the host. Whether an IPv4 address is a lease
(IFA_F_PERMANENT absent) is only told by netlink: on the live system pyroute2 supplies
it; from a fixture tree it comes from an optional proc/net/diag_addr_flags.json
({"eth0": {"192.0.2.2": 0}}), else IPv4 addresses read as not dynamic. IPv6 flags are in
if_inet6 itself.
"""

from __future__ import annotations

import ipaddress
import json
import os

from collectors.base import read_int, read_text
from collectors.network import route_ipv4  # the byte-order helper of /proc/net/route
from collectors.roots import Roots

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFA_F_PERMANENT = 0x80
RTF_GATEWAY = 0x2
# operstate values in which traffic can pass; "unknown" is what lo, tun and many
# virtual devices report while working.
_PASSING = ("up", "unknown")


def _flags(roots: Roots, dev: str) -> int:
    try:
        return int(read_text(roots.sys / "class" / "net" / dev / "flags").strip(), 16)
    except (OSError, ValueError):
        return 0


def ipv4_addresses(roots: Roots, loopback: str | None) -> dict[str, list[tuple[str, int]]]:
    """{device: [(address, prefixlen)]} from fib_trie + route.

    A local address takes the device and length of the longest directly connected route
    (no gateway) holding it. An address with no such route (a /32 handed out by a
    hoster with a peer gateway) takes the device of the longest route of any kind, and
    length 32. Loopback ranges (`127.0.0.0 /8 host LOCAL`) are in the local table only,
    which /proc/net/route does not show, so their addresses go to the loopback device.
    """
    trie = read_text(roots.proc / "net" / "fib_trie")
    route = read_text(roots.proc / "net" / "route")
    local: set[str] = set()
    local_ranges: list[ipaddress.IPv4Network] = []
    leaf = ""
    for line in trie.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            leaf = s[3:].strip()
        elif s.endswith("host LOCAL") and leaf:
            length = s.split()[0]
            if length == "/32":
                local.add(leaf)
            else:
                local_ranges.append(ipaddress.IPv4Network(leaf + length, strict=False))
    routes: list[tuple[int, bool, int, str]] = []  # (mask, connected, network, device)
    for line in route.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8:
            mask = route_ipv4(f[7])
            routes.append((mask, not int(f[3], 16) & RTF_GATEWAY, route_ipv4(f[1]) & mask, f[0]))
    routes.sort(reverse=True)  # longest mask first
    out: dict[str, list[tuple[str, int]]] = {}
    for addr in sorted(local, key=lambda a: int(ipaddress.IPv4Address(a))):
        ip = ipaddress.IPv4Address(addr)
        rng = next((r for r in local_ranges if ip in r), None)
        if rng is not None:
            if loopback:
                out.setdefault(loopback, []).append((addr, rng.prefixlen))
            continue
        n = int(ip)
        hit = next(((m, d) for m, conn, net, d in routes if conn and n & m == net), None)
        if hit is None:
            hit = next(((0xFFFFFFFF, d) for m, _, net, d in routes if n & m == net), None)
        if hit is not None:
            out.setdefault(hit[1], []).append((addr, bin(hit[0]).count("1")))
    return out


def ipv6_addresses(roots: Roots) -> dict[str, list[tuple[str, int, int]]]:
    """{device: [(address, prefixlen, flags)]} from if_inet6; {} when IPv6 is off."""
    try:
        text = read_text(roots.proc / "net" / "if_inet6")
    except FileNotFoundError:
        return {}
    out: dict[str, list[tuple[str, int, int]]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6:
            addr = str(ipaddress.IPv6Address(int(f[0], 16)))
            out.setdefault(f[5], []).append((addr, int(f[2], 16), int(f[4], 16)))
    return out


def ipv4_flags(roots: Roots) -> dict[tuple[str, str], int]:
    """{(device, address): IFA flags} for IPv4, from netlink when live, else the fixture file."""
    if roots.is_live:
        # Imported here: the module costs ~150 ms to load and is needed only on the live system.
        from pyroute2 import IPRoute

        names = {}
        out: dict[tuple[str, str], int] = {}
        with IPRoute() as ipr:
            for link in ipr.get_links():
                names[link["index"]] = link.get_attr("IFLA_IFNAME")
            for a in ipr.get_addr(family=2):
                flags = a.get_attr("IFA_FLAGS")  # the 32-bit flags; the header holds only 8
                out[(names.get(a["index"], ""), a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"))] = \
                    a["flags"] if flags is None else flags
        return out
    try:
        data = json.loads(read_text(roots.proc / "net" / "diag_addr_flags.json"))
    except FileNotFoundError:
        return {}
    return {(dev, addr): int(v) for dev, addrs in data.items() for addr, v in addrs.items()}


def interfaces(roots: Roots) -> tuple[list[dict], str | None]:
    """The interfaces, and an error for the parts that could not be read."""
    net = roots.sys / "class" / "net"
    errors: list[str] = []
    try:
        names = sorted(os.listdir(net))
    except OSError as e:
        return [], f"{net}: {e.strerror or e}"
    flags = {dev: _flags(roots, dev) for dev in names}
    loopback = next((d for d in names if flags[d] & IFF_LOOPBACK), None)
    try:
        v4 = ipv4_addresses(roots, loopback)
    except OSError as e:
        v4 = {}
        errors.append(f"IPv4 addresses: {e.strerror or e}")
    try:
        v4_flags = ipv4_flags(roots)
    except Exception as e:  # netlink refused (seccomp, no pyroute2): lose only "dynamic"
        v4_flags = {}
        errors.append(f"IPv4 address flags: {e}")
    try:
        v6 = ipv6_addresses(roots)
    except OSError as e:
        v6 = {}
        errors.append(f"IPv6 addresses: {e.strerror or e}")
    out: list[dict] = []
    for dev in names:
        try:
            oper = read_text(net / dev / "operstate").strip()
        except OSError:
            oper = "unknown"
        addrs = [{"family": "inet", "address": a, "prefixlen": p,
                  "netmask": str(ipaddress.IPv4Network(f"0.0.0.0/{p}").netmask),
                  "dynamic": not v4_flags.get((dev, a), IFA_F_PERMANENT) & IFA_F_PERMANENT}
                 for a, p in v4.get(dev, [])]
        addrs += [{"family": "inet6", "address": a, "prefixlen": p,
                   "netmask": str(ipaddress.IPv6Network(f"::/{p}").netmask),
                   "dynamic": not f & IFA_F_PERMANENT}
                  for a, p, f in v6.get(dev, [])]
        out.append({"name": dev, "up": bool(flags[dev] & IFF_UP) and oper in _PASSING,
                    "loopback": bool(flags[dev] & IFF_LOOPBACK), "operstate": oper,
                    "mtu": read_int(net / dev / "mtu"), "addresses": addrs})
    return out, "; ".join(errors) or None
