"""Remote commands (the Cloud Assistant): off unless the operator enables them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diag.db import Database
from diag.events import EventLog
from diag.instances import Instances

if TYPE_CHECKING:
    from diag.commands.engine import Commands
    from diag.settings.model import Config


def attach(config: Config, db: Database, *, local_id: str, events: EventLog,
           instances: Instances) -> Commands | None:
    """The Commands engine when enabled, else None (nothing is built, nothing runs)."""
    if not config.enable_commands:
        return None
    from diag.commands.agent_tasks import boot_id
    from diag.commands.engine import Commands, Settings

    def last_seen(instance_id: str) -> float | None:
        inst = instances.get(instance_id)
        return inst["last_seen"] if inst else None

    c = config.commands
    return Commands(db, events, Settings(local_id=local_id, delivery_timeout=c.delivery_timeout, workers=c.workers,
                                         allow=tuple(c.allow)),
                    local_boot_id=boot_id(config.paths.proc), last_seen=last_seen, records=c.records)
