"""Firewall rules that drop the service ports, read from the tools on the live system only.

iptables-save (and ip6tables-save) first, as asked of most hosts; when they show an empty
filter table and nft exists, the rules live in native nftables tables (firewalld on RHEL 8+,
Debian's nftables.service) which iptables-save does not print, so nft is read instead.
The sbin directories are searched too: a service's PATH often lacks them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from collectors.facts import iptables_rules, nft_rules
from collectors.roots import Roots

TIMEOUT_S = 5.0
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def _run(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, check=False)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{os.path.basename(argv[0])} exited {r.returncode}: {msg[-1] if msg else ''}")
    return r.stdout.decode("utf-8", "replace")


def _empty(text: str) -> bool:
    """An iptables-save output with no filter rules and no DROP policy on INPUT."""
    t = iptables_rules.parse_save(text)
    return not any(t.chains.values()) and t.policies.get("INPUT") != "DROP"


def from_outputs(ports: list[int], v4: str | None = None, v6: str | None = None,
                 nft_json: str | None = None) -> dict:
    """The firewall part from saved tool outputs (what the live path runs, fed by tests too)."""
    out: dict = {"tool": None, "rules_checked": 0, "drops": [], "error": None}
    if v4 is not None or v6 is not None:
        out["tool"] = "iptables"
        for text, family in ((v4, "inet"), (v6, "inet6")):
            if text is not None:
                d, n = iptables_rules.drops(text, ports, family)
                out["drops"] += d
                out["rules_checked"] += n
    elif nft_json is not None:
        out["tool"] = "nft"
        out["drops"], out["rules_checked"] = nft_rules.drops(nft_json, ports)
    return out


def firewall(roots: Roots, ports: list[int]) -> dict:
    if not roots.is_live:
        return {"tool": None, "rules_checked": 0, "drops": [],
                "error": "firewall rules are read only on the live system"}
    ipt, ip6t, nft = _which("iptables-save"), _which("ip6tables-save"), _which("nft")
    try:
        v4 = _run([ipt]) if ipt else None
        v6 = _run([ip6t]) if ip6t else None
        if nft and (v4 is None or (_empty(v4) and (v6 is None or _empty(v6)))):
            return from_outputs(ports, nft_json=_run([nft, "-j", "list", "ruleset"]))
        return from_outputs(ports, v4, v6)
    except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        return {"tool": "iptables" if ipt else "nft" if nft else None, "rules_checked": 0, "drops": [],
                "error": str(e)}
