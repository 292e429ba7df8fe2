"""Who acts, as audits and records name them (an alert's acknowledgement, a silence's
author, a command run): the admin token's short fingerprint, never the token itself.

Both the API and the dashboard pages act with the admin token, so both name the actor alike.
"""

from __future__ import annotations

import hashlib


def token_fingerprint(token: str) -> str:
    """`admin-token:` and the first 8 hex digits of the token's SHA-256."""
    return "admin-token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def actor(token: str | None) -> str:
    """The admin token's fingerprint, or `local` when the service has no token (loopback only)."""
    return token_fingerprint(token) if token else "local"
