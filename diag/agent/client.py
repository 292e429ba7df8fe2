"""The agent's HTTP side: push a batch, register with an activation. Stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ServerAway(Exception):
    """The server did not take the batch now (down, 5xx, timeout): keep it and retry later."""


class Refused(Exception):
    """The server refused for good (4xx other than 408/429): retrying the same thing will not help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the server answered {status}: {body[:300]}")
        self.status = status


def post(url: str, body: dict[str, Any], token: str | None, timeout: float = 15.0) -> dict[str, Any]:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        if e.code >= 500 or e.code in (408, 429):
            raise ServerAway(f"the server answered {e.code}: {text[:200]}") from None
        raise Refused(e.code, text) from None
    except (OSError, ValueError) as e:  # refused, reset, DNS, timeout, a broken answer
        raise ServerAway(f"{type(e).__name__}: {e}") from None
