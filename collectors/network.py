"""Per-interface traffic from /proc/net/dev, each interface labelled public or private.

Scope comes from the interface's addresses: any address outside the private ranges
makes it `public`. Addresses are read from the tree (fib_trie + route for IPv4, if_inet6
for IPv6) rather than netlink, so a fixture tree gives the same answer as the host.

Virtual interfaces (veth, docker0, bridges, ifb, tunnels) are counted like any other:
/proc/net/dev cannot say which traffic a bridge or veth also carried on a physical NIC
without walking bridge and netns membership, and dropping them would hide traffic that
never touches a NIC (container to container). Their scope follows their addresses (a veth
with only fe80:: is private); pin one with `interface_scopes` to move it.
"""

from __future__ import annotations

import ipaddress
import sys

from collectors.base import CounterNames, Rates, read_bytes, read_int, read_text
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

# Addresses rarely change; re-reading three files and classifying every minute keeps the
# 10 s cycle to one read of /proc/net/dev.
SCOPE_REFRESH_S = 60.0

_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 carrier-grade NAT
        "169.254.0.0/16", "fe80::/10",  # link-local
        "fc00::/7",  # ULA
        "127.0.0.0/8", "::1/128",  # loopback
    )
)

# /proc/net/dev column -> (rate metric, scale, total metric). Scale 8 turns bytes into bits.
_COLUMNS = (
    (0, "net_in", 8.0, "net_receive_bytes_total"),
    (1, "net_in_packets", 1.0, "net_receive_packets_total"),
    (2, "net_in_errors", 1.0, "net_receive_errors_total"),
    (3, "net_in_drops", 1.0, "net_receive_drops_total"),
    (8, "net_out", 8.0, "net_transmit_bytes_total"),
    (9, "net_out_packets", 1.0, "net_transmit_packets_total"),
    (10, "net_out_errors", 1.0, "net_transmit_errors_total"),
    (11, "net_out_drops", 1.0, "net_transmit_drops_total"),
)


# /proc/net/dev columns by the kernel's names (struct rtnl_link_stats64, as
# net/core/net-procfs.c prints them), for `batch.counters` as `netdev.<iface>.<name>`.
# Some columns are sums in the kernel (errs + drops folded in); the name is of the first.
NETDEV_FIELDS = (
    "rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "rx_fifo_errors", "rx_frame_errors",
    "rx_compressed", "multicast",
    "tx_bytes", "tx_packets", "tx_errors", "tx_dropped", "tx_fifo_errors", "collisions",
    "tx_carrier_errors", "tx_compressed",
)
netdev_keys = CounterNames("netdev", NETDEV_FIELDS)


def is_private(address: str) -> bool:
    """True for an address in the private ranges of the spec (RFC 1918/6598, link-local, ULA, loopback)."""
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in _PRIVATE_NETS)


def read_dev(roots: Roots) -> dict[str, list[int]]:
    """/proc/net/dev as {interface: its 16 counters}; the two header lines dropped."""
    out: dict[str, list[int]] = {}
    for line in read_text(roots.proc / "net" / "dev").splitlines()[2:]:
        # A large counter can touch the colon ("eth0:123456"), so split on it, not on spaces.
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 16:
            out[name.strip()] = [int(v) for v in fields[:16]]
    return out


def route_ipv4(hex_value: str) -> int:
    # /proc/net/route prints the network-order address as a host-order integer.
    return int.from_bytes(int(hex_value, 16).to_bytes(4, sys.byteorder), "big")


def _ipv4_addresses(roots: Roots) -> dict[str, set[str]]:
    """Local IPv4 addresses by interface.

    fib_trie lists every local address as a `/32 host LOCAL` leaf but not its device;
    the main table in /proc/net/route does. An address goes to the interface of the
    longest route prefix that holds it, so a /32 with no prefix route of its own (common
    at hosters) lands on the interface of its default route.
    """
    try:
        trie = read_text(roots.proc / "net" / "fib_trie")
        route = read_text(roots.proc / "net" / "route")
    except OSError:
        return {}  # no IPv4 in this namespace
    local: set[str] = set()
    leaf = ""
    for line in trie.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            leaf = s[3:].strip()
        elif s.startswith("/32 host LOCAL") and leaf:
            local.add(leaf)
    routes: list[tuple[int, int, str]] = []
    for line in route.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8:
            mask = route_ipv4(f[7])
            routes.append((mask, route_ipv4(f[1]) & mask, f[0]))
    routes.sort(reverse=True)  # longest mask first
    out: dict[str, set[str]] = {}
    for addr in local:
        n = int(ipaddress.IPv4Address(addr))
        for mask, net, dev in routes:
            if n & mask == net:
                out.setdefault(dev, set()).add(addr)
                break
    return out


def _ipv6_addresses(roots: Roots) -> dict[str, set[str]]:
    try:
        text = read_text(roots.proc / "net" / "if_inet6")
    except OSError:
        return {}  # IPv6 disabled
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6:
            out.setdefault(f[5], set()).add(str(ipaddress.IPv6Address(int(f[0], 16))))
    return out


def interface_addresses(roots: Roots) -> dict[str, set[str]]:
    """Every address of every interface that the tree shows, IPv4 and IPv6."""
    out = _ipv4_addresses(roots)
    for dev, addrs in _ipv6_addresses(roots).items():
        out.setdefault(dev, set()).update(addrs)
    return out


