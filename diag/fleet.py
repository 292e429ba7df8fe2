"""Registration: activations (one code, a usage count, an expiry) and agent tokens.

Only hashes are stored: a code or token is shown once, at creation, and a copy of the
database grants nothing. Both are 192+ bits of randomness, so a plain SHA-256 is enough
(slow hashes exist to protect guessable passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
from typing import Any

from diag.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS activations (
    activation_id TEXT PRIMARY KEY, code_hash TEXT NOT NULL, description TEXT NOT NULL,
    count INTEGER NOT NULL, remaining INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS agent_tokens (
    token_hash TEXT PRIMARY KEY, instance_id TEXT NOT NULL, activation_id TEXT NOT NULL, created_at REAL NOT NULL);
"""

MAX_COUNT = 1000
MAX_EXPIRES = 365 * 86400.0
MAX_CIDRS = 32

# A source network as the OpenAPI document states it (schemas.ACTIVATION_BODY): an IPv4 or
# IPv6 address with an optional prefix length, no leading zeros in IPv4 (ipaddress refuses
# them) and no zone. The validator is this pattern and then ipaddress, so the document
# allows exactly what the route takes.
_O = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"{_O}(\.{_O}){{3}}(/(3[0-2]|[12]?[0-9]))?"
_H = r"[0-9a-fA-F]{1,4}"
_V6 = (rf"(({_H}:){{7}}{_H}|({_H}:){{1,7}}:|({_H}:){{1,6}}:{_H}|({_H}:){{1,5}}(:{_H}){{1,2}}|({_H}:){{1,4}}(:{_H}){{1,3}}"
       rf"|({_H}:){{1,3}}(:{_H}){{1,4}}|({_H}:){{1,2}}(:{_H}){{1,5}}|{_H}:(:{_H}){{1,6}}|:((:{_H}){{1,7}}|:))"
       r"(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?")
CIDR_PATTERN = f"^({_V4}|{_V6})$"
_CIDR = re.compile(CIDR_PATTERN)


