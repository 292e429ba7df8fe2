"""The server side of the agents' task endpoints: hand out records, take results."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StrictFloat, StrictInt, WithJsonSchema

from diag.alerting.policy import PolicyError, parse
from diag.commands import states
from diag.commands.engine import Commands
from diag.commands.model import CommandError
from diag.commands.repository import record_env, record_json
from diag.commands.runner import OUTPUT_CAP, Result

BATCH = 20
ERROR_CODES = ("ExecutionTimeout", "ExitCodeNonzero", "ExecutionException", "InstanceRestarted", "FileAlreadyExists")


def _base64(v: Any) -> bytes:
    try:
        return base64.b64decode(v or "", validate=True)  # absent, null or empty: no output
    except (ValueError, TypeError):  # binascii.Error, and non-ASCII input (a plain ValueError)
        raise ValueError("must be base64") from None


# An agent's report of a record's end (POST .../tasks/{id}/result); also the body's schema in
# the OpenAPI document.
class TaskResult(BaseModel):
    status: Literal[states.FINAL]  # type: ignore[valid-type]
    exit_code: StrictInt | None = None
    error_code: Literal[ERROR_CODES] | None = None  # type: ignore[valid-type]
    output_b64: Annotated[bytes, BeforeValidator(_base64), WithJsonSchema({"type": "string"})] = b""
    dropped: StrictInt = Field(0, ge=0)  # output the agent cut
    start_time: StrictFloat | None = None  # UNIX seconds
    finish_time: StrictFloat | None = None
    error_info: str | None = None


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
    try:
        got: TaskResult = parse(TaskResult, body)
    except PolicyError as e:
        raise CommandError(e.status, e.message, e.field) from None
    output = got.output_b64
    cut = max(0, len(output) - OUTPUT_CAP)  # never trust the agent to have kept the cap
    cmds.finish(task_id, Result(got.status, got.exit_code, output[:OUTPUT_CAP], got.dropped + cut, got.error_code,
                                got.error_info[:2000] if got.error_info else None,
                                got.start_time or r["start_time"], got.finish_time or time.time()))
    return record_json(cmds.repo.record(task_id))
