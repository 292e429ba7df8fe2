"""The facts snapshot: what the access checks read to answer "can someone reach this host?".

Taken every few minutes, not every cycle: it scans processes and their open files. Each
part is read on its own; one that cannot be read carries an "error" and the rest are
still taken. The list-valued parts (interfaces, dhcp_clients, listening) cannot hold an
error themselves, so their errors go in the top-level "errors" map, keyed by part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

# Imported under other names so that `collectors.facts.firewall` etc. stay the modules.
from collectors.facts.firewall import firewall as _firewall
from collectors.facts.interfaces import interfaces as _interfaces
from collectors.facts.listening import listening as _listening
from collectors.base import Stalled
from collectors.facts.processes import Proc, cmdline, scan
from collectors.facts.routes import routes as _routes
from collectors.facts.sshd import sshd_facts
from collectors.systemd import facts as _systemd
from collectors.roots import Roots

# What the snapshot reads (the reference table in the README lists it beside the collectors).
SOURCES = ("/proc/<pid>/comm and cmdline (sshd, DHCP clients)", "/proc/<pid>/fd (owners of listening sockets)",
           "/etc/ssh/sshd_config and its host keys", "/sys/class/net, /proc/net/fib_trie, route, if_inet6, ipv6_route",
           "/proc/net/tcp, tcp6, udp, udp6 (listening sockets)", "`iptables-save`, `ip6tables-save`, `nft -j list ruleset`",
           "`systemctl` and `journalctl` (the failed and restarting units, their last lines)")

# Programs that keep a lease alive, by the name the kernel shows (15 characters at most).
DHCP_CLIENTS = {"dhclient": "dhclient", "dhcpcd": "dhcpcd", "udhcpc": "udhcpc",
                "systemd-network": "systemd-networkd", "NetworkManager": "NetworkManager",
                "wickedd-dhcp4": "wicked", "wickedd-dhcp6": "wicked"}

__all__ = ["snapshot", "Snapshots", "FactsTimeout", "DHCP_CLIENTS"]

# Netlink, iptables-save/nft (5 s each at most) and /proc/<pid> reads of a process stuck
# in its memory lock can all hang; an answer later than this is no longer "now".
DEADLINE_S = 10.0


class FactsTimeout(TimeoutError):
    pass


class Snapshots:
    """Takes snapshots on a daemon thread, waiting at most `deadline` for each.

    One at a time: a snapshot that is stuck is never stacked on. A caller that finds one
    running waits for it to end and then takes its own, since the one running began
    before the caller asked; all within its deadline, else FactsTimeout, and the stuck
    thread is left behind (a daemon: it does not hold the process at exit).
    """

    def __init__(self, deadline: float = DEADLINE_S) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._running: tuple[threading.Thread, float, dict] | None = None

    def take(self, roots: Roots, now: float | None, service_ports: Sequence[int] = ()) -> dict:
        end = time.monotonic() + self.deadline
        while True:
            with self._lock:
                running = self._running
                if running is None or not running[0].is_alive():
                    box: dict = {}
                    t = threading.Thread(target=self._take, args=(box, roots, now, service_ports),
                                         name="facts", daemon=True)
                    self._running = running = (t, time.time(), box)
                    t.start()
                    mine = True
                else:
                    mine = False
            running[0].join(max(0.0, end - time.monotonic()))
            if running[0].is_alive():
                raise FactsTimeout(f"the facts snapshot did not finish within {self.deadline:g} s (one has been "
                                   f"running since {time.strftime('%H:%M:%S', time.localtime(running[1]))})")
            if mine:
                if "error" in running[2]:
                    raise running[2]["error"]
                return running[2]["snap"]

    @staticmethod
    def _take(box: dict, roots: Roots, now: float | None, ports: Sequence[int]) -> None:
        try:
            box["snap"] = snapshot(roots, time.time() if now is None else now, ports)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            box["error"] = e


def _dhcp_clients(roots: Roots, procs: list[Proc], errors: dict[str, str]) -> list[dict]:
    out = []
    for p in procs:
        if p.comm not in DHCP_CLIENTS:
            continue
        try:
            line = cmdline(roots.proc, p.pid)
        except Stalled as e:  # the client is still listed: that it runs is the finding
            line = ""
            errors["dhcp_clients"] = str(e)
        out.append({"pid": p.pid, "name": DHCP_CLIENTS[p.comm], "cmdline": line})
    return out


def snapshot(roots: Roots, now: float, service_ports: Sequence[int] = ()) -> dict:
    """Everything the access checks read, JSON-serialisable (see the facts contract).

    The firewall is checked for `service_ports` and for the ports sshd listens on (or is
    configured for), each drop naming its port.
    """
    errors: dict[str, str] = {}
    try:
        procs = scan(roots.proc)
    except OSError as e:
        procs = []
        errors["processes"] = f"{roots.proc}: {e.strerror or e}"
    listen, err = _listening(roots.proc, procs)
    if err:
        errors["listening"] = err
    try:
        sshd = sshd_facts(roots, procs, listen)
    except Exception as e:  # keep the rest of the snapshot whatever breaks here
        sshd = {"installed": None, "error": f"{type(e).__name__}: {e}"}
    ifaces, err = _interfaces(roots)
    if err:
        errors["interfaces"] = err
    ports = sorted(set(service_ports) | set(sshd.get("ports") or []))
    try:
        fw = _firewall(roots, ports)
    except Exception as e:
        fw = {"tool": None, "rules_checked": 0, "drops": [], "error": f"{type(e).__name__}: {e}"}
    if "processes" in errors:
        errors["dhcp_clients"] = errors["processes"]
    dhcp = _dhcp_clients(roots, procs, errors)
    try:
        units = _systemd(roots)
    except Exception as e:  # keep the rest of the snapshot whatever breaks here
        units = {"present": None, "error": f"{type(e).__name__}: {e}"}
    return {
        "taken_at": now,
        "sshd": sshd,
        "interfaces": ifaces,
        "dhcp_clients": dhcp,
        "routes": _routes(roots),
        "firewall": fw,
        "listening": listen,
        "systemd": units,
        "errors": errors,
    }