class RegistrationError(Exception):
    """An activation that cannot be used; `status` is the HTTP answer (401 bad credentials, 403 spent
    or from outside its networks). `audit`: the refusal is one an operator should see (an event)."""

    def __init__(self, status: int, message: str, audit: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.audit = audit


def parse_cidrs(value: Any) -> list[str]:
    """An activation's source networks, normalised (10.1.2.3/8 -> 10.0.0.0/8); ValueError
    naming the bad entry as `[i]: message`."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_CIDRS:
        raise ValueError(f": must be a list of at most {MAX_CIDRS} networks (CIDR, e.g. 10.0.0.0/8)")
    out: list[str] = []
    for i, v in enumerate(value):
        # match, as the other validators (validate.string): `$` takes one final newline, as the
        # fuzzer's generator (hypothesis' from_regex) reads the document's pattern.
        if not isinstance(v, str) or not _CIDR.match(v):
            raise ValueError(f"[{i}]: is not an IPv4 or IPv6 network (CIDR, e.g. 10.0.0.0/8 or fd00::/8)")
        net = str(ipaddress.ip_network(v.removesuffix("\n"), strict=False))
        if net not in out:
            out.append(net)
    return out


def _address(source: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address((source or "").split("%")[0])
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; the operator wrote a.b.c.d/n.
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def source_allowed(cidrs: list[str], source: str | None) -> bool:
    if not cidrs:
        return True
    ip = _address(source)
    return ip is not None and any(ip in ipaddress.ip_network(c) for c in cidrs)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Fleet:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.write() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            # Stores from before activations could name source networks.
            if "source_cidrs" not in {row[1] for row in c.execute("PRAGMA table_info(activations)")}:
                c.execute("ALTER TABLE activations ADD COLUMN source_cidrs TEXT NOT NULL DEFAULT '[]'")
        # token hash -> instance id; revoke() drops its entries under the same lock
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        # Instances with an agent token of their own: the shared ingest token may not write
        # them (it would rewrite their hostname and labels, which pick policy targets).
        self._bound: set[str] = {r["instance_id"] for r in db.read("SELECT DISTINCT instance_id FROM agent_tokens")}

    def create_activation(self, count: int, expires_in: float, description: str = "",
                          now: float | None = None, source_cidrs: list[str] | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        activation_id = "act-" + secrets.token_hex(8)
        # The prefix keeps a code from starting with "-" (1 in 64 of bare token_urlsafe
        # codes), which `diag agent --activation-code CODE` would take for an option.
        code = "ac_" + secrets.token_urlsafe(24)
        with self.db.write() as c:
            c.execute("INSERT INTO activations (activation_id, code_hash, description, count, remaining, created_at, "
                      "expires_at, source_cidrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (activation_id, _hash(code), description, count, count, now, now + expires_in,
                       json.dumps(source_cidrs or [])))
        return {**self.activation(activation_id), "activation_code": code}

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM activations WHERE activation_id = ?", (activation_id,))
        if not rows:
            return None
        r = rows[0]
        return {"activation_id": r["activation_id"], "description": r["description"], "count": r["count"],
                "remaining": r["remaining"], "created_at": r["created_at"], "expires_at": r["expires_at"],
                "source_cidrs": json.loads(r["source_cidrs"])}

    def register(self, activation_id: str, code: str, instance_id: str, now: float | None = None,
                 source: str | None = None) -> str:
        """Use the activation once and return a new agent token bound to `instance_id`;
        `source` is the caller's address, checked against the activation's networks."""
        now = time.time() if now is None else now
        token = "dat_" + secrets.token_urlsafe(32)
        with self._lock, self.db.write() as c:
            row = c.execute("SELECT code_hash, remaining, expires_at, source_cidrs FROM activations "
                            "WHERE activation_id = ?", (activation_id,)).fetchone()
            # One answer for an unknown id and a wrong code, so ids cannot be probed.
            if row is None or not hmac.compare_digest(row["code_hash"], _hash(code)):
                raise RegistrationError(401, "unknown activation or wrong activation code")
            # After the code check: an address outside learns nothing about which ids exist.
            # Before the count: a refused caller must not use the activation up.
            cidrs = json.loads(row["source_cidrs"])
            if not source_allowed(cidrs, source):
                raise RegistrationError(
                    403, f"registration from {source} is outside the networks this activation admits",
                    audit={"activation_id": activation_id, "instance_id": instance_id, "source": str(source),
                           "source_cidrs": ",".join(cidrs)})
            if row["expires_at"] <= now:
                raise RegistrationError(403, "the activation has expired")
            if row["remaining"] <= 0:
                raise RegistrationError(403, "the activation is used up")
            # An activation code is no licence to speak for a machine that already has an
            # agent: that needs the admin to revoke the old token first.
            if c.execute("SELECT 1 FROM agent_tokens WHERE instance_id = ?", (instance_id,)).fetchone():
                raise RegistrationError(409, f"instance {instance_id} already has an agent; to register it again, "
                                             f"revoke its token first (DELETE /api/v1/agents/{instance_id}/token)")
            c.execute("UPDATE activations SET remaining = remaining - 1 WHERE activation_id = ?", (activation_id,))
            c.execute("INSERT INTO agent_tokens VALUES (?, ?, ?, ?)", (_hash(token), instance_id, activation_id, now))
            self._bound.add(instance_id)
        return token

    def has_agent(self, instance_id: str) -> bool:
        """Whether the instance has an agent token of its own."""
        return instance_id in self._bound

    def revoke(self, instance_id: str) -> bool:
        """Forget every agent token of an instance; False when it had none."""
        with self._lock, self.db.write() as c:
            gone = c.execute("DELETE FROM agent_tokens WHERE instance_id = ?", (instance_id,)).rowcount > 0
            for h in [h for h, iid in self._tokens.items() if iid == instance_id]:
                del self._tokens[h]
            self._bound.discard(instance_id)
        return gone

    def instance_of(self, token: str) -> str | None:
        """The instance an agent token is bound to, or None when it is no agent token."""
        h = _hash(token)
        found = self._tokens.get(h)
        if found is None:
            rows = self.db.read("SELECT instance_id FROM agent_tokens WHERE token_hash = ?", (h,))
            if not rows:
                return None
            found = self._tokens[h] = rows[0]["instance_id"]
        return found
