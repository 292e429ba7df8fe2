"""Registration: activations (one code, a usage count, an expiry) and agent tokens.

Only hashes are stored: a code or token is shown once, at creation, and a copy of the
database grants nothing. Both are 192+ bits of randomness, so a plain SHA-256 is enough
(slow hashes exist to protect guessable passwords).
"""

from __future__ import annotations

import hashlib
import hmac
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


class RegistrationError(Exception):
    """An activation that cannot be used; `status` is the HTTP answer (401 bad credentials, 403 spent)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Fleet:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.write() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
        # token hash -> instance id; revoke() drops its entries under the same lock
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        # Instances with an agent token of their own: the shared ingest token may not write
        # them (it would rewrite their hostname and labels, which pick policy targets).
        self._bound: set[str] = {r["instance_id"] for r in db.read("SELECT DISTINCT instance_id FROM agent_tokens")}

    def create_activation(self, count: int, expires_in: float, description: str = "",
                          now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        activation_id = "act-" + secrets.token_hex(8)
        # The prefix keeps a code from starting with "-" (1 in 64 of bare token_urlsafe
        # codes), which `diag agent --activation-code CODE` would take for an option.
        code = "ac_" + secrets.token_urlsafe(24)
        with self.db.write() as c:
            c.execute("INSERT INTO activations VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (activation_id, _hash(code), description, count, count, now, now + expires_in))
        return {**self.activation(activation_id), "activation_code": code}

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT * FROM activations WHERE activation_id = ?", (activation_id,))
        if not rows:
            return None
        r = rows[0]
        return {"activation_id": r["activation_id"], "description": r["description"], "count": r["count"],
                "remaining": r["remaining"], "created_at": r["created_at"], "expires_at": r["expires_at"]}

    def register(self, activation_id: str, code: str, instance_id: str, now: float | None = None) -> str:
        """Use the activation once and return a new agent token bound to `instance_id`."""
        now = time.time() if now is None else now
        token = "dat_" + secrets.token_urlsafe(32)
        with self._lock, self.db.write() as c:
            row = c.execute("SELECT code_hash, remaining, expires_at FROM activations WHERE activation_id = ?",
                            (activation_id,)).fetchone()
            # One answer for an unknown id and a wrong code, so ids cannot be probed.
            if row is None or not hmac.compare_digest(row["code_hash"], _hash(code)):
                raise RegistrationError(401, "unknown activation or wrong activation code")
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
