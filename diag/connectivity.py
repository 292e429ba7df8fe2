"""Connectivity diagnosis between a source instance and a destination (an instance or an
address), walked like the seed's network path diagnosis: the source's interface and route,
the source's outbound rules, the destination's inbound rules, its listener, then a real probe.

Each step is {step, verdict, message, evidence}; verdicts are ok, problem, unknown and
not_applicable. The static steps read facts snapshots (the local instance's live where it
is cheap to); the probe runs from this server when the source is the local instance, and
on the agent through the remote-command channel (diag/remote_probe.py) when it is an agent.
Whatever cannot be read says `unknown` with the reason: nothing is guessed.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from collectors.facts import firewall as fw_mod
from collectors.facts import iptables_rules
from collectors.facts.listening import read_sockets
from collectors.roots import Roots
from diag import probe as probe_mod

if TYPE_CHECKING:
    from diag.commands.engine import Commands

VERDICTS = ("ok", "problem", "unknown", "not_applicable")
OVERALL = ("reachable", "unreachable", "unknown")
PROTOCOLS = ("tcp", "udp", "icmp")
STEPS = ("source_route", "source_firewall", "destination_firewall", "destination_listener", "probe")
DEFAULT_TIMEOUT_S = 2.0
# Reading the firewall runs up to three tools of 5 s each; the answer may not wait that long.
FIREWALL_WAIT_S = 4.0


def step(name: str, verdict: str, message: str, evidence: Any = None) -> dict:
    return {"step": name, "verdict": verdict, "message": message, "evidence": evidence}


# -- 1. the source's interface and route ----------------------------------------------------

def route_step(facts: dict | None, dest: str, source_id: str) -> dict:
    """Longest-prefix match of `dest` over the source's connected networks (its interfaces'
    addresses and prefixes), else its default route of that family."""
    name = "source_route"
    if facts is None:
        return step(name, "unknown", f"no facts snapshot of {source_id} is held")
    ip = ipaddress.ip_address(dest)
    ifaces = facts.get("interfaces") or []
    fam = "inet6" if ip.version == 6 else "inet"
    best: tuple[int, dict, dict] | None = None
    for iface in ifaces:
        for a in iface.get("addresses") or []:
            if a.get("family") != fam:
                continue
            try:
                addr = ipaddress.ip_address(a["address"])
                net = ipaddress.ip_network(f"{a['address']}/{a['prefixlen']}", strict=False)
            except (KeyError, ValueError):
                continue
            if addr == ip:  # one of the source's own addresses: delivered locally
                return _via(name, iface, f"{dest} is an address of {source_id} itself, on {iface['name']}",
                            {"interface": iface["name"], "local_address": True})
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, iface, a)
    if ip.is_loopback:
        lo = next((i for i in ifaces if i.get("loopback")), None)
        if lo is not None:
            return _via(name, lo, f"{dest} is a loopback address, on {lo['name']}", {"interface": lo["name"]})
    if best is not None:
        plen, iface, a = best
        net = ipaddress.ip_network(f"{a['address']}/{plen}", strict=False)
        return _via(name, iface, f"{dest} is in the connected network {net} of {iface['name']} ({a['address']})",
                    {"interface": iface["name"], "source_address": a["address"], "prefixlen": plen, "gateway": None})
    routes = facts.get("routes") or {}
    defaults = sorted(routes.get("default_v6" if ip.version == 6 else "default_v4") or [],
                      key=lambda r: r.get("metric") or 0)
    if defaults:
        r = defaults[0]
        iface = next((i for i in ifaces if i.get("name") == r.get("interface")), None)
        ev = {"interface": r.get("interface"), "gateway": r.get("gateway"), "metric": r.get("metric"),
              "default_route": True}
        via = f" via {r['gateway']}" if r.get("gateway") else ""
        msg = (f"no connected network holds {dest}: the default route{via} dev {r.get('interface')} "
               "(routes other than the default are not in the facts)")
        if iface is None:
            return step(name, "unknown", msg + f"; interface {r.get('interface')} is not in the snapshot", ev)
        return _via(name, iface, msg, ev)
    err = routes.get("error")
    return step(name, "problem", f"{source_id} has no connected network holding {dest} and no IPv{ip.version} "
                "default route" + (f" (routes could not all be read: {err})" if err else ""),
                {"interfaces": [i.get("name") for i in ifaces]})


def _via(name: str, iface: dict, message: str, evidence: dict) -> dict:
    evidence = {**evidence, "operstate": iface.get("operstate"), "up": iface.get("up")}
    if not iface.get("up"):
        return step(name, "problem", f"{message}, but {iface.get('name')} is down "
                    f"(operstate {iface.get('operstate')})", evidence)
    return step(name, "ok", message, evidence)


# -- 2 and 3. firewall rules ----------------------------------------------------------------

def _family_of(address: str) -> str:
    return "inet6" if ipaddress.ip_address(address).version == 6 else "inet"


def _for_packet(rule: iptables_rules.Rule, dest: str, out_iface: str | None) -> iptables_rules.Rule | None:
    """`rule` judged for its destination address and output interface, which the INPUT walk's
    matcher cannot know: None when either excludes our packet, else the rule without them
    (the rest is left to iptables_rules.matches). An -o with no known interface stays, and
    the matcher then counts the rule as not matching."""
    ip = ipaddress.ip_address(dest)
    toks, keep, i = rule.tokens, [], 0
    while i < len(toks):
        neg = toks[i] == "!"
        j = i + 1 if neg else i
        opt = toks[j] if j < len(toks) else ""
        arg = toks[j + 1] if j + 1 < len(toks) else ""
        if opt in ("-d", "--destination", "--dst"):
            try:
                hit = any(ip in ipaddress.ip_network(a, strict=False) for a in arg.split(","))
            except ValueError:
                return None
        elif opt in ("-o", "--out-interface") and out_iface is not None:
            hit = arg == out_iface or (arg.endswith("+") and out_iface.startswith(arg[:-1]))
        else:
            keep.append(toks[i])
            i += 1
            continue
        if hit == neg:
            return None
        i = j + 2
    return iptables_rules.Rule(rule.chain, rule.text, rule.target, rule.goto, keep)


def output_verdict(table: iptables_rules.Table, port: int, dest: str, out_iface: str | None) -> dict:
    """The OUTPUT chain's verdict for a new TCP connection to `dest` port `port` leaving by
    `out_iface`. The INPUT walk's rule matching is reused (--dport and -p read the same for
    an outgoing packet) once each rule is judged for the destination and interface."""
    judged = iptables_rules.Table(table.policies, {
        chain: [r2 for r in rules if (r2 := _for_packet(r, dest, out_iface)) is not None]
        for chain, rules in table.chains.items()})
    v = iptables_rules._walk(judged, "OUTPUT", port, 0)
    return {"tool": "iptables", "rules_checked": len(table.chains.get("OUTPUT", [])),
            "policy": table.policies.get("OUTPUT"), "verdict": v[0] if v else None,
            "rule": v[1].text if v else None}


def read_live_rules(roots, port: int, family: str, dest: str, out_iface: str | None = None) -> dict:
    """The local host's INPUT verdict for `port` (collectors/facts/firewall.py) and, from the
    same iptables-save text, its OUTPUT verdict for a new TCP connection to `port`."""
    out: dict = {"input": fw_mod.firewall(roots, [port]), "output": None, "output_error": None}
    if not roots.is_live:
        out["output_error"] = "firewall rules are read only on the live system"
        return out
    save = fw_mod._which("ip6tables-save" if family == "inet6" else "iptables-save")
    if save is None:
        out["output_error"] = "iptables-save is not installed"
        return out
    try:
        text = fw_mod._run([save])
    except Exception as e:  # noqa: BLE001 - reported as the step's reason
        out["output_error"] = str(e)
        return out
    table = iptables_rules.parse_save(text)
    if not any(table.chains.values()) and table.policies.get("OUTPUT", "ACCEPT") == "ACCEPT":
        # Nothing in iptables: rules may live in native nftables tables instead.
        nft = fw_mod._which("nft")
        hooks = []
        if nft is not None:
            try:
                doc = json.loads(fw_mod._run([nft, "-j", "list", "chains"]))
            except Exception as e:  # noqa: BLE001 - reported as the step's reason
                out["output_error"] = f"nft: {e}"
                return out
            hooks = [f"{c['family']} {c['table']} {c['name']}" for c in
                     (i.get("chain") for i in doc.get("nftables", []) if isinstance(i, dict))
                     if c and c.get("hook") == "output" and c.get("type", "filter") == "filter"
                     # iptables-nft keeps its own chains in ip/ip6 "filter": just read, empty.
                     and not (table.policies and c.get("table") == "filter" and c.get("family") in ("ip", "ip6"))]
        if hooks:
            out["output_error"] = f"nftables output chains ({', '.join(hooks)}) are not walked"
        else:
            out["output"] = {"tool": "nft" if nft else "iptables", "rules_checked": 0, "policy": None,
                             "verdict": None, "rule": None}
        return out
    out["output"] = output_verdict(table, port, dest, out_iface)
    return out


def source_firewall_step(protocol: str, port: int, local: bool, live: dict | None, family: str) -> dict:
    name = "source_firewall"
    if protocol != "tcp":
        return step(name, "unknown", f"outbound rules are read for TCP only, not for {protocol}")
    if not local:
        return step(name, "unknown", "an agent's facts do not hold its OUTPUT rules")
    if live is None:
        return step(name, "unknown", f"the firewall was not read within {FIREWALL_WAIT_S:g} s")
    if live.get("output") is None:
        return step(name, "unknown", f"outbound rules could not be read: {live.get('output_error')}")
    o = live["output"]
    ev = {"tool": "iptables", "family": family, **o}
    if o["rules_checked"] == 0 and o["policy"] is None:
        return step(name, "ok", f"no outbound filter rules at all ({o['tool']}): port {port} may leave", ev)
    if o["verdict"] == "drop":
        return step(name, "problem", f"the OUTPUT chain drops new TCP connections to port {port}: {o['rule']}", ev)
    if o["verdict"] is None and o["policy"] == "DROP":
        return step(name, "problem", f"no OUTPUT rule accepts port {port} and the OUTPUT policy is DROP", ev)
    why = f"accepted by {o['rule']}" if o["rule"] else f"no rule drops it (policy {o['policy'] or 'ACCEPT'})"
    return step(name, "ok", f"the OUTPUT chain lets new TCP connections to port {port} out: {why}", ev)


def destination_firewall_step(protocol: str, port: int, dest_id: str | None, facts: dict | None,
                              live: dict | None, family: str, local: bool) -> dict:
    name = "destination_firewall"
    if dest_id is None:
        return step(name, "not_applicable", "the destination is an address of no monitored instance: its rules "
                    "cannot be read")
    if protocol != "tcp":
        return step(name, "unknown", f"inbound rules are read for TCP only, not for {protocol}")
    if local:
        if live is None:
            return step(name, "unknown", f"the firewall was not read within {FIREWALL_WAIT_S:g} s")
        fw, source = live["input"], "read now"
    else:
        fw, source = (facts or {}).get("firewall"), "from its last facts snapshot"
        if fw is None:
            return step(name, "unknown", f"no facts snapshot of {dest_id} holds its firewall")
    if fw.get("error"):
        return step(name, "unknown", f"the rules of {dest_id} could not be read: {fw['error']}", fw)
    if fw.get("tool") is None:
        return step(name, "unknown", f"neither iptables nor nft is installed on {dest_id}", fw)
    drops = [d for d in fw.get("drops") or [] if d.get("port") == port and d.get("family") == family]
    ev = {"tool": fw.get("tool"), "rules_checked": fw.get("rules_checked"), "drops": drops, "source": source}
    if drops:
        d = drops[0]
        return step(name, "problem", f"{dest_id} drops new TCP connections to port {port} in {d['chain']}: "
                    f"{d['rule']}", ev)
    if not local:
        checked = set((facts or {}).get("sshd", {}).get("ports") or [])
        if port not in checked:
            return step(name, "unknown", f"the snapshot of {dest_id} judges its service and sshd ports only; "
                        f"it records no drop of port {port}, which may not have been checked", ev)
    return step(name, "ok", f"no {fw['tool']} rule of {dest_id} drops new TCP connections to port {port} "
                f"({fw.get('rules_checked')} rules read, {source})", ev)


# -- 4. the listener --------------------------------------------------------------------------

def listener_step(protocol: str, port: int, dest_id: str | None, dest: str, sockets: list[dict] | None,
                  error: str | None) -> dict:
    name = "destination_listener"
    if protocol == "icmp":
        return step(name, "not_applicable", "ICMP echo has no listener: the kernel answers it")
    if dest_id is None:
        return step(name, "not_applicable", "the destination is an address of no monitored instance: its "
                    "listeners are not known (the probe tells)")
    if sockets is None:
        return step(name, "unknown", f"the listening sockets of {dest_id} are not known" +
                    (f": {error}" if error else ""))
    ip = ipaddress.ip_address(dest)
    found = []
    for s in sockets:
        if s.get("proto") != protocol or s.get("port") != port:
            continue
        try:
            bound = ipaddress.ip_address(s["address"])
        except (KeyError, ValueError):
            continue
        mapped = getattr(ip, "ipv4_mapped", None)
        # An IPv6 wildcard takes IPv4 too unless bindv6only, which the snapshot does not say.
        if bound == ip or bound.is_unspecified and (bound.version == ip.version or bound.version == 6) \
                or (mapped is not None and bound == mapped):
            found.append(s)
    others = [s for s in sockets if s.get("proto") == protocol and s.get("port") == port and s not in found]
    if found:
        s = found[0]
        who = f" ({s['process']})" if s.get("process") else ""
        return step(name, "ok", f"{dest_id} listens on {protocol.upper()} {s['address']} port {port}{who}",
                    {"sockets": found})
    if others:
        return step(name, "problem", f"{dest_id} listens on {protocol.upper()} port {port} only on "
                    f"{', '.join(s['address'] for s in others)}, not on {dest}", {"sockets": others})
    return step(name, "problem", f"nothing listens on {protocol.upper()} port {port} of {dest_id}",
                {"sockets": []})


# -- 5. the probe -----------------------------------------------------------------------------

def probe_step(result: dict | None, reason: str | None = None) -> dict:
    if result is None:
        return step("probe", "unknown", reason or "the probe did not run")
    ev = {k: v for k, v in result.items() if k not in ("verdict", "message")}
    return step("probe", result["verdict"], result["message"], ev)


# -- the whole walk ---------------------------------------------------------------------------

def overall(steps: list[dict]) -> dict:
    """Reachable when the probe got through; unreachable when it did not, or when it could not
    tell and a static step found a problem; unknown otherwise. The first problem is named."""
    first = next((s for s in steps if s["verdict"] == "problem"), None)
    p = next(s for s in steps if s["step"] == "probe")
    if p["verdict"] == "ok":
        verdict = "reachable"
    elif p["verdict"] == "problem" or first is not None:
        verdict = "unreachable"
    else:
        verdict = "unknown"
    return {"verdict": verdict, "first_problem": None if first is None else
            {"step": first["step"], "message": first["message"]}}


class Host(Protocol):
    """What a walk needs: which instance this host is, its roots (read live), the last facts
    of the others, and remote commands to probe from an agent (None: off)."""

    local_id: str
    roots: Roots
    commands: Commands | None

    def facts_of(self, instance_id: str) -> tuple[dict | None, float | None]: ...


def diagnose(host: Host, source_id: str, dest_id: str | None, address: str | None, port: int, protocol: str,
             timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """The walk; `dest_id` xor `address`. Both instances must exist (the route checks)."""
    t0 = time.monotonic()
    local_src = source_id == host.local_id
    local_dst = dest_id is not None and dest_id == host.local_id
    src_facts = live_paths(host.roots) if local_src else host.facts_of(source_id)[0]
    dst_facts = None
    if dest_id is not None:
        # This host's listener and firewall are read live below; its facts only pick its address.
        if dest_id == source_id:
            dst_facts = None if local_dst else src_facts
        else:
            dst_facts = live_paths(host.roots) if local_dst else host.facts_of(dest_id)[0]
        address, why = destination_address(dest_id, dst_facts, src_facts, same=dest_id == source_id)
        if address is None:
            return _answer(source_id, dest_id, None, port, protocol, t0,
                           [step("destination_address", "unknown", why)])
    assert address is not None
    family = _family_of(address)
    live: dict = {}
    reader = None
    route = route_step(src_facts, address, source_id)
    out_iface = (route["evidence"] or {}).get("interface") if local_src else None
    if protocol == "tcp" and (local_src or local_dst):
        roots = host.roots
        reader = threading.Thread(
            target=lambda: live.setdefault("rules", read_live_rules(roots, port, family, address, out_iface)),
            name="connectivity-firewall", daemon=True)
        reader.start()
    # The probe runs meanwhile: both are bounded, and the answer waits for the longer only.
    if local_src:
        result, reason = probe_mod.probe(address, port, protocol, timeout), None
    elif host.commands is not None:
        from diag import remote_probe

        result, reason = remote_probe.run(host.commands, source_id, address, port, protocol, timeout)
    else:
        result = None
        reason = f"the probe runs from the source; {source_id} is an agent and remote commands are not enabled"
    if reader is not None:
        reader.join(FIREWALL_WAIT_S)
    rules = live.get("rules")
    sockets, sock_err = None, None
    if dest_id is not None:
        if local_dst:
            try:
                sockets, _, errs = read_sockets(host.roots.proc)
                sock_err = "; ".join(errs) or None
            except OSError as e:
                sock_err = str(e)
        elif dst_facts is not None:
            sockets = dst_facts.get("listening")
            sock_err = (dst_facts.get("errors") or {}).get("listening")
    steps = [
        route,
        source_firewall_step(protocol, port, local_src, rules, family),
        destination_firewall_step(protocol, port, dest_id, dst_facts, rules, family, local_dst),
        listener_step(protocol, port, dest_id, address, sockets, sock_err),
        probe_step(result, reason),
    ]
    return _answer(source_id, dest_id, address, port, protocol, t0, steps)


def live_paths(roots) -> dict:
    """This host's interfaces and routes as they are now (cheap /sys and /proc reads): the
    scheduled snapshot may be minutes old, and a link that just went down is the finding."""
    from collectors.facts.interfaces import interfaces
    from collectors.facts.routes import routes

    ifaces, err = interfaces(roots)
    return {"interfaces": ifaces, "routes": routes(roots), "errors": {"interfaces": err} if err else {}}


def destination_address(dest_id: str, facts: dict | None, src_facts: dict | None,
                        same: bool) -> tuple[str | None, str]:
    """The address to probe a monitored destination at: loopback when it is the source
    itself, else an address of an up interface, one in a network the source is connected to
    first (the path a packet takes), IPv4 before IPv6."""
    if same:
        return "127.0.0.1", ""
    if facts is None:
        return None, f"no facts snapshot of {dest_id} is held, so its address is not known"
    nets = []
    for i in (src_facts or {}).get("interfaces") or []:
        for a in i.get("addresses") or []:
            try:
                nets.append(ipaddress.ip_network(f"{a['address']}/{a['prefixlen']}", strict=False))
            except (KeyError, ValueError):
                pass
    cands = []
    for i in facts.get("interfaces") or []:
        if i.get("loopback") or not i.get("up"):
            continue
        for a in i.get("addresses") or []:
            try:
                ip = ipaddress.ip_address(a["address"])
            except (KeyError, ValueError):
                continue
            if ip.is_link_local:
                continue
            shared = any(ip in n for n in nets if n.version == ip.version and n.prefixlen > 0)
            cands.append((not shared, ip.version, str(ip)))
    if not cands:
        return None, f"{dest_id} has no address on an up interface in its facts"
    return sorted(cands)[0][2], ""


def _answer(source_id: str, dest_id: str | None, address: str | None, port: int, protocol: str, t0: float,
            steps: list[dict]) -> dict:
    if not any(s["step"] == "probe" for s in steps):
        first = next((s for s in steps if s["verdict"] == "problem"), None)
        verdict = {"verdict": "unknown", "first_problem": None if first is None else
                   {"step": first["step"], "message": first["message"]}}
    else:
        verdict = overall(steps)
    return {"source": source_id, "destination": {"instance_id": dest_id, "address": address},
            "port": port, "protocol": protocol, **verdict, "steps": steps,
            "elapsed_ms": round((time.monotonic() - t0) * 1000, 1)}
