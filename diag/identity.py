"""An instance's stable id, kept apart from diag.config so the agent need not load pydantic."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

# What an instance id may be, wherever one comes in (an API body, a form, a command's targets).
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def instance_id_from(etc: Path) -> str:
    """A stable id from /etc/machine-id, hashed so the machine id itself is not exposed
    (systemd's advice for application-specific ids); the hostname when there is none."""
    try:
        machine_id = (etc / "machine-id").read_text().strip()
    except OSError:
        machine_id = ""
    if not machine_id:
        return socket.gethostname()
    return "i-" + hashlib.sha256(b"diag:" + machine_id.encode()).hexdigest()[:16]
