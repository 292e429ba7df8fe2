"""The server side of the agents' task endpoints: hand out records, take results."""

from __future__ import annotations

import base64
import time
from typing import Any

from diag.commands import states
from diag.commands.engine import Commands
from diag.commands.model import CommandError
from diag.commands.repository import record_env, record_json
from diag.commands.runner import OUTPUT_CAP, Result

BATCH = 20
ERROR_CODES = ("ExecutionTimeout", "ExitCodeNonzero", "ExecutionException", "InstanceRestarted", "FileAlreadyExists")


def poll(cmds: Commands, instance_id: str, boot_id: str | None, now: float | None = None,
         session: str | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    cmds.last_poll[instance_id] = now
    if boot_id:
        cmds.boot_seen(instance_id, boot_id, now)
    if session:
        cmds.session_seen(instance_id, session, now)
    out: dict[str, Any] = {"tasks": [], "stop": [], "poll_after": cmds.settings.poll_interval}
    if instance_id not in cmds._work:  # the idle path: a set lookup, no query
        return out
    repo = cmds.repo
    with cmds._lock:
        pending = repo.records_where("instance_id = ? AND status = 'Pending' ORDER BY created_at LIMIT ?",
                                     (instance_id, BATCH))
        for r in pending:
            inv = repo.invocation(r["invoke_id"])
            if inv and repo.set_status(r["task_id"], states.RUNNING, only_if=(states.PENDING,), delivered_at=now,
                                       start_time=now, delivered_to=session):
                out["tasks"].append(_task(inv, r))
        stopping = repo.records_where("instance_id = ? AND status = 'Stopping'", (instance_id,))
        out["stop"] = [r["task_id"] for r in stopping]
        if len(pending) < BATCH and not stopping:
            cmds._work.discard(instance_id)
    return out


def agent_tasks(cmds: Commands, instance_id: str, boot_id: str | None = None,
                session: str | None = None) -> dict[str, Any]:
    """What GET /agents/{id}/tasks answers an agent: its tasks, then stop orders as tasks of
    kind "stop", and when to ask again. `boot_id` fires reboot invocations; a new `session`
    fails the tasks an earlier agent process took (InstanceRestarted)."""
    got = poll(cmds, instance_id, boot_id, session=session)
    return {"tasks": got["tasks"] + [{"task_id": t, "kind": "stop"} for t in got["stop"]],
            "poll_after": got["poll_after"]}


def _task(inv: dict[str, Any], r: Any) -> dict[str, Any]:
    spec = inv["spec"]
    task = {"task_id": r["task_id"], "invoke_id": inv["invoke_id"], "kind": inv["kind"], "timeout": r["timeout"]}
    if inv["kind"] == "file":
        task.update({k: spec[k] for k in ("file_name", "content_b64", "target_dir", "mode", "owner", "group",
                                          "overwrite")})
    else:
        task.update({"script": r["script"], "env": record_env(r), "working_dir": spec["working_dir"],
                     "username": spec["username"], "type": spec.get("type", "RunShellScript")})
    return task


def result(cmds: Commands, instance_id: str, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = cmds.repo.record(task_id)
    if r is None or r["instance_id"] != instance_id:
        raise CommandError(404, f"no task {task_id} for {instance_id}")
    status = body.get("status")
    if status not in states.FINAL:
        raise CommandError(422, f"must be one of {', '.join(states.FINAL)}", "status")
    exit_code = body.get("exit_code")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
        raise CommandError(422, "must be an integer or null", "exit_code")
    code = body.get("error_code")
    if code is not None and code not in ERROR_CODES:
        raise CommandError(422, f"must be one of {', '.join(ERROR_CODES)}", "error_code")
    try:
        output = base64.b64decode(body.get("output_b64") or "", validate=True)
    except (ValueError, TypeError):  # binascii.Error, and non-ASCII input (a plain ValueError)
        raise CommandError(422, "must be base64", "output_b64") from None
    dropped = body.get("dropped", 0)
    if isinstance(dropped, bool) or not isinstance(dropped, int) or dropped < 0:
        raise CommandError(422, "must be a non-negative integer", "dropped")
    times = []
    for key in ("start_time", "finish_time"):
        v = body.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise CommandError(422, "must be UNIX seconds", key)
        times.append(v)
    info = body.get("error_info")
    if info is not None and not isinstance(info, str):
        raise CommandError(422, "must be a string", "error_info")
    cut = max(0, len(output) - OUTPUT_CAP)  # never trust the agent to have kept the cap
    cmds.finish(task_id, Result(status, exit_code, output[:OUTPUT_CAP], dropped + cut, code,
                                info[:2000] if info else None, times[0] or r["start_time"], times[1] or time.time()))
    return record_json(cmds.repo.record(task_id))