class NetworkCollector:
    name = "network"
    sources = ('/proc/net/dev', '/proc/net/fib_trie', '/proc/net/route', '/proc/net/if_inet6', '/sys/class/net/*/speed')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        self.rates = Rates()
        self.scopes: dict[str, str] = {}
        self.speeds: dict[str, float] = {}  # bit/s, known speeds only
        self._refreshed_at: float | None = None

    def refresh(self, interfaces: list[str]) -> None:
        """Re-read addresses and link speeds of `interfaces`."""
        addrs = interface_addresses(self.roots)
        pins = self.settings.interface_scopes
        self.scopes = {}
        self.speeds = {}
        for dev in interfaces:
            if dev in pins:
                self.scopes[dev] = pins[dev]
            else:
                public = any(not is_private(a) for a in addrs.get(dev, ()))
                self.scopes[dev] = "public" if public else "private"
            # -1 (no link, virtio), 0 and EINVAL (interface down) all mean unknown.
            mbps = read_int(self.roots.sys / "class" / "net" / dev / "speed")
            if mbps is not None and mbps > 0:
                self.speeds[dev] = mbps * 1e6

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        dev = read_dev(self.roots)
        if self.settings.raw_counters:
            counters = batch.counters
            for iface, values in dev.items():
                counters.update(zip(netdev_keys(iface), values))
        dev.pop("lo", None)
        last = self._refreshed_at
        if last is None or now - last >= SCOPE_REFRESH_S or now < last:
            self.refresh(list(dev))
            self._refreshed_at = now

        # scope -> [in, out, in over known-speed links, out over known-speed links, speed]
        sums: dict[str, list[float]] = {}
        delta = self.rates.delta
        net = str(self.roots.sys / "class" / "net")
        for iface, counters in dev.items():
            for col, metric, scale, total in _COLUMNS:
                batch.add_total(total, counters[col], interface=iface)
            # The byte counters are stored too (issue 20), not only shown on /metrics: the
            # query API answers them, and an agent pushes them like any sample.
            batch.add("net_receive_bytes_total", counters[0], interface=iface)
            batch.add("net_transmit_bytes_total", counters[8], interface=iface)
            scope = self.scopes.get(iface)
            # An interface born since the last refresh has no known scope yet: keep its
            # baseline but give no sample rather than one under a wrong scope label.
            elapsed = self.rates.elapsed((iface, 0), now)  # one reading time for all its columns
            deltas = [delta((iface, col), counters[col], now) for col, _, _, _ in _COLUMNS]
            values = [None if d is None or not elapsed else d / elapsed for d in deltas]
            _link(batch, f"{net}/{iface}/", iface)
            if scope is None:
                continue
            for (_, metric, scale, _), v in zip(_COLUMNS, values):
                if v is not None:
                    batch.add(metric, v * scale, interface=iface, scope=scope)
            # Bytes per interval, not rate x interval: after a missed cycle the delta still
            # holds every byte, so a sum over any period is the volume the kernel counted.
            batch.add("net_in_bytes", deltas[0], interface=iface, scope=scope)
            batch.add("net_out_bytes", deltas[4], interface=iface, scope=scope)
            speed = self.speeds.get(iface)
            if speed is not None:
                batch.add("net_link_speed", speed, interface=iface)
            bytes_in, bytes_out = values[0], values[4]
            if bytes_in is None or bytes_out is None:
                continue
            s = sums.setdefault(scope, [0.0, 0.0, 0.0, 0.0, 0.0])
            s[0] += bytes_in * 8
            s[1] += bytes_out * 8
            if speed is not None:
                s[2] += bytes_in * 8
                s[3] += bytes_out * 8
                s[4] += speed
        if len(self.rates) > len(dev) * len(_COLUMNS):
            self.rates.sweep(now)  # an interface went away (veth churn): drop its baselines
        for scope, (b_in, b_out, k_in, k_out, speed) in sums.items():
            cap = self.settings.bandwidth_caps.get(scope)
            batch.add("bandwidth_usage_in", _usage(b_in, k_in, cap.inbound if cap else None, speed), scope=scope)
            batch.add("bandwidth_usage_out", _usage(b_out, k_out, cap.outbound if cap else None, speed), scope=scope)
        return batch


def _link(batch: Batch, path: str, iface: str) -> None:
    """Operational state and carrier, read every cycle unlike addresses and speed: a link
    that goes down must show within one interval, not at the next refresh."""
    try:
        oper = read_bytes(path + "operstate").strip()
    except OSError:
        return  # a tree without it (an old capture): no reading rather than a guess
    if oper == b"up":  # the kernel sets up only with a carrier: spare the second read
        batch.add("net_up", 1.0, interface=iface)
        batch.add("net_carrier", 1.0, interface=iface)
        return
    try:
        carrier: float | None = float(read_bytes(path + "carrier").strip())
    except (OSError, ValueError):
        carrier = None  # EINVAL while the interface is administratively down
    # lo, tun and many virtual devices report "unknown" while passing traffic.
    batch.add("net_up", 1.0 if oper == b"unknown" and carrier == 1.0 else 0.0, interface=iface)
    batch.add("net_carrier", carrier, interface=iface)


def _usage(bits: float, known_bits: float, cap: float | None, speed: float) -> float | None:
    """Percent of the cap (all the scope's traffic), else of the summed link speed.

    Against link speed only the traffic of links with a known speed counts: traffic on a
    link of unknown capacity (a bridge, an ifb mirror) cannot be set against another's.
    """
    if cap:
        return bits / cap * 100.0
    if speed > 0:
        return known_bits / speed * 100.0
    return None
