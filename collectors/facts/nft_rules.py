"""Which ports the nftables input hooks drop for a new TCP connection from anywhere.

Reads `nft -j list ruleset` and walks every base chain hooked at `input` for the same
hypothetical packet as iptables_rules (a TCP SYN, conntrack state NEW, from an arbitrary
outside address, on a non-loopback interface). Every input base chain must accept a
packet, so a drop in any of them counts. An expression we cannot decide for that packet
makes the rule not match (source sets, rate limits, `xt` blobs of iptables-nft).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_DEPTH = 10
_VERDICTS = ("accept", "drop", "reject", "return", "jump", "goto")
_INERT = ("counter", "log", "comment", "meta_set", "mangle", "notrack", "ct_set")


@dataclass
class Packet:
    port: int
    family: str  # "ip" or "ip6"


def _contains(right: object, value: object) -> bool:
    if isinstance(right, dict):
        if "set" in right:
            return any(_contains(r, value) for r in right["set"])
        if "range" in right:
            lo, hi = right["range"]
            return isinstance(value, int) and lo <= value <= hi
        return False
    if isinstance(right, list):
        return any(_contains(r, value) for r in right)
    if isinstance(right, str) and isinstance(value, str):
        return value in right.split(",") if "," in right else right == value
    return right == value


def _compare(op: str, right: object, value: object) -> bool:
    if op in ("==", "in"):
        return _contains(right, value)
    if op == "!=":
        return not _contains(right, value)
    if isinstance(right, int) and isinstance(value, int):
        return {"<": value < right, ">": value > right, "<=": value <= right, ">=": value >= right}.get(op, False)
    return False


def _key(left: object, pkt: Packet) -> tuple[str, object] | None:
    """What the packet holds for `left`: ("value", v), ("outside", None) for an address the
    outside world may have, or None when we cannot tell."""
    if not isinstance(left, dict):
        return None
    if "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol"), p.get("field")
        if proto in ("tcp", "th") and fld == "dport":
            return "value", pkt.port
        if proto in ("ip", "ip6"):
            if proto != pkt.family:
                return "value", None  # an ip match never matches an ip6 packet
            if fld == "saddr":
                return "outside", None
            if fld == "daddr":
                return "local", None
            if fld in ("protocol", "nexthdr"):
                return "value", "tcp"
        if proto in ("udp", "icmp", "icmpv6", "sctp", "udplite", "dccp", "esp", "ah"):
            return "value", None
        return None
    if "meta" in left:
        k = left["meta"].get("key")
        if k == "l4proto":
            return "value", "tcp"
        if k == "protocol":  # the ethertype
            return "value", pkt.family
        if k == "nfproto":
            return "value", "ipv4" if pkt.family == "ip" else "ipv6"
        if k in ("iifname", "iif"):
            return "iface", None
        return None
    if "ct" in left and left["ct"].get("key") == "state":
        return "value", "new"
    return None


def _match(m: dict, pkt: Packet) -> bool:
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    k = _key(left, pkt)
    if k is None:
        return False
    kind, value = k
    if kind == "outside":  # a source restriction: only its negation applies to the world
        return op == "!="
    if kind == "local":
        return True
    if kind == "iface":
        # "iifname lo" is loopback only; any other interface, or "not eth1", may be the public one.
        return op == "!=" or not _contains(right, "lo")
    if value is None:
        return False
    return _compare(op, right, value)


def _verdict(expr: dict) -> tuple[str, str | None] | None:
    for v in _VERDICTS:
        if v in expr:
            arg = expr[v]
            return v, arg.get("target") if isinstance(arg, dict) else None
    return None


def _walk(rs: "Ruleset", key: tuple, pkt: Packet, depth: int) -> tuple[str, dict] | None:
    for rule in rs.rules.get(key, ()):
        verdict = None
        for expr in rule.get("expr", ()):
            if "match" in expr:
                if not _match(expr["match"], pkt):
                    break
            elif "vmap" in expr:
                vm = expr["vmap"]
                k = _key(vm.get("key"), pkt)
                hit = None
                if k is not None and k[0] == "value" and k[1] is not None:
                    hit = next((d for kv, d in vm.get("data", {}).get("set", ()) if _contains(kv, k[1])), None)
                if hit is None:
                    break
                verdict = _verdict(hit)
                break
            elif (v := _verdict(expr)) is not None:
                verdict = v
                break
            elif not any(i in expr for i in _INERT):
                break  # limit, quota, fib, xt...: not decidable for our packet
        if verdict is None:
            continue
        kind, target = verdict
        if kind == "accept":
            return "accept", rule
        if kind in ("drop", "reject"):
            return "drop", rule
        if kind == "return":
            return None
        if depth < MAX_DEPTH and target is not None:
            got = _walk(rs, (key[0], key[1], target), pkt, depth + 1)
            if got is not None or kind == "goto":
                return got
    return None


class Ruleset:
    def __init__(self, doc: dict) -> None:
        self.base: list[dict] = []
        self.rules: dict[tuple, list[dict]] = {}
        for item in doc.get("nftables", ()):
            if "chain" in item:
                c = item["chain"]
                if c.get("hook") == "input" and c.get("family") in ("ip", "ip6", "inet"):
                    self.base.append(c)
            elif "rule" in item:
                r = item["rule"]
                self.rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)


def describe(rule: dict) -> str:
    """A short nft-like text of a rule for a report (nft -j gives no text)."""
    parts = []
    for expr in rule.get("expr", ()):
        if "match" in expr:
            m = expr["match"]
            parts.append(f"{_name(m.get('left'))} {m.get('op', '==')} {json.dumps(m.get('right'), separators=(',', ':'))}")
        elif (v := _verdict(expr)) is not None:
            parts.append(v[0] + (f" {v[1]}" if v[1] else ""))
        elif not any(i in expr for i in ("counter",)):
            parts.append(json.dumps(expr, separators=(",", ":")))
    return " ".join(parts)


def _name(left: object) -> str:
    if isinstance(left, dict):
        for k in ("payload", "meta", "ct"):
            if k in left:
                d = left[k]
                return f"{d.get('protocol', k)} {d.get('field') or d.get('key')}"
    return json.dumps(left, separators=(",", ":"))


def drops(doc_text: str, ports: list[int]) -> tuple[list[dict], int]:
    """(drops, number of rules read) for `ports` over every input base chain."""
    rs = Ruleset(json.loads(doc_text))
    out = []
    for c in rs.base:
        fams = {"ip": ("ip",), "ip6": ("ip6",), "inet": ("ip", "ip6")}[c["family"]]
        name = f"{c['family']} {c['table']} {c['name']}"
        for fam in fams:
            for port in ports:
                pkt = Packet(port, fam)
                verdict = _walk(rs, (c["family"], c["table"], c["name"]), pkt, 0)
                family = "inet" if fam == "ip" else "inet6"
                if verdict is None and c.get("policy") == "drop":
                    out.append({"port": port, "proto": "tcp", "family": family, "chain": name, "rule": "policy drop"})
                elif verdict is not None and verdict[0] == "drop":
                    r = verdict[1]
                    out.append({"port": port, "proto": "tcp", "family": family,
                                "chain": f"{r['family']} {r['table']} {r['chain']}", "rule": describe(r)})
    return out, sum(len(r) for r in rs.rules.values())
