"""Kernel network drop counters: /proc/net/snmp, snmp6, netstat and softnet_stat.

Every raw value goes into `batch.counters` by the kernel's own name (`TcpExt.ListenOverflows`,
`Udp6.RcvbufErrors`, `softnet.dropped`), so a user can check them against nstat; the few
that mean "the kernel dropped something" also become per-interval deltas.

The four files are read apart: one that cannot be read costs only the counters in it.
"""

from __future__ import annotations

import logging

from collectors.base import Parts, Rates, read_bytes, read_header_pairs
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

# snmp6 is `Udp6RcvbufErrors 0`: split the prefix off so the name matches snmp's `Udp.RcvbufErrors`.
_SNMP6_PREFIXES = ("UdpLite6", "Icmp6", "Udp6", "Ip6")

# delta metric -> the kernel counters it sums
_DELTAS = (
    ("tcp_listen_overflows", ("TcpExt.ListenOverflows",)),
    ("tcp_listen_drops", ("TcpExt.ListenDrops",)),
    ("udp_rcvbuf_errors", ("Udp.RcvbufErrors", "Udp6.RcvbufErrors")),
    ("udp_sndbuf_errors", ("Udp.SndbufErrors", "Udp6.SndbufErrors")),
    ("softnet_dropped", ("softnet.dropped",)),
)


_snmp6_names: dict[str, str] = {}  # kernel's flat name -> dotted name; a fixed, small set


def _dotted(key: str) -> str:
    for p in _SNMP6_PREFIXES:
        if key.startswith(p):
            return f"{p}.{key[len(p):]}"
    return key


def read_snmp6(text: str | bytes) -> dict[str, float]:
    """`Udp6RcvbufErrors 0` lines as {"Udp6.RcvbufErrors": 0.0}."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    names = _snmp6_names
    words = text.split()
    keys = words[::2]
    for key in keys:
        if key not in names:
            names[key] = _dotted(key)
    # float() over the value column in C: ~100 lines, every cycle.
    return dict(zip(map(names.__getitem__, keys), map(float, words[1::2])))


def softnet_dropped(text: str | bytes) -> int:
    """Sum over CPUs of the second column (hex): packets dropped for a full backlog."""
    return sum(int(f[1], 16) for f in (line.split() for line in text.splitlines()) if len(f) > 1)


class NetCountersCollector:
    name = "netcounters"
    sources = ('/proc/net/snmp', '/proc/net/snmp6', '/proc/net/netstat', '/proc/net/softnet_stat')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        self.rates = Rates()
        self.parts = Parts(log)

    @staticmethod
    def _snmp6(path: str) -> dict[str, float]:
        try:
            return read_snmp6(read_bytes(path))
        except FileNotFoundError:
            return {}  # booted with ipv6.disable=1: the Udp6 readings are missing, not zero

    @staticmethod
    def _softnet(path: str) -> dict[str, float]:
        return {"softnet.dropped": float(softnet_dropped(read_bytes(path)))}

    _PARTS = (("net/snmp", read_header_pairs), ("net/netstat", read_header_pairs),
              ("net/snmp6", _snmp6), ("net/softnet_stat", _softnet))

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        proc = self.roots.proc  # strings, not Path joins: cheaper per cycle
        counters = batch.counters
        for part, read in self._PARTS:
            path = f"{proc}/{part}"
            try:
                counters.update(read(path))
            except Exception as e:  # noqa: BLE001 - one file's failure leaves the others
                self.parts.failed(batch, part, path, e)

        for metric, keys in _DELTAS:
            if keys[0] not in counters:
                continue  # its file failed: Udp6's count alone would read as fewer drops
            parts = [self.rates.delta(k, counters[k], now) for k in keys if k in counters]
            if None not in parts:
                batch.add(metric, sum(parts))  # type: ignore[arg-type]

        get = counters.get
        batch.add_total("tcp_listen_overflows_total", get("TcpExt.ListenOverflows"))
        batch.add_total("tcp_listen_drops_total", get("TcpExt.ListenDrops"))
        batch.add_total("udp_rcvbuf_errors_total", get("Udp.RcvbufErrors"), proto="udp")
        batch.add_total("udp_rcvbuf_errors_total", get("Udp6.RcvbufErrors"), proto="udp6")
        batch.add_total("udp_sndbuf_errors_total", get("Udp.SndbufErrors"), proto="udp")
        batch.add_total("udp_sndbuf_errors_total", get("Udp6.SndbufErrors"), proto="udp6")
        batch.add_total("softnet_dropped_total", get("softnet.dropped"))
        return batch
