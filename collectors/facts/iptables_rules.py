"""Which ports the iptables filter table drops for a new TCP connection from anywhere.

`iptables-save` text is walked like the kernel walks it, for one hypothetical packet per
port: a TCP SYN (conntrack state NEW) from an arbitrary outside address, arriving on a
non-loopback interface. A rule matches that packet only when every condition it sets is
one we can decide for it; a condition we cannot (a source network, a rate limit, an ipset,
`-m recent`) makes the rule not match, so a rule that only drops a source network or
only throttles brute force is not reported, and an ACCEPT limited to a source network
does not hide a later drop or a DROP policy. Jumps are followed to any depth (ufw
and firewalld nest their allow rules three chains below INPUT), bounded against loops.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

MAX_DEPTH = 10
_ANY = ("0.0.0.0/0", "::/0")
# Matches whose presence alone does not narrow the packet we test.
_NEUTRAL_MODULES = {"tcp", "multiport", "state", "conntrack", "comment", "addrtype"}
# What addrtype sees in our packet's destination: one of this host's unicast addresses.
_DST_TYPES = {"LOCAL", "UNICAST"}


@dataclass
class Rule:
    chain: str
    text: str
    target: str | None
    goto: bool
    tokens: list[str]


@dataclass
class Table:
    policies: dict[str, str] = field(default_factory=dict)
    chains: dict[str, list[Rule]] = field(default_factory=dict)


def parse_save(text: str, table: str = "filter") -> Table:
    """The chains and policies of one table from `iptables-save` output."""
    out = Table()
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = line[1:]
        elif current != table or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            name, policy = (line[1:].split() + ["-"])[:2]
            out.policies[name] = policy
            out.chains.setdefault(name, [])
        elif line.startswith("-A "):
            try:
                tokens = shlex.split(line)
            except ValueError:
                tokens = line.split()
            target, goto = None, False
            for i, t in enumerate(tokens):
                if t in ("-j", "--jump", "-g", "--goto") and i + 1 < len(tokens):
                    target, goto = tokens[i + 1], t in ("-g", "--goto")
                    tokens = tokens[:i]
                    break
            out.chains.setdefault(tokens[1], []).append(Rule(tokens[1], line, target, goto, tokens[2:]))
    return out


def _ports(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        out.append((int(lo or 0), int(hi or 65535) if _ else int(lo)))
    return out


def matches(rule: Rule, port: int) -> bool:
    """Does `rule`'s match part accept a new TCP connection from anywhere to `port`?"""
    toks = rule.tokens
    i, negate = 0, False
    while i < len(toks):
        opt = toks[i]
        if opt == "!":
            negate, i = True, i + 1
            continue
        arg = toks[i + 1] if i + 1 < len(toks) else ""
        if opt in ("-p", "--protocol"):
            hit = arg.lower() in ("tcp", "6", "all", "0")
        elif opt in ("--dport", "--destination-port", "--dports", "--destination-ports", "--ports"):
            hit = any(lo <= port <= hi for lo, hi in _ports(arg))
        elif opt in ("--state", "--ctstate"):
            hit = "NEW" in arg.upper().split(",")
        elif opt == "--dst-type":
            hit = bool(_DST_TYPES.intersection(arg.upper().split(",")))
        elif opt == "--syn":
            hit, i = True, i - 1  # takes no argument
        elif opt == "--tcp-flags":
            comp = toks[i + 2] if i + 2 < len(toks) else ""
            hit = _syn_matches(arg, comp)
            i += 1
        elif opt in ("-s", "--source", "--src"):
            # Negated ("all but this network") applies to the outside world: count it.
            hit = arg in _ANY or negate
            negate = False
        elif opt in ("-d", "--destination", "--dst"):
            hit, negate = True, False  # the packet is addressed to this host either way
        elif opt in ("-i", "--in-interface"):
            hit = arg != "lo"
        elif opt in ("-m", "--match"):
            if arg not in _NEUTRAL_MODULES:
                return False
            hit = not negate
        elif opt == "--comment":
            hit = not negate
        else:
            return False  # a condition we cannot decide for an arbitrary packet
        if hit == negate:
            return False
        negate = False
        i += 2
    return True


def _syn_matches(mask: str, comp: str) -> bool:
    def flags(s: str) -> set[str]:
        s = s.upper()
        if s == "ALL":
            return {"SYN", "ACK", "FIN", "RST", "URG", "PSH"}
        return set() if s == "NONE" else set(s.split(","))
    return {"SYN"} & flags(mask) == flags(comp)


def _walk(table: Table, chain: str, port: int, depth: int) -> tuple[str, Rule] | None:
    for rule in table.chains.get(chain, ()):
        if rule.target is None or not matches(rule, port):
            continue
        t = rule.target
        if t == "ACCEPT":
            return "accept", rule
        if t in ("DROP", "REJECT"):
            return "drop", rule
        if t == "RETURN":
            return None
        if t in table.chains and depth < MAX_DEPTH:
            verdict = _walk(table, t, port, depth + 1)
            if verdict is not None or rule.goto:
                return verdict
        # LOG, MARK, CT and the like: the packet carries on.
    return None


def drops(text: str, ports: list[int], family: str) -> tuple[list[dict], int]:
    """(drops, number of filter rules read) for `ports` in the INPUT chain of `text`."""
    table = parse_save(text)
    out = []
    for port in ports:
        verdict = _walk(table, "INPUT", port, 0)
        if verdict is None and table.policies.get("INPUT") == "DROP":
            out.append({"port": port, "proto": "tcp", "family": family, "chain": "INPUT", "rule": ":INPUT DROP"})
        elif verdict is not None and verdict[0] == "drop":
            rule = verdict[1]
            out.append({"port": port, "proto": "tcp", "family": family, "chain": rule.chain, "rule": rule.text})
    return out, sum(len(r) for r in table.chains.values())
