"""The agent's side: poll its own task list, run each task with the shared runner in a
thread (so polling, and so stopping, goes on), post the result. The agent opens no port.

`diag agent` calls `TaskClient(...).poll_once()` every `poll_after` seconds, or runs
`run_forever(stop_event)` in a thread.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import json
import urllib.error
import urllib.parse
import urllib.request

from diag.commands import sendfile
from diag.commands.runner import Execution, Result, failed

log = logging.getLogger(__name__)


def boot_id(proc: Path = Path("/proc"), path: Path | None = None) -> str | None:
    try:
        return (path or proc / "sys/kernel/random/boot_id").read_text().strip()[:64] or None
    except OSError:
        return None


class TaskHTTPError(OSError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"the server answered {status}: {text}")
        self.status = status


class TaskClient:
    def __init__(self, server: str, instance_id: str, token: str, *, proc: Path = Path("/proc"),
                 timeout: float = 30, boot_id_file: Path | None = None) -> None:
        self.base = f"{server.rstrip('/')}/api/v1/agents/{instance_id}/tasks"
        self._token = token
        self.boot_id = boot_id(proc, boot_id_file)
        # New with each agent process: the server fails the tasks an earlier process took
        # and can no longer report (InstanceRestarted) when it sees another session.
        self.session = secrets.token_hex(8)
        self.timeout = timeout
        self.poll_after = 3.0  # seconds between polls: the latency of a command on an idle agent
        self._running: dict[str, Execution] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _call(self, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET, or POST `body`, as JSON. Stdlib only: the agent stays small (requests alone
        adds about 6 MB to its resident memory). HTTP errors raise TaskHTTPError."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Authorization": f"Bearer {self._token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise TaskHTTPError(e.code, e.read()[:300].decode(errors="replace")) from None

    def poll_once(self) -> int:
        """One poll; returns the number of tasks started. Raises OSError (TaskHTTPError for an
        HTTP error) to the caller."""
        query = "?" + urllib.parse.urlencode({"session": self.session, **({"boot_id": self.boot_id}
                                                                           if self.boot_id else {})})
        body = self._call(self.base + query)
        after = body.get("poll_after")
        if isinstance(after, (int, float)) and not isinstance(after, bool):
            self.poll_after = min(max(float(after), 1.0), 300.0)  # the server's pace, within sane bounds
        tasks = [t for t in body.get("tasks", []) if t.get("kind") != "stop"]
        for task_id in [t["task_id"] for t in body.get("tasks", []) if t.get("kind") == "stop"]:
            with self._lock:
                ex = self._running.get(task_id)
            if ex is not None:
                ex.stop()
            else:
                self._post(task_id, Result("Stopped", error_info="stopped before it ran"))
        for task in tasks:
            t = threading.Thread(target=self._run, args=(task,), name=f"task-{task['task_id']}", daemon=True)
            self._threads.append(t)
            t.start()
        self._threads = [t for t in self._threads if t.is_alive()]
        return len(tasks)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except (OSError, ValueError) as e:
                log.warning("task poll failed: %s", e)
            stop.wait(self.poll_after)

    def join(self, timeout: float | None = None) -> None:
        for t in list(self._threads):
            t.join(timeout)

    def _run(self, task: dict[str, Any]) -> None:
        try:
            if task.get("kind") == "file":
                result = sendfile.write_within(float(task.get("timeout") or 60), task["file_name"],
                                               base64.b64decode(task["content_b64"]), task["target_dir"], task["mode"],
                                               task["owner"], task["group"], bool(task["overwrite"]))
            else:
                ex = Execution(task["script"], timeout=float(task["timeout"]), working_dir=task.get("working_dir", ""),
                               username=task.get("username", ""), env=task.get("env") or {},
                               kind=task.get("type") or "RunShellScript")
                with self._lock:
                    self._running[task["task_id"]] = ex
                result = ex.run()
        except Exception as e:  # noqa: BLE001 - the server must hear about every task
            log.exception("task %s failed", task.get("task_id"))
            result = failed("ExecutionException", f"agent error: {e!r}"[:500])
        finally:
            with self._lock:
                self._running.pop(task["task_id"], None)
        self._post(task["task_id"], result)

    def _post(self, task_id: str, result: Result) -> None:
        body = {"status": result.status, "exit_code": result.exit_code, "dropped": result.dropped,
                "output_b64": base64.b64encode(result.output).decode(), "error_code": result.error_code,
                "error_info": result.error_info, "start_time": result.start_time, "finish_time": result.finish_time}
        for attempt in range(5):  # a result is worth a few retries; the server expires it otherwise
            try:
                self._call(f"{self.base}/{task_id}/result", body)
                return
            except TaskHTTPError as e:
                if e.status < 500:
                    return
                log.warning("posting the result of %s failed: %s", task_id, e)
            except (OSError, ValueError) as e:
                log.warning("posting the result of %s failed: %s", task_id, e)
            threading.Event().wait(min(2 ** attempt, 10))
