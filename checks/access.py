"""Access checks: can the machine be reached and logged into? SSH daemon, its files, root
login, interface configuration, default route, firewall drops, listeners, load now.

They read the facts snapshot (collectors/facts) and say how old it is. The items and
advice follow the seeds' network-connectivity diagnosis (Alibaba ECS 1.2.2: SSH service
started and its port, key files, root login, DHCP, netmask, iptables, routes, port
listener, CPU 80 %, bandwidth 90 %) and "无法通过 SSH 方式登录" (Tencent CVM).
"""

from __future__ import annotations

from typing import Any, Callable

from checks.base import Check, CheckContext, CheckResult, level_status
from checks.windows import fmt_duration, thresholds

NO_FACTS = "no facts snapshot yet"
_LOOPBACK = ("127.", "::1")


def _with_facts(part: str | None, fn: Callable[[CheckContext, Check, dict, dict], CheckResult]) -> Callable:
    """Evaluate fn(ctx, check, facts, evidence) with the snapshot's age in the evidence;
    unknown without a snapshot or when the part could not be read."""
    def evaluate(ctx: CheckContext, check: Check) -> CheckResult:
        facts = ctx.facts()
        if facts is None:
            return CheckResult("unknown", NO_FACTS, {})
        age = ctx.facts_age()
        ev: dict[str, Any] = {"facts_age_seconds": None if age is None else round(float(age), 3),
                              "facts_taken_at": facts.get("taken_at")}
        if part is not None:
            got = facts.get(part)
            if got is None:
                return CheckResult("unknown", f"the facts snapshot has no {part} part", ev)
            if isinstance(got, dict) and got.get("error"):
                return CheckResult("unknown", f"could not read {part}: {got['error']}", {**ev, "error": got["error"]})
        result = fn(ctx, check, facts, ev)
        if age is not None and result.status not in ("unknown", "not_applicable"):
            result = CheckResult(result.status, f"{result.message} (facts {fmt_duration(float(age))} old)",
                                 result.evidence, result.recommendation)
        return result
    return evaluate


