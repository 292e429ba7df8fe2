"""Remote commands (the Cloud Assistant): off unless the operator enables them."""

from __future__ import annotations

from typing import Any


def attach(service: Any) -> Any:
    """The service's Commands engine when enabled, else None (nothing is built, nothing runs)."""
    if not service.config.enable_commands:
        return None
    from diag.commands.agent_tasks import boot_id
    from diag.commands.engine import Commands, Settings
    from diag.web.commands_routes import tasks_hook

    c = service.config.commands
    engine = Commands(service.db, service.events,
                      Settings(local_id=service.instance_id, delivery_timeout=c.delivery_timeout, workers=c.workers,
                               allow=tuple(c.allow)),
                      local_boot_id=boot_id(service.config.paths.proc), last_seen=_last_seen(service),
                      records=c.records)
    service.agent_tasks = tasks_hook(engine)  # what fleet_routes' GET /agents/{id}/tasks calls
    return engine


def _last_seen(service: Any):
    def last_seen(instance_id: str) -> float | None:
        inst = service.instances.get(instance_id)
        return inst["last_seen"] if inst else None

    return last_seen
