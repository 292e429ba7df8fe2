"""The agent's loop: collect every interval, buffer, send in order with backoff.

One thread collects, buffers and sends, so the buffer sees one writer and batches leave
in the order they were made. Besides it: `/metrics` (prometheus-client's own server
thread), the task poll, and the facts snapshot, which can hang (netlink, a tool, a
process's /proc files) and so is taken on a thread of its own and handed to the next
batch: a stuck snapshot never holds a collection.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors import registry
from collectors.runner import CollectionCycle
from diag.agent import client
from diag.agent.buffer import Buffer
from diag.model import Batch

if TYPE_CHECKING:  # the model loads pydantic: the agent imports it only to read its settings
    from diag.settings.agent import AgentConfig

log = logging.getLogger("diag.agent")

TOKEN_FILE = "agent-token"
MIN_BACKOFF = 1.0
COMMANDS_OFF_RETRY = 300.0  # seconds between task polls while the server has remote commands off


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.instance_id = cfg.resolved_instance_id()
        self.hostname = cfg.hostname or socket.gethostname()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        settings = cfg.collector_settings()
        if settings.state_dir is not None:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        # With the interval: per-collector budgets of 0.4 x interval, and overruns counted.
        self.cycle = CollectionCycle(registry.build(cfg.roots, settings), interval=cfg.interval)
        self.buffer = Buffer(cfg.data_dir / "buffer.db", cfg.buffer_batches)
        self.token = cfg.token
        self.last_batch: Batch | None = None
        self.sent = 0
        self.dropped_total = 0
        self.send_failures = 0
        self.backoff = 0.0
        self._next_send = 0.0
        self._facts_ready: dict[str, Any] | None = None  # taken, not yet in a batch
        self._facts_lock = threading.Lock()
        self._facts_late = False
        self.stop = threading.Event()
        self.phase = "starting"  # what the loop is doing, for a stop that cannot wait for it

    # -- registration ----------------------------------------------------------------------------

    def ensure_token(self) -> None:
        """Use --token, else the token kept from an earlier registration, else register now."""
        if self.token:
            return
        path = self.cfg.data_dir / TOKEN_FILE
        if path.exists():
            self.token = path.read_text().strip()
            return
        if not (self.cfg.activation_id and self.cfg.activation_code):
            raise SystemExit("diag agent: no token: give --token, or --activation-id and --activation-code once")
        while not self.stop.is_set():
            try:
                got = client.post(self._url("/api/v1/agents/register"), {
                    "activation_id": self.cfg.activation_id, "activation_code": self.cfg.activation_code,
                    "instance_id": self.instance_id, "hostname": self.hostname, "labels": self.cfg.labels}, None)
                break
            except client.ServerAway as e:
                log.warning("cannot register yet (%s); retrying in 5s", e)
                self.stop.wait(5)
            except client.Refused as e:
                raise SystemExit(f"diag agent: registration refused: {e}") from None
        else:
            return
        self.token = got["agent_token"]
        _write_secret(path, self.token)
        log.info("registered as %s; token kept in %s", self.instance_id, path)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        self.phase = "registering"
        self.ensure_token()
        threading.Thread(target=self._poll_tasks, name="tasks", daemon=True).start()
        threading.Thread(target=self._facts_loop, name="facts-loop", daemon=True).start()
        next_collect = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_collect:
                self.phase = "collecting"
                self.collect_once()
                next_collect += self.cfg.interval
                if next_collect < now:  # a long stall: skip the missed cycles, do not burst
                    next_collect = now + self.cfg.interval
            self.phase = "sending"
            self.flush()
            self.phase = "waiting"
            wake = next_collect if not len(self.buffer) else min(next_collect, self._next_send)
            self.stop.wait(max(0.05, wake - time.monotonic()))

    def _poll_tasks(self) -> None:
        """Remote commands: poll this agent's own task list (the agent opens no port).
        A shared ingest token may only push data: then there is nothing to poll."""
        from diag.commands.agent_tasks import TaskClient, TaskHTTPError

        tasks = TaskClient(self.cfg.server, self.instance_id, self.token, proc=self.cfg.roots.proc,
                           boot_id_file=self.cfg.boot_id_file)
        while not self.stop.is_set():
            wait = tasks.poll_after
            try:
                tasks.poll_once()
            except TaskHTTPError as e:
                if e.status in (401, 403):
                    log.info("no remote commands for this agent's token (%s)", e.status)
                    return
                if e.status == 404:  # commands are off on the server; it may be restarted with them on
                    log.debug("remote commands are off on the server; asking again in %.0f s", COMMANDS_OFF_RETRY)
                    wait = COMMANDS_OFF_RETRY
                else:
                    log.warning("task poll failed: %s", e)
            except (OSError, ValueError) as e:
                log.debug("task poll failed: %s", e)
            self.stop.wait(wait)
        tasks.join(5)

    def collect_once(self, now: float | None = None) -> dict[str, Any]:
        """One collection into the buffer (with the facts, when a snapshot was taken since the last)."""
        batch = self.cycle.run(now)
        self.last_batch = batch
        body: dict[str, Any] = {
            "instance_id": self.instance_id, "batch_id": f"{self.instance_id}:{uuid.uuid4().hex}",
            "hostname": self.hostname, "labels": self.cfg.labels, "interval": self.cfg.interval,
            "samples": [s.to_json() for s in batch.samples], "processes": batch.processes,
            "signals": [{"ts": s.ts, "kind": s.kind, "message": s.message, "labels": s.labels}
                        for s in batch.signals]}
        if batch.kernel_lines:  # the instance's system log, readable from the server
            body["kernel_lines"] = [ln.to_json() for ln in batch.kernel_lines]
        with self._facts_lock:
            snap, self._facts_ready = self._facts_ready, None
        if snap is not None:
            body["facts"] = snap
        dropped = self.buffer.append(body)
        if dropped:
            self.dropped_total += dropped
            log.warning("buffer full (%d batches): dropped the %d oldest", self.cfg.buffer_batches, dropped)
        return body

    def flush(self) -> int:
        """Send buffered batches oldest first until one fails; returns how many went."""
        n = 0
        while not self.stop.is_set() and time.monotonic() >= self._next_send:
            item = self.buffer.oldest()
            if item is None:
                break
            seq, body = item
            dropped = self.buffer.dropped()
            if dropped:
                body["dropped_batches"] = dropped  # said once the server is back
            heard = True
            try:
                client.post(self._url("/api/v1/ingest"), body, self.token)
            except client.ServerAway as e:
                self._failed(f"server away: {e}")
                break
            except client.Refused as e:
                if e.status in (401, 403):  # a token problem: keep the data, an operator can fix it
                    self._failed(f"refused: {e}")
                    break
                log.error("the server refused batch %s for good, dropping it: %s", body["batch_id"], e)
                heard = False  # the dropped count goes with the next batch instead
            self.buffer.ack(seq)
            if dropped and heard:
                self.buffer.reported(dropped)
                log.info("back in touch: told the server %d batches were dropped", dropped)
            if self.backoff:
                log.info("the server is back; sending %d buffered batches", len(self.buffer))
            self.backoff = 0.0
            self.sent += 1
            n += 1
        return n

    def _failed(self, why: str) -> None:
        self.send_failures += 1
        # Exponential, capped, with jitter so a fleet does not come back in lockstep.
        self.backoff = min(self.cfg.max_backoff, max(MIN_BACKOFF, self.backoff * 2))
        delay = self.backoff * (0.8 + 0.4 * (os.getpid() % 100) / 100)
        self._next_send = time.monotonic() + delay
        log.warning("%s; %d batches buffered; retry in %.1fs", why, len(self.buffer), delay)

    def _facts_loop(self) -> None:
        """A snapshot every `facts_every`, through facts.Snapshots as `diag serve` takes them:
        on a daemon thread, within its deadline, never stacked on a stuck one."""
        from collectors import facts

        snapshots = facts.Snapshots()
        while not self.stop.is_set():
            snap = self._facts(snapshots)
            if snap is not None:
                with self._facts_lock:
                    self._facts_ready = snap
            self.stop.wait(self.cfg.facts_every)

    def _facts(self, snapshots: Any) -> dict[str, Any] | None:
        """A snapshot, or None when none came in time: the server keeps the last one, with its age."""
        from collectors import facts

        now = time.time()
        try:
            snap = snapshots.take(self.cfg.roots, now, self.cfg.service_ports)
        except facts.FactsTimeout as e:
            if not self._facts_late:  # once until a snapshot succeeds again
                self._facts_late = True
                log.warning("%s: the server keeps the last snapshot, with its age", e)
            return None
        except Exception as e:  # noqa: BLE001 - facts are best effort; the metrics still go
            log.warning("facts snapshot failed: %s", e)
            return {"taken_at": now, "errors": {"snapshot": f"{type(e).__name__}: {e}"}}
        if self._facts_late:
            self._facts_late = False
            log.warning("facts snapshots are taken in time again")
        return snap

    def _url(self, path: str) -> str:
        return self.cfg.server.rstrip("/") + path

    def close(self) -> None:
        self.buffer.close()


def _write_secret(path: Path, text: str) -> None:
    """Created 0600 from the start, so the token is never readable by others, even briefly."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