def _sshd(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    s = facts["sshd"]
    ev.update({k: s.get(k) for k in ("installed", "binary", "running", "pids", "ports", "socket_activated",
                                      "config_path")})
    if not s.get("installed"):
        return CheckResult("not_applicable", "no SSH server installed", ev)
    ports = ", ".join(str(p) for p in s.get("ports") or []) or "no port found"
    if s.get("running"):
        return CheckResult("ok", f"sshd is running (pid {', '.join(str(p) for p in s.get('pids') or [])}) "
                                 f"on port {ports}", ev)
    if s.get("socket_activated"):
        # ssh.socket: no sshd until a client connects, and that is how it is meant to be.
        return CheckResult("ok", f"sshd is started on demand: systemd holds port {ports} (socket activation, "
                                 f"ssh.socket) and starts sshd for each connection", ev)
    return CheckResult(level_status(check, True, True), "sshd is installed but not running", ev,
                       "Start it and check why it stopped: `systemctl status sshd` (or ssh on Debian/Ubuntu), "
                       "`journalctl -u sshd -n 50`, and `sshd -t` for configuration errors; then `systemctl start "
                       "sshd` and `systemctl enable sshd`. Log in through the console or VNC to do this.")


def _ssh_files(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    s = facts["sshd"]
    if not s.get("installed"):
        return CheckResult("not_applicable", "no SSH server installed", ev)
    missing: list[str] = []
    if not s.get("config_exists"):
        missing.append(f"config {s.get('config_path') or '/etc/ssh/sshd_config'}")
    keys = s.get("host_keys") or []
    explicit = bool((s.get("settings") or {}).get("hostkey"))
    absent = [k["path"] for k in keys if not k.get("exists")]
    # Without HostKey lines sshd loads whichever of the default keys exist; one is enough.
    if explicit or len(absent) == len(keys):
        missing += [f"host key {p}" for p in absent]
    priv = s.get("privsep_dir") or {}
    # /run/sshd is created by the service unit at start: absent while sshd is stopped is normal.
    path = str(priv.get("path") or "")
    if priv and not priv.get("exists") and not (path.startswith(("/run/", "/var/run/")) and not s.get("running")):
        missing.append(f"privilege-separation directory {path}")
    ev.update({"missing": missing, "host_keys": keys, "default_keys_absent": [] if explicit else absent,
               "privsep_dir": priv, "config_files": s.get("config_files")})
    if not missing:
        return CheckResult("ok", "sshd config, host keys and privilege-separation directory are present", ev)
    rec = ("Restore what is missing, then test with `sshd -t` and restart sshd: regenerate host keys with "
           "`ssh-keygen -A`; recreate the privilege-separation directory (`mkdir -p <dir> && chmod 755 <dir>`, owned "
           "by root); reinstall the config from the package (`apt-get install --reinstall openssh-server` or "
           "`yum reinstall openssh-server`). Use the console or VNC if SSH is down.")
    return CheckResult(level_status(check, True, True), "missing: " + "; ".join(missing), ev, rec)


_ROOT = {
    "yes": "root may log in with a password or a key",
    "prohibit-password": "root may log in with a key only",
    "without-password": "root may log in with a key only",
    "forced-commands-only": "root may log in with a key only, for forced commands",
    "no": "root may not log in over SSH",
}


def _root_login(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    s = facts["sshd"]
    if not s.get("installed"):
        return CheckResult("not_applicable", "no SSH server installed", ev)
    value = (s.get("settings") or {}).get("permitrootlogin")
    shown = str(value or "prohibit-password")
    ev.update({"permitrootlogin": value, "effective": shown, "config_files": s.get("config_files")})
    default = "" if value else " (OpenSSH default)"
    rec = {"no": "If root must log in, set `PermitRootLogin prohibit-password` in the first config file that sets it "
                 "and reload sshd; otherwise log in as a user and use sudo.",
           "yes": "Prefer keys for root: `PermitRootLogin prohibit-password`, then `systemctl reload sshd`."}
    return CheckResult("ok", f"PermitRootLogin {shown}{default}: {_ROOT.get(shown, 'custom setting')}", ev,
                       rec.get(shown, ""))


def _nic_config(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    ifaces = [i for i in facts["interfaces"] if not i.get("loopback")]
    usable, dynamic = [], []
    for i in ifaces:
        addrs = [a for a in i.get("addresses") or []
                 if a.get("prefixlen") is not None and not str(a.get("address", "")).lower().startswith("fe80")]
        if i.get("up") and addrs:
            usable.append({"name": i.get("name"), "addresses": [f"{a['address']}/{a['prefixlen']}" for a in addrs]})
        dynamic += [f"{a['address']} ({i.get('name')})" for a in addrs if a.get("dynamic") and a.get("family") == "inet"]
    clients = facts.get("dhcp_clients") or []
    ev.update({"usable": usable, "dynamic_ipv4": dynamic, "dhcp_clients": clients,
               "interfaces": [{"name": i.get("name"), "up": i.get("up")} for i in ifaces]})
    if not usable:
        return CheckResult(level_status(check, True, True), "no interface is up with an address and netmask", ev,
                           "From the console, bring the interface up and give it an address (`ip link set <if> up`, "
                           "`ip addr`, your distribution's netplan/ifcfg/NetworkManager config), or start the DHCP "
                           "client (`dhclient -v <if>`).")
    if dynamic and not clients:
        return CheckResult(level_status(check, True, True),
                           f"address(es) {', '.join(dynamic)} came from DHCP but no DHCP client is running: the lease "
                           f"will expire", ev,
                           "Start the DHCP client the distribution uses (systemd-networkd, NetworkManager, or "
                           "`dhclient -v <if>`) or configure the address statically.")
    return CheckResult("ok", "up with addresses: " + "; ".join(f"{u['name']} {', '.join(u['addresses'])}"
                                                               for u in usable), ev)


def _default_route(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    r = facts["routes"]
    v4, v6 = r.get("default_v4") or [], r.get("default_v6") or []
    ev.update({"default_v4": v4, "default_v6": v6})
    if v4 or v6:
        shown = ", ".join(f"via {x.get('gateway') or 'direct'} dev {x.get('interface')}" for x in v4 + v6)
        return CheckResult("ok", f"default route {shown}", ev)
    return CheckResult(level_status(check, True, True), "no default route: only directly connected networks are "
                                                         "reachable", ev,
                       "Add the gateway: `ip route add default via <gateway> dev <if>` now, and in the network "
                       "config (netplan, ifcfg GATEWAY=, NetworkManager) so it survives a reboot; a DHCP lease "
                       "usually provides it.")


def _ports(ctx: CheckContext, facts: dict) -> tuple[list[int], list[str]]:
    """Service ports plus sshd's; without an SSH server the default 22 is no service."""
    s = facts.get("sshd") or {}
    ports, notes = [int(p) for p in ctx.service_ports], []
    if not s.get("installed") and 22 in ports:
        ports.remove(22)
        notes.append("port 22 skipped: no SSH server installed")
    ports += [int(p) for p in s.get("ports") or [] if s.get("installed")]
    return sorted(set(ports)), notes


def _firewall(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    fw = facts["firewall"]
    ports, _ = _ports(ctx, facts)
    drops = [d for d in fw.get("drops") or [] if not ports or d.get("port") in ports or d.get("port") is None]
    ev.update({"tool": fw.get("tool"), "rules_checked": fw.get("rules_checked"), "ports": ports, "drops": drops})
    if not fw.get("tool"):
        return CheckResult("ok", "no iptables/nft rules found", ev)
    if not drops:
        return CheckResult("ok", f"{fw.get('rules_checked', 0)} {fw['tool']} rule(s) checked; none drops "
                                 f"port(s) {', '.join(map(str, ports)) or '(none configured)'}", ev)
    names = "; ".join(f"{d.get('rule')} ({d.get('proto', '')} {d.get('port')})" for d in drops)
    return CheckResult(level_status(check, True, True), f"firewall rule(s) drop service ports: {names}", ev,
                       f"Remove or narrow the rule if the port must be reachable: for iptables `iptables -D "
                       f"{drops[0].get('chain', 'INPUT')} <rule spec>` (list with `iptables -S`), for nftables "
                       f"`nft -a list ruleset` then `nft delete rule <family> <table> <chain> handle <n>`; make it "
                       f"permanent in the saved rules or firewalld/ufw config.")


def _port_listening(ctx: CheckContext, check: Check, facts: dict, ev: dict) -> CheckResult:
    ports, notes = _ports(ctx, facts)
    ev.update({"ports": ports, "notes": notes})
    if not ports:
        return CheckResult("not_applicable", "no service ports configured" + (f" ({notes[0]})" if notes else ""), ev)
    listening = facts.get("listening") or []
    found: dict[int, list[dict]] = {p: [x for x in listening if x.get("port") == p] for p in ports}
    missing = [p for p, ls in found.items() if not ls]
    local = [p for p, ls in found.items() if ls and all(str(x.get("address", "")).startswith(_LOOPBACK) for x in ls)]
    ev.update({"listeners": {str(p): ls for p, ls in found.items()}, "missing": missing, "loopback_only": local})
    if missing:
        return CheckResult(level_status(check, True, True), f"no listener on port(s) {', '.join(map(str, missing))}",
                           ev, "Start the service that should listen (`systemctl status <service>`; for SSH see "
                               "access.sshd) and check its configured port and bind address with `ss -tlnp`.")
    if local:
        return CheckResult("warning", f"port(s) {', '.join(map(str, local))} listen on loopback only", ev,
                           "Bind the service to 0.0.0.0/:: or the public interface if it must be reachable.")
    shown = ", ".join(f"{p} ({found[p][0].get('process') or '?'})" for p in ports)
    return CheckResult("ok", f"listening: {shown}", ev)


def _cpu_now(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    lat = ctx.latest("cpu_usage")
    if lat.empty:
        return CheckResult("unknown", "no cpu_usage sample", {"thresholds": th})
    row = lat.sort_values("ts").iloc[-1]
    age = float(ctx.end) - float(row["ts"])
    if age > th["max_age_seconds"]:
        return CheckResult("unknown", f"no recent cpu_usage sample (the last is {fmt_duration(age)} old)", {"thresholds": th})
    v = float(row["value"])
    procs = list((ctx.top_processes() or {}).get("by_cpu") or [])
    ev = {"thresholds": th, "value": round(v, 3), "ts": float(row["ts"]), "top_processes": procs}
    if v < th["percent"]:
        return CheckResult("ok", f"CPU {v:.1f} % now", ev)
    lead = f" ({procs[0].get('name')} pid {procs[0].get('pid')} leads)" if procs else ""
    return CheckResult(level_status(check, True, True), f"CPU {v:.1f} % now{lead}", ev,
                       "A loaded CPU makes logins slow or time out: find the process with `top -c` and stop, "
                       "throttle or move it (see performance.cpu).")


def _bandwidth_now(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    rows = []
    for d in ("in", "out"):
        lat = ctx.latest(f"bandwidth_usage_{d}")
        for r in lat.itertuples(index=False):
            if float(ctx.end) - float(r.ts) <= th["max_age_seconds"]:
                rows.append({"direction": d, "scope": str(getattr(r, "scope", "") or ""), "value": round(float(r.value), 3),
                             "ts": float(r.ts)})
    if not rows:
        return CheckResult("not_applicable", "no bandwidth cap configured and no link speed known "
                                             "(no recent bandwidth_usage_* sample)", {"thresholds": th})
    over = [r for r in rows if r["value"] >= th["percent"]]
    ev = {"thresholds": th, "usage": rows}
    if not over:
        return CheckResult("ok", "bandwidth now: " + ", ".join(f"{r['scope']} {r['direction']} {r['value']:.0f} %"
                                                                for r in rows), ev)
    return CheckResult(level_status(check, True, True), "bandwidth at its cap now: " + ", ".join(
        f"{r['scope']} {r['direction']} {r['value']:.0f} %" for r in over), ev,
        "A full link drops or delays SSH too: find the traffic with `iftop` and the process with `lsof -i` "
        "(see network.bandwidth).")


CHECKS: tuple[Check, ...] = (
    Check("access.sshd", "access", "SSH daemon", "critical",
          "The SSH daemon is running, and on which port.",
          "Start sshd from the console and check its configuration with `sshd -t`.",
          _with_facts("sshd", _sshd)),
    Check("access.ssh_files", "access", "SSH files", "critical",
          "sshd config, host keys and privilege-separation directory are present.",
          "Regenerate host keys with `ssh-keygen -A` and restore the config.",
          _with_facts("sshd", _ssh_files)),
    Check("access.root_login", "access", "Root login over SSH", "non_critical",
          "The PermitRootLogin setting (reported).",
          "Set PermitRootLogin to what your access policy needs.",
          _with_facts("sshd", _root_login)),
    Check("access.nic_config", "access", "Interface configuration", "critical",
          "An interface up with an address and netmask; a DHCP client alive where addresses are dynamic.",
          "Bring an interface up with an address, or start the DHCP client.",
          _with_facts("interfaces", _nic_config)),
    Check("access.default_route", "access", "Default route", "critical",
          "A default route exists.",
          "Add a default route through the gateway.",
          _with_facts("routes", _default_route)),
    Check("access.firewall", "access", "Firewall drops", "critical",
          "iptables/nftables rules that drop the service ports.",
          "Remove the rule that drops the service port.",
          _with_facts("firewall", _firewall)),
    Check("access.port_listening", "access", "Service port listeners", "critical",
          "Each configured service port (and sshd's) has a listener.",
          "Start the service that should listen on the port.",
          _with_facts("listening", _port_listening)),
    Check("access.cpu_load_now", "access", "CPU now", "non_critical",
          "CPU usage at the latest sample.",
          "Find the busy process with `top -c`.",
          _cpu_now, thresholds={"percent": 80, "max_age_seconds": 300}),
    Check("access.bandwidth_now", "access", "Bandwidth now", "non_critical",
          "Bandwidth usage against the cap at the latest sample.",
          "Find the traffic with iftop.",
          _bandwidth_now, thresholds={"percent": 90, "max_age_seconds": 300}),
)
