"""The Cloud Assistant on the server: invocations become records; the local instance runs
its records in a small worker pool, agents take theirs when they poll; a tick fires
schedules and fails what no agent collected in time.

Every method takes `now` so tests drive the clock; nothing here sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from diag.commands import model, parameters, sendfile, states
from diag.commands.model import CommandError
from diag.commands.records import RecordOutbox
from diag.commands.repository import FIRED_ONCE, Repository, new_id, record_env, record_json
from diag.commands.runner import Execution, Result, interpreter
from diag.commands.schedule import Schedule, ScheduleError, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    local_id: str
    delivery_timeout: float = 60.0
    poll_interval: float = 3.0  # told to agents: the latency of a command on an idle agent
    workers: int = 4
    allow: tuple[str, ...] = ()  # command names, or name@sha256 to pin the content too


class Commands:
    def __init__(self, db, events, settings: Settings, local_boot_id: str | None = None,
                 last_seen: Callable[[str], float | None] | None = None, records: Any = None) -> None:
        self.repo = Repository(db)
        # commands.records of the config: finished records to a JSON-lines file / a webhook.
        self.records = RecordOutbox(db, records) if records is not None and (records.file or records.webhook) else None
        if self.records is not None:
            self.repo.sinks = self.records.sinks
        self._pruned = 0.0
        # When an instance last sent data (its agent pushing metrics): online although its
        # agent took no task, which is a DeliveryTimeout, not an AgentNotOnline.
        self.last_seen = last_seen or (lambda _iid: None)
        self.events = events
        self.settings = settings
        self.local_boot_id = local_boot_id
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="command")
        self._lock = threading.Lock()
        self._running: dict[str, Execution] = {}
        self._futures: set[Future] = set()
        self._work: set[str] = set()  # instances with something to fetch: idle polls touch no table
        self.last_poll: dict[str, float] = {}
        self._boots: dict[str, str] = {}
        self._sessions: dict[str, str] = {}  # instance -> the agent process last polling
        rows = self.repo.records_where("status IN ('Pending', 'Stopping') AND instance_id != ?", (settings.local_id,))
        self._work.update(r["instance_id"] for r in rows)

    # -- start and stop --------------------------------------------------------------------

    def start(self, now: float | None = None) -> None:
        """Settle what a previous run of the service left, then look for a reboot."""
        now = time.time() if now is None else now
        previous_boot = self.repo.db.get_kv(f"commands:boot:{self.settings.local_id}")
        restarted = previous_boot is not None and previous_boot != self.local_boot_id
        for r in self.repo.records_where("instance_id = ? AND status IN ('Running', 'Stopping')",
                                         (self.settings.local_id,)):
            code, info = (("InstanceRestarted", "the machine restarted while it ran") if restarted else
                          ("ExecutionException", "the service stopped while it ran"))
            self.repo.set_status(r["task_id"], states.FAILED, error_code=code, error_info=info, finish_time=now)
        for r in self.repo.records_where("instance_id = ? AND status = 'Pending'", (self.settings.local_id,)):
            self._submit(r["task_id"])
        if self.local_boot_id:
            self.boot_seen(self.settings.local_id, self.local_boot_id, now)

    def close(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for ex in running:
            ex.stop()
        self._pool.shutdown(wait=True)
        if self.records is not None:
            # What the last runs left, briefly: a stop must not wait on a slow webhook. The
            # outbox keeps the rest for the next start.
            self.records.deliver(wait=3)

    def drain(self, timeout: float = 120) -> None:
        """Wait for the local runs submitted so far (tests, shutdown)."""
        with self._lock:
            pending = set(self._futures)
        wait(pending, timeout=timeout)

    # -- invoking --------------------------------------------------------------------------

    def allowed(self, name: str, content: str, adhoc: bool = False) -> bool:
        """With an allow-list: `name@sha256` admits that exact content; a bare name admits
        the saved command of that name (its content is pinned when saved, see pin_conflict),
        never a one-off run-command, whose name is whatever the caller wrote."""
        if not self.settings.allow:
            return True
        digest = hashlib.sha256(content.encode()).hexdigest()
        return f"{name}@{digest}" in self.settings.allow or (not adhoc and name in self.settings.allow)

    def pin_conflict(self, name: str, content: str) -> str | None:
        """Why saving this content under a bare allow-listed name is refused: the first
        content saved under that name is the one allowed, so the name cannot be reused to
        run something else. None when the save may go ahead."""
        if name not in self.settings.allow or not self.repo.contents_named(name) - {content}:
            return None
        # Deleted commands count too: deleting and saving anew must not unpin the name.
        return (f"{name!r} is on the allow-list with the content it was first saved with; "
                f"allow '{name}@<sha256 of the new content>' to change it")

    def save_command(self, command_id: str, cmd: dict[str, Any], now: float, saved: bool = True) -> None:
        """Save a command; refused (403) when it would change a pinned allow-listed one."""
        conflict = self.pin_conflict(cmd["name"], cmd["content"])
        if conflict:
            raise CommandError(403, conflict, "content")
        self.repo.save_command(command_id, cmd, now, saved=saved)

    def create_command(self, cmd: dict[str, Any], now: float) -> dict[str, Any]:
        """Save a new command under a new id; the command as stored."""
        command_id = new_id("c")
        self.save_command(command_id, cmd, now)
        return self.repo.command(command_id)

    def clone_command(self, cmd: dict[str, Any], changes: dict[str, Any] | None, now: float) -> dict[str, Any]:
        """Save a copy of a saved command named <name>-copy (`changes` replace its fields); the copy."""
        return self.create_command(model.clone(cmd, changes), now)

    def file_refusal(self, path: str, mode: str, owner: str, group: str) -> tuple[str, str] | None:
        """Why sending this file is refused, as (field, message); None when it may go.

        With an allow-list, a file may be sent only to a path listed as `file:<path>`:
        writing a file (into /etc/cron.d, say) is running code by another road. The entry may
        limit the rest: `file:/etc/app.conf mode=0640 owner=root group=app` admits at most
        those mode bits and exactly that owner and group. Setuid, setgid and sticky bits are
        refused unless such an entry names them in its mode, allow-list or not: a root-owned
        setuid file is a privilege escalation for whoever can run it."""
        bits = int(mode, 8)
        entries = [_file_entry(e) for e in self.settings.allow if e.startswith("file:")]
        entries = [e for e in entries if e is not None and e["path"] == path]
        if self.settings.allow and not entries:
            return "target_dir", f"sending a file to {path} is not on the allow-list of this service (file:{path})"
        if bits & sendfile.SPECIAL_BITS and not any("mode" in e and int(e["mode"], 8) & bits == bits
                                                    for e in entries):
            return "mode", (f"mode {mode} sets setuid, setgid or sticky bits; only an allow-list entry "
                            f"'file:{path} mode={mode} owner=...' admits that")
        for e in entries:
            if ("mode" not in e or bits & ~int(e["mode"], 8) == 0) and e.get("owner", owner) == owner \
                    and e.get("group", group) == group:
                return None
        if entries:
            return "mode", f"the allow-list admits {path} only as: " + "; ".join(
                " ".join(f"{k}={v}" for k, v in e.items() if k != "path") for e in entries)
        return None

    def invoke(self, command: dict[str, Any], instance_ids: list[str], values: Any, repeat_mode: str,
               frequency: str | None, timeout: float | None, audit: dict[str, Any], now: float | None = None,
               adhoc: bool = False) -> dict[str, Any]:
        now = time.time() if now is None else now
        if not self.allowed(command["name"], command["content"], adhoc):
            raise CommandError(403, f"{command['name']!r} is not on the allow-list of this service", "name")
        try:
            values = parameters.check_values(command["parameters"], values)
        except parameters.ParameterError as e:
            raise CommandError(422, e.message, e.field) from None
        timeout = command["timeout"] if timeout is None else timeout
        kind = command.get("type", parameters.SHELL)
        if self.settings.local_id in instance_ids and interpreter(kind) is None:
            # Known now for this machine; an agent without it fails the record, saying so.
            raise CommandError(422, f"{kind} needs perl, which is not installed on {self.settings.local_id}", "type")
        try:
            sched = parse(repeat_mode or "Once", frequency, timeout, now)
        except ScheduleError as e:
            raise CommandError(422, e.message, e.field) from None
        spec = {"name": command["name"], "type": kind, "content": command["content"], "values": values,
                "timeout": timeout, "working_dir": command["working_dir"], "username": command["username"]}
        return self._create("command", command["command_id"], spec, instance_ids, repeat_mode or "Once",
                            frequency or "", sched, audit, now)

    def send_file(self, spec: dict[str, Any], instance_ids: list[str], audit: dict[str, Any],
                  now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        path = f"{spec['target_dir'].rstrip('/')}/{spec['file_name']}"
        refusal = self.file_refusal(path, spec["mode"], spec["owner"], spec["group"])
        if refusal:
            raise CommandError(403, refusal[1], refusal[0])
        return self._create("file", None, spec, instance_ids, "Once", "", Schedule("now", periodic=False),
                            audit, now)

    def _create(self, kind: str, command_id: str | None, spec: dict[str, Any], instance_ids: list[str],
                repeat_mode: str, frequency: str, sched: Schedule, audit: dict[str, Any], now: float) -> dict[str, Any]:
        body = spec.get("content") if kind == "command" else spec["content_b64"]
        audit = {**audit, "at": now, "instance_ids": instance_ids,
                 "content_sha256": hashlib.sha256(body.encode()).hexdigest()}
        inv = {"invoke_id": new_id("t"), "command_id": command_id, "kind": kind, "spec": spec,
               "repeat_mode": repeat_mode, "frequency": frequency, "periodic": sched.periodic, "created_at": now,
               "audit": audit, "next_run": sched.first(now) if sched.kind not in ("now", "boot") else None,
               "boot_ids": {i: self._boots.get(i) for i in instance_ids}}
        self.repo.add_invocation(inv, instance_ids)
        what = spec.get("name") or spec.get("file_name")
        for iid in instance_ids:
            self.events.detected(iid, "Command.Invoked", now,
                                 f"{kind} {what!r} invoked by {audit.get('who')} from {audit.get('source')}",
                                 level="INFO", fold_key=inv["invoke_id"],
                                 labels={"invoke_id": inv["invoke_id"], "command_id": command_id or "",
                                         "content_sha256": audit["content_sha256"], "who": str(audit.get("who"))})
        if sched.kind == "now":
            self._fire(inv, instance_ids, now)
        return self.invocation(inv["invoke_id"], now)

    def _fire(self, inv: dict[str, Any], instance_ids: list[str], now: float) -> None:
        spec = inv["spec"]
        for iid in instance_ids:
            script, env = None, None
            if inv["kind"] == "command":
                script, env = parameters.substitute(spec["content"], spec["values"], {
                    "diag::InstanceId": iid, "diag::InvokeId": inv["invoke_id"],
                    "diag::CommandId": inv["command_id"] or ""}, spec.get("type", parameters.SHELL))
            task_id = new_id("r")
            with self._lock:
                self.repo.add_record(task_id, inv["invoke_id"], iid, script, spec.get("timeout", 60), now, env)
                if iid != self.settings.local_id:
                    self._work.add(iid)
            if iid == self.settings.local_id:
                self._submit(task_id)

    # -- the clock -------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for inv in self.repo.due(now):
            targets = [r["instance_id"] for r in self.repo.instances_of(inv["invoke_id"])]
            self._fire(inv, targets, now)
            sched = parse("Period" if inv["periodic"] else "Once", inv["frequency"] or None,
                          inv["spec"].get("timeout", 60), inv["created_at"]) if inv["frequency"] else None
            nxt = sched.next_after(now, inv["created_at"]) if sched and sched.periodic else None
            self.repo.set_next_run(inv["invoke_id"], nxt)
        self._expire_deliveries(now)
        if self.records is not None:
            self.records.kick(now)
            if now - self._pruned > 3600:
                self._pruned = now
                self.records.prune(now)

    def _expire_deliveries(self, now: float) -> None:
        grace = self.settings.delivery_timeout
        local = self.settings.local_id
        for r in self.repo.records_where("status = 'Pending' AND instance_id != ? AND created_at < ?",
                                         (local, now - grace)):
            polled = self.last_poll.get(r["instance_id"], 0) >= now - grace
            seen = self.last_seen(r["instance_id"]) or 0
            if polled:
                code, info = "DeliveryTimeout", "the agent polls but did not take the task in time"
            elif seen >= now - grace:
                code, info = "DeliveryTimeout", (
                    f"{r['instance_id']} is online (it sent data {max(0.0, now - seen):.0f}s ago) but no agent of it "
                    f"took the task within {grace:g}s: its agent polls no tasks (a shared ingest token, or an agent "
                    "too old for remote commands)")
            else:
                code, info = "AgentNotOnline", f"no agent of {r['instance_id']} polled in the last {grace:g}s"
            self.repo.set_status(r["task_id"], states.FAILED, only_if=(states.PENDING,), error_code=code,
                                 error_info=info, finish_time=now)
        for r in self.repo.records_where("status = 'Running' AND instance_id != ? AND delivered_at + timeout + ? < ?",
                                         (local, grace, now)):
            self.repo.set_status(r["task_id"], states.FAILED, only_if=(states.RUNNING,), error_code="ExecutionTimeout",
                                 error_info="no result from the agent within the timeout", finish_time=now)
        for r in self.repo.records_where("status = 'Stopping' AND instance_id != ? AND COALESCE(finish_time, 0) < ?",
                                         (local, now - grace)):
            self.repo.set_status(r["task_id"], states.STOPPED, only_if=(states.STOPPING,),
                                 error_info="the agent did not confirm the stop", finish_time=now)

    def session_seen(self, instance_id: str, session: str, now: float | None = None) -> None:
        """An agent process polled; when it is another than the last one, what an earlier
        process took and never reported is lost with it: the agent restarted (crashed, was
        killed or upgraded) while it ran. Idle polls of the same process touch no table."""
        if self._sessions.get(instance_id) == session:
            return
        now = time.time() if now is None else now
        self._sessions[instance_id] = session
        for r in self.repo.records_where("instance_id = ? AND status IN ('Running', 'Stopping') AND delivered_to "
                                         "IS NOT NULL AND delivered_to != ?", (instance_id, session)):
            self.repo.set_status(r["task_id"], states.FAILED, only_if=(states.RUNNING, states.STOPPING),
                                 error_code="InstanceRestarted", finish_time=now,
                                 error_info="the agent restarted while it ran (a new agent process took over; the "
                                            "run's result was lost with the old one)")

    def boot_seen(self, instance_id: str, boot_id: str, now: float | None = None) -> None:
        """A boot id reported by an instance; a new one fires the reboot invocations."""
        if self._boots.get(instance_id) == boot_id:
            return
        now = time.time() if now is None else now
        self._boots[instance_id] = boot_id
        known = self.repo.db.get_kv(f"commands:boot:{instance_id}")
        if known != boot_id:
            self.repo.db.set_kv(f"commands:boot:{instance_id}", boot_id)
            if known is not None and instance_id != self.settings.local_id:
                for r in self.repo.records_where("instance_id = ? AND status IN ('Running', 'Stopping')",
                                                 (instance_id,)):
                    self.repo.set_status(r["task_id"], states.FAILED, error_code="InstanceRestarted",
                                         error_info="the instance restarted while it ran", finish_time=now)
        for w in self.repo.boot_watchers(instance_id):
            if w["boot_id"] is None:
                self.repo.set_boot(w["invoke_id"], instance_id, boot_id)  # the baseline, not a reboot
            elif w["boot_id"] != boot_id:
                once = w["repeat_mode"] == "NextRebootOnly"
                self.repo.set_boot(w["invoke_id"], instance_id, FIRED_ONCE if once else boot_id)
                inv = self.repo.invocation(w["invoke_id"])
                if inv is not None:
                    self._fire(inv, [instance_id], now)

    # -- stop ------------------------------------------------------------------------------

    def stop(self, invoke_id: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        if self.repo.invocation(invoke_id) is None:
            raise CommandError(404, f"no invocation {invoke_id}")
        self.repo.mark_stopped(invoke_id)
        for r in self.repo.records_where("invoke_id = ? AND status IN ('Pending', 'Running')", (invoke_id,)):
            if r["status"] == states.PENDING and r["instance_id"] != self.settings.local_id:
                self.repo.set_status(r["task_id"], states.STOPPED, only_if=(states.PENDING,), finish_time=now)
                continue
            with self._lock:
                self.repo.set_status(r["task_id"], states.STOPPING, only_if=(states.PENDING, states.RUNNING),
                                     finish_time=now)  # finish_time of a Stopping record: when the stop began
                ex = self._running.get(r["task_id"])
                if r["instance_id"] != self.settings.local_id:
                    self._work.add(r["instance_id"])
            if ex is not None:
                ex.stop()
        return self.invocation(invoke_id, now)

    # -- local execution -------------------------------------------------------------------

    def _submit(self, task_id: str) -> None:
        fut = self._pool.submit(self._run_local, task_id)
        with self._lock:
            self._futures.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future) -> None:
        with self._lock:
            self._futures.discard(fut)

    def _run_local(self, task_id: str) -> None:
        try:
            r = self.repo.record(task_id)
            if r is None:
                return
            inv = self.repo.invocation(r["invoke_id"])
            assert inv is not None
            if r["status"] == states.STOPPING or inv["stopped"]:
                self.repo.set_status(task_id, states.STOPPED, finish_time=time.time())
                return
            result = self._execute(inv, r)
            self.finish(task_id, result)
        except Exception as e:  # noqa: BLE001 - a record must never stay Running because of a bug
            log.exception("command record %s failed", task_id)
            self.repo.set_status(task_id, states.FAILED, error_code="ExecutionException",
                                 error_info=f"internal error: {e!r}"[:500], finish_time=time.time())
        finally:
            with self._lock:
                self._running.pop(task_id, None)

    def _execute(self, inv: dict[str, Any], r: Any) -> Result:
        spec = inv["spec"]
        if inv["kind"] == "file":
            self.repo.set_status(r["task_id"], states.RUNNING, start_time=time.time())
            return sendfile.write_within(float(spec.get("timeout", 60)), spec["file_name"],
                                         base64.b64decode(spec["content_b64"]), spec["target_dir"], spec["mode"],
                                         spec["owner"], spec["group"], spec["overwrite"])
        ex = Execution(r["script"], timeout=r["timeout"], working_dir=spec["working_dir"], username=spec["username"],
                       env=record_env(r), kind=spec.get("type", parameters.SHELL))
        with self._lock:
            if not self.repo.set_status(r["task_id"], states.RUNNING, only_if=(states.PENDING,),
                                        start_time=time.time(), delivered_at=time.time()):
                return Result(states.STOPPED, start_time=time.time(), finish_time=time.time())
            self._running[r["task_id"]] = ex
        return ex.run()

    def finish(self, task_id: str, result: Result) -> None:
        """A record's end, from the local runner or an agent's report."""
        self.repo.set_status(task_id, result.status, only_if=(states.PENDING, states.RUNNING, states.STOPPING),
                             exit_code=result.exit_code, output=result.output[:24 * 1024], dropped=result.dropped,
                             error_code=result.error_code, error_info=result.error_info,
                             start_time=result.start_time, finish_time=result.finish_time)

    # -- reading ---------------------------------------------------------------------------

    def invocation(self, invoke_id: str, now: float | None = None, max_records: int = 100) -> dict[str, Any]:
        inv = self.repo.invocation(invoke_id)
        if inv is None:
            raise CommandError(404, f"no invocation {invoke_id}")
        instances = []
        for row in self.repo.instances_of(invoke_id):
            recs = self.repo.records(invoke_id, row["instance_id"])
            # A periodic schedule that ran out (a cron's last year) reads like a one-shot one.
            periodic = inv["repeat_mode"] == "EveryReboot" or (
                inv["periodic"] and (inv["next_run"] is not None or inv["stopped"]))
            status = states.instance_status(periodic, inv["stopped"], [r["status"] for r in recs])
            instances.append({"instance_id": row["instance_id"], "status": status, "repeats": row["repeats"],
                              "records": [record_json(r) for r in recs[-max_records:]]})
        spec = inv["spec"]
        out = {"invoke_id": invoke_id, "command_id": inv["command_id"], "kind": inv["kind"],
               "name": spec.get("name") or spec.get("file_name"),
               "status": states.overall(i["status"] for i in instances), "repeat_mode": inv["repeat_mode"],
               "frequency": inv["frequency"], "timeout": spec.get("timeout"), "parameters": spec.get("values", {}),
               "created_at": inv["created_at"], "next_run": inv["next_run"], "audit": inv["audit"],
               "instances": instances}
        return out


def _file_entry(entry: str) -> dict[str, str] | None:
    """`file:<path> [mode=0640] [owner=u] [group=g]` as a dict; None when malformed (it then
    admits nothing)."""
    words = entry[len("file:"):].split()
    if not words:
        return None
    out, opts = {"path": words[0]}, words[1:]
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in ("mode", "owner", "group") or not value or (key == "mode" and not sendfile.MODE.match(value)):
            log.warning("ignoring the malformed allow-list entry %r", entry)
            return None
        out[key] = value
    return out
