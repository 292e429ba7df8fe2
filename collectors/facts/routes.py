"""Default routes: IPv4 from /proc/net/route (the main table), IPv6 from /proc/net/ipv6_route.

ipv6_route lists every table, including the kernel's `unreachable default dev lo` in the
local table; that one lacks RTF_UP, which is how it is left out.
"""

from __future__ import annotations

import ipaddress

from collectors.base import read_text
from collectors.network import route_ipv4
from collectors.roots import Roots

RTF_UP = 0x1
RTF_REJECT = 0x200


def default_v4(roots: Roots) -> list[dict]:
    out = []
    for line in read_text(roots.proc / "net" / "route").splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or int(f[1], 16) or int(f[7], 16):
            continue
        flags = int(f[3], 16)
        if not flags & RTF_UP or flags & RTF_REJECT:
            continue
        gw = route_ipv4(f[2])
        out.append({"gateway": str(ipaddress.IPv4Address(gw)) if gw else None, "interface": f[0],
                    "metric": int(f[6])})
    return out


def default_v6(roots: Roots) -> list[dict]:
    try:
        text = read_text(roots.proc / "net" / "ipv6_route")
    except FileNotFoundError:
        return []  # IPv6 disabled
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or int(f[0], 16) or f[1] != "00":
            continue
        flags = int(f[8], 16)
        if not flags & RTF_UP or flags & RTF_REJECT:
            continue
        gw = int(f[4], 16)
        out.append({"gateway": str(ipaddress.IPv6Address(gw)) if gw else None, "interface": f[9],
                    "metric": int(f[5], 16)})
    return out


def routes(roots: Roots) -> dict:
    out: dict = {"default_v4": [], "default_v6": [], "error": None}
    errors = []
    for key, fn in (("default_v4", default_v4), ("default_v6", default_v6)):
        try:
            out[key] = fn(roots)
        except (OSError, ValueError) as e:
            errors.append(f"{key}: {e}")
    out["error"] = "; ".join(errors) or None
    return out
