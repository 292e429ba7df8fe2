"""The event log: kernel and system happenings, detected conditions and scheduled
maintenance, each with a type, a level and a lifecycle (PRODUCT.md "Events").

Detected events are `Executed` at once. Repeats of one fault (same instance, type and
fold key, within FOLD_WINDOW of the last report) fold into one event with a count, so a
disk spewing I/O errors for an hour is one event, not a thousand.

Scheduled maintenance follows the seed's lifecycle (Alibaba 001, "系统事件的状态和窗口期"):
`Inquiring` waits, without a time limit, for the operator to accept it (then `Scheduled`);
`Scheduled` becomes `Executing` at its `not_before` and ends at its `finish_time`. A reboot or
redeploy is checked against what the machine did: a reboot seen in the window makes it
`Executed`, none by RESULT_GRACE after the window `Failed`, and a reboot the operator made
before the window (in the seed's "user operation window") `Avoided`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from checks.base import SOURCE_LABEL, RaisedEvent
from collectors import kernel_patterns
from diag.db import Database
from diag.model import Batch, Signal

FOLD_WINDOW = 600
RETENTION = 60 * 86400
MAX_LINES = 30

CRITICAL, WARN, INFO = "CRITICAL", "WARN", "INFO"
LEVELS = (CRITICAL, WARN, INFO)
STATUSES = ("Inquiring", "Scheduled", "Executing", "Executed", "Avoided", "Canceled", "Failed")

# Every event type, its default level and what raises it: the one place to look.
TYPES: dict[str, tuple[str, str]] = {
    "InstanceFailure.Reboot": (CRITICAL, "a reboot after a kernel panic, watchdog or unclean stop"),
    "Instance.Reboot": (INFO, "any other reboot"),
    "Instance.HealthChanged": (INFO, "the health state changed"),
    "Instance.StateChange": (INFO, "the machine stopped reporting or is back, or its monitoring was switched off or on"),
    "Kernel.HungTask": (CRITICAL, "the kernel log reports a task blocked too long"),
    "Kernel.SoftLockup": (CRITICAL, "the kernel log reports a soft lockup"),
    "Kernel.HardLockup": (CRITICAL, "the kernel log reports a hard lockup (NMI watchdog)"),
    "Kernel.Panic": (CRITICAL, "the kernel log (or pstore) reports a panic or an Oops"),
    "Kernel.OOMKill": (CRITICAL, "the OOM killer killed a process"),
    "Kernel.RCUStall": (WARN, "the kernel log reports an RCU stall"),
    "Disk.IOError": (CRITICAL, "block I/O or filesystem errors in the kernel log"),
    "Disk.ReadOnly": (CRITICAL, "a filesystem was remounted read-only"),
    "Disk.IOHang": (CRITICAL, "a disk stopped completing I/O"),
    "Disk.Full": (CRITICAL, "a filesystem is full"),
    "Network.ListenOverflow": (WARN, "a listening socket's accept queue overflowed"),
    "Network.UdpBufferFull": (WARN, "UDP datagrams dropped for a full socket buffer"),
    "Network.ConntrackFull": (WARN, "the connection-tracking table is full"),
    "Network.LinkDown": (WARN, "a network link went down"),
    "GPU.XidError": (CRITICAL, "the NVIDIA driver reported an Xid error in the kernel log (WARN for Xids an application usually causes)"),
    "Store.SizeCap": (WARN, "the metric store reached its size cap and dropped the oldest raw data"),
    "Store.Error": (CRITICAL, "the metric store could not write (disk full?), or a damaged database was moved aside"),
    "Agent.RegistrationRefused": (WARN, "an agent registration came from outside its activation's networks"),
    "Service.UncleanStop": (WARN, "the service was killed or crashed: its previous run did not stop cleanly"),
    "SystemMaintenance.Reboot": (INFO, "a user scheduled a reboot"),
    "SystemMaintenance.Stop": (INFO, "a user scheduled a stop"),
    "SystemMaintenance.Redeploy": (INFO, "a user scheduled a redeploy"),
}
MAINTENANCE = tuple(t for t in TYPES if t.startswith("SystemMaintenance."))
# Maintenance that is a reboot, and the events that show a reboot happened.
REBOOTING = ("SystemMaintenance.Reboot", "SystemMaintenance.Redeploy")
REBOOTS = ("Instance.Reboot", "InstanceFailure.Reboot")
# A machine may boot slowly and an agent report late: a reboot reported this long after the
# window still makes the maintenance Executed, and only then is it Failed.
RESULT_GRACE = 600
# How far in the past a new maintenance may say it starts: it then starts now, whole. A form
# filled in slowly or a client whose clock lags is not refused.
LATE_START = 900
# Statuses that are still to come (kept past RETENTION, shown as upcoming).
PENDING = ("Inquiring", "Scheduled", "Executing")

# Per-interval counters whose rise is an event, and the event.
COUNTER_EVENTS = {
    "tcp_listen_overflows": "Network.ListenOverflow",
    "udp_rcvbuf_errors": "Network.UdpBufferFull",
    "udp_sndbuf_errors": "Network.UdpBufferFull",
}
# A reboot is a failure when the boot that just ended ended badly: a panic kept in pstore
# from that boot, one of these in its last kernel lines, or the service stopped uncleanly.
FAILURE_BEFORE_REBOOT = ("Kernel.Panic", "Kernel.HardLockup", "Kernel.SoftLockup", "Kernel.HungTask")
# How far before its end a boot's kernel lines count: a hung task hours before a planned
# reboot did not cause it. A pstore record counts anywhere in the boot: it is the crash dump.
LAST_LINES_S = 3600


class EventError(ValueError):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _row(r) -> dict[str, Any]:
    return {"event_id": r["event_id"], "instance_id": r["instance_id"], "type": r["type"], "level": r["level"],
            "status": r["status"], "publish_time": r["publish_time"], "not_before": r["not_before"],
            "finish_time": r["finish_time"], "last_time": r["last_time"], "details": json.loads(r["details"])}


class EventLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- detected events -------------------------------------------------------------------

    def record_batch(self, instance_id: str, batch: Batch, *, batch_id: str | None = None,
                     extra: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]] | None:
        """Events from one collection: its signals, and the counters whose rise is an event;
        `extra` are more `detected()` keyword sets of the same batch.

        All in one transaction with `batch_id` marked done (ingested_batches), so a batch's
        events are recorded whole or not at all: a retry after a failure records them once,
        and a retry after success (None is returned) records nothing."""
        if batch_id is None and not batch.signals and not extra and \
                not any(COUNTER_EVENTS.get(s.metric) and s.value > 0 for s in batch.samples):
            return []  # nothing to write: no transaction (diag.db has one write lock for all)
        with self.db.write() as c:
            if batch_id is not None and c.execute("INSERT OR IGNORE INTO ingested_batches VALUES (?, ?)",
                                                  (batch_id, time.time())).rowcount == 0:
                return None
            # Reboots last: a pstore panic of the boot that ended may come in the same batch, and
            # it decides what the reboot was.
            out = [self.record_signal(instance_id, s, _c=c)
                   for s in sorted(batch.signals, key=lambda s: s.kind == "reboot")]
            for s in batch.samples:
                etype = COUNTER_EVENTS.get(s.metric)
                if etype and s.value > 0:
                    out.append(self._detected(c, instance_id, etype, s.ts, f"{s.metric} rose by {s.value:g}",
                                              fold_key=s.metric, labels={"metric": s.metric}, count=int(s.value)))
            for kw in extra:
                out.append(self._detected(c, instance_id, **kw))
        return out

    def record_signal(self, instance_id: str, signal: Signal, *, _c: Any = None) -> dict[str, Any]:
        labels = dict(signal.labels)
        if signal.kind == "reboot":
            failed = self._failure_before(instance_id, signal.ts, _float(labels.get("previous_boot_time")))
            etype = "InstanceFailure.Reboot" if failed else "Instance.Reboot"
            if failed:
                labels["cause"] = failed
            event = self.detected(instance_id, etype, signal.ts, signal.message, labels=labels,
                                  fold_key=labels.get("boot_id", ""), kind="reboot", _c=_c)
            if _c is not None:
                self._avoided(_c, instance_id, event)
            else:
                with self.db.write() as c:
                    self._avoided(c, instance_id, event)
            return event
        kind = kernel_patterns.KINDS.get(signal.kind)
        if signal.kind == kernel_patterns.CUSTOM:  # an operator's rule (config log_patterns)
            etype, level, key = kernel_patterns.custom_event(labels)
        else:
            if kind is None:
                etype, level, fold = "Kernel." + signal.kind, WARN, ()
            else:
                etype, level, fold = kind.event, kind.level, kind.fold
            key = "|".join([signal.kind, *(labels.get(k, "") for k in fold)])
        return self.detected(instance_id, etype, signal.ts, signal.message, level=level, labels=labels,
                             fold_key=key, count=signal.count, lines=signal.lines, kind=signal.kind, _c=_c)

    def detected(self, instance_id: str, etype: str, ts: float, message: str, *, level: str | None = None,
                 labels: dict[str, str] | None = None, fold_key: str = "", count: int = 1,
                 lines: Iterable[str] = (), kind: str | None = None, _c: Any = None) -> dict[str, Any]:
        """Record a happening, folding it into a recent event of the same fault. `_c`: the
        caller's open transaction (record_batch), else one of its own."""
        kw = dict(level=level, labels=labels, fold_key=fold_key, count=count, lines=lines, kind=kind)
        if _c is not None:
            return self._detected(_c, instance_id, etype, ts, message, **kw)
        with self.db.write() as c:
            return self._detected(c, instance_id, etype, ts, message, **kw)

    def raised(self, instance_id: str, events: Iterable[RaisedEvent], ts: float) -> None:
        """Record the events a diagnosis' checks raised, labelled with their source check."""
        events = list(events)
        if not events:
            return  # no transaction (diag.db has one write lock for all)
        with self.db.write() as c:
            for e in events:
                self._detected(c, instance_id, e.type, ts, e.message, fold_key=e.fold_key,
                               labels={SOURCE_LABEL: e.source, **e.labels})

    def _detected(self, c: Any, instance_id: str, etype: str, ts: float, message: str, *, level: str | None = None,
                  labels: dict[str, str] | None = None, fold_key: str = "", count: int = 1,
                  lines: Iterable[str] = (), kind: str | None = None) -> dict[str, Any]:
        level = level or TYPES.get(etype, (WARN, ""))[0]
        prev = c.execute(
            "SELECT * FROM events WHERE instance_id = ? AND type = ? AND fold_key = ? AND status = 'Executed' "
            "AND last_time >= ? ORDER BY last_time DESC LIMIT 1",
            (instance_id, etype, fold_key, ts - FOLD_WINDOW)).fetchone()
        if prev is not None:
            details = json.loads(prev["details"])
            details["count"] = details.get("count", 1) + count
            details["lines"] = (details.get("lines", []) + list(lines))[:MAX_LINES]
            details["last_message"] = message
            c.execute("UPDATE events SET last_time = ?, details = ? WHERE event_id = ?",
                      (max(ts, prev["last_time"]), json.dumps(details), prev["event_id"]))
            return _row(c.execute("SELECT * FROM events WHERE event_id = ?", (prev["event_id"],)).fetchone())
        details = {"message": message, "labels": labels or {}, "count": count, "lines": list(lines)[:MAX_LINES]}
        if kind:
            details["kind"] = kind
        event_id = "e-" + uuid.uuid4().hex[:16]
        c.execute("INSERT INTO events (event_id, instance_id, type, level, status, publish_time, not_before, "
                  "finish_time, last_time, fold_key, details) VALUES (?, ?, ?, ?, 'Executed', ?, ?, ?, ?, ?, ?)",
                  (event_id, instance_id, etype, level, ts, ts, ts, ts, fold_key, json.dumps(details)))
        return _row(c.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone())

    def _failure_before(self, instance_id: str, boot_ts: float, previous_boot: float | None) -> str | None:
        """Why the boot that ended before `boot_ts` ended badly, from that boot's evidence only:
        what happened before an earlier reboot was that reboot's cause, not this one's."""
        if previous_boot is None or previous_boot >= boot_ts:
            # An agent too old to say when its previous boot began: the last boot we recorded.
            rows = self.db.read("SELECT MAX(publish_time) AS t FROM events WHERE instance_id = ? "
                                "AND type IN ('Instance.Reboot', 'InstanceFailure.Reboot') AND publish_time < ?",
                                (instance_id, boot_ts))
            previous_boot = rows[0]["t"] if rows and rows[0]["t"] is not None else boot_ts - LAST_LINES_S
        # An event that began in that boot, or that was still being repeated in its last hour.
        rows = self.db.read(
            f"SELECT type, details, publish_time, last_time FROM events WHERE instance_id = ? "
            f"AND type IN ({','.join('?' * len(FAILURE_BEFORE_REBOOT))}) AND publish_time < ? AND last_time >= ? "
            "ORDER BY publish_time DESC", (instance_id, *FAILURE_BEFORE_REBOOT, boot_ts, previous_boot))
        for r in rows:
            from_pstore = json.loads(r["details"]).get("labels", {}).get("source") == "pstore"
            if from_pstore or min(r["last_time"], boot_ts) >= boot_ts - LAST_LINES_S:
                return r["type"]
        # Set by Service.start only when this run found its previous run's marker: that run
        # was in the boot that ended (boot.json names the boot the service last ran in).
        unclean = self.db.get_kv(f"unclean_stop:{instance_id}")
        return "unclean stop" if unclean else None

    # -- scheduled maintenance ------------------------------------------------------------

    def _avoided(self, c: Any, instance_id: str, reboot: dict[str, Any]) -> None:
        """A reboot before a planned reboot's window: the operator did it, the plan is Avoided."""
        ts = reboot["publish_time"]
        for r in c.execute(f"SELECT * FROM events WHERE instance_id = ? AND type IN ({','.join('?' * len(REBOOTING))}) "
                           "AND status IN ('Inquiring', 'Scheduled') AND publish_time <= ? AND not_before > ?",
                           (instance_id, *REBOOTING, ts, ts)).fetchall():
            details = json.loads(r["details"])
            details["result"] = f"the machine rebooted before the window ({reboot['event_id']})"
            details["reboot_event_id"] = reboot["event_id"]
            c.execute("UPDATE events SET status = 'Avoided', finish_time = ?, last_time = ?, details = ? "
                      "WHERE event_id = ?", (ts, ts, json.dumps(details), r["event_id"]))

    def schedule(self, instance_id: str, etype: str, not_before: float, duration: float,
                 comment: str = "", now: float | None = None, *, inquire: bool = False) -> dict[str, Any]:
        """`inquire`: the event waits in Inquiring for the operator's accept() before it runs."""
        now = time.time() if now is None else now
        if etype not in MAINTENANCE:
            raise EventError(422, f"type must be one of {', '.join(MAINTENANCE)}", "type")
        if not 60 <= duration <= 7 * 86400:
            raise EventError(422, "duration must be between 1m and 7d", "duration")
        if not_before < now - LATE_START:
            raise EventError(422, "not_before is in the past", "not_before")
        not_before = max(not_before, now)  # a start a little in the past (a slow form, a lagging clock) is now
        event_id = "e-" + uuid.uuid4().hex[:16]
        details = {"message": comment or f"{etype} scheduled", "duration": duration, "labels": {}, "count": 1}
        with self.db.write() as c:
            c.execute("INSERT INTO events (event_id, instance_id, type, level, status, publish_time, not_before, "
                      "finish_time, last_time, fold_key, details) VALUES (?, ?, ?, 'INFO', ?, ?, ?, ?, ?, '', ?)",
                      (event_id, instance_id, etype, "Inquiring" if inquire else "Scheduled", now, not_before,
                       not_before + duration, now, json.dumps(details)))
        self.tick(now)
        return self.get(event_id)

    def _pending(self, c: Any, event_id: str, allowed: tuple[str, ...], what: str) -> Any:
        r = c.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if r is None:
            raise EventError(404, f"no event {event_id}")
        if r["status"] not in allowed:
            raise EventError(409, f"an event that is {r['status']} cannot be {what}")
        return r

    def accept(self, event_id: str, now: float | None = None) -> dict[str, Any]:
        """The operator's answer to an Inquiring event: it is Scheduled, and a window already
        due starts now, for its whole duration."""
        now = time.time() if now is None else now
        with self.db.write() as c:
            r = self._pending(c, event_id, ("Inquiring",), "accepted")
            start = max(r["not_before"], now)
            c.execute("UPDATE events SET status = 'Scheduled', not_before = ?, finish_time = ?, last_time = ? "
                      "WHERE event_id = ?", (start, start + (r["finish_time"] - r["not_before"]), now, event_id))
        self.tick(now)
        return self.get(event_id)

    def reschedule(self, event_id: str, not_before: float, now: float | None = None) -> dict[str, Any]:
        """A new start for an event not yet running, keeping its duration."""
        now = time.time() if now is None else now
        if not_before < now - 60:
            raise EventError(409, "not_before is in the past", "not_before")
        with self.db.write() as c:
            r = self._pending(c, event_id, ("Inquiring", "Scheduled"), "rescheduled")
            c.execute("UPDATE events SET not_before = ?, finish_time = ?, last_time = ? WHERE event_id = ?",
                      (not_before, not_before + (r["finish_time"] - r["not_before"]), now, event_id))
        self.tick(now)
        return self.get(event_id)

    def cancel(self, event_id: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self.db.write() as c:
            self._pending(c, event_id, ("Inquiring", "Scheduled"), "canceled")
            c.execute("UPDATE events SET status = 'Canceled', finish_time = ?, last_time = ? WHERE event_id = ?",
                      (now, now, event_id))
        return self.get(event_id)

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Move scheduled maintenance along its lifecycle; returns the events that changed."""
        now = time.time() if now is None else now
        changed = []
        with self.db.write() as c:
            for r in c.execute("SELECT event_id FROM events WHERE status = 'Scheduled' AND not_before <= ?", (now,)):
                changed.append(r["event_id"])
            c.execute("UPDATE events SET status = 'Executing', last_time = ? WHERE status = 'Scheduled' AND not_before <= ?",
                      (now, now))
            for r in c.execute("SELECT * FROM events WHERE status = 'Executing' AND finish_time <= ?", (now,)).fetchall():
                status, details = self._result(c, r, now)
                if status is not None:
                    c.execute("UPDATE events SET status = ?, last_time = ?, details = ? WHERE event_id = ?",
                              (status, now, json.dumps(details), r["event_id"]))
                    changed.append(r["event_id"])
        return [self.get(e) for e in dict.fromkeys(changed)]

    @staticmethod
    def _result(c: Any, r: Any, now: float) -> tuple[str | None, dict[str, Any]]:
        """How a finished window ended: (status, details), or (None, _) while a reboot may still be reported."""
        details = json.loads(r["details"])
        if r["type"] not in REBOOTING:
            return "Executed", details
        seen = c.execute(f"SELECT event_id, publish_time FROM events WHERE instance_id = ? "
                         f"AND type IN ({','.join('?' * len(REBOOTS))}) AND publish_time >= ? AND publish_time <= ? "
                         "ORDER BY publish_time LIMIT 1",
                         (r["instance_id"], *REBOOTS, r["not_before"], r["finish_time"] + RESULT_GRACE)).fetchone()
        if seen is not None:
            details.update(result=f"the machine rebooted in the window ({seen['event_id']})",
                           reboot_event_id=seen["event_id"])
            return "Executed", details
        if now < r["finish_time"] + RESULT_GRACE:
            return None, details
        details["result"] = "no reboot was seen in the window"
        return "Failed", details

    def maintaining(self, instance_id: str, now: float | None = None) -> dict[str, Any] | None:
        """The maintenance event executing on this instance now, if any."""
        now = time.time() if now is None else now
        rows = self.db.read("SELECT * FROM events WHERE instance_id = ? AND type LIKE 'SystemMaintenance.%' "
                            "AND status IN ('Scheduled', 'Executing') AND not_before <= ? AND finish_time > ? "
                            "ORDER BY not_before LIMIT 1", (instance_id, now, now))
        return _row(rows[0]) if rows else None

    # -- reading ---------------------------------------------------------------------------

    def get(self, event_id: str) -> dict[str, Any]:
        rows = self.db.read("SELECT * FROM events WHERE event_id = ?", (event_id,))
        if not rows:
            raise EventError(404, f"no event {event_id}")
        return _row(rows[0])

    def list(self, instance_id: str | None = None, types: Iterable[str] | None = None,
             status: str | None = None, since: float | None = None, until: float | None = None,
             limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first. `since`/`until` select events that were active in that span."""
        sql, args = "SELECT * FROM events WHERE 1=1", []
        if instance_id:
            sql += " AND instance_id = ?"
            args.append(instance_id)
        types = list(types or [])
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += types
        if status:
            sql += " AND status = ?"
            args.append(status)
        if since is not None:
            sql += " AND last_time >= ?"
            args.append(since)
        if until is not None:
            sql += " AND publish_time <= ?"
            args.append(until)
        sql += " ORDER BY publish_time DESC, event_id LIMIT ?"
        args.append(limit)
        return [_row(r) for r in self.db.read(sql, args)]

    def newest_mark(self) -> int:
        """Where the log ends now: a reader that wants only what happens from now on starts here."""
        return self.db.read("SELECT COALESCE(MAX(rowid), 0) AS m FROM events")[0]["m"]

    def recorded_since(self, mark: int, limit: int = 10000) -> tuple[list[dict[str, Any]], int]:
        """Events recorded after `mark` (from newest_mark or a previous call), oldest first, at
        most `limit`, and the mark to read on from. A repeat folded into an event is not new."""
        rows = self.db.read("SELECT rowid AS rid, * FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                            (mark, limit))
        return [_row(r) for r in rows], (rows[-1]["rid"] if rows else mark)

    def expire(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.db.write() as c:
            return c.execute(f"DELETE FROM events WHERE last_time < ? AND status NOT IN ({','.join('?' * len(PENDING))})",
                             (now - RETENTION, *PENDING)).rowcount


def alibaba_shape(event: dict[str, Any], product: str = "diag") -> dict[str, Any]:
    """The Alibaba Cloud event-notification body (PRODUCT.md), for webhooks."""
    if event["type"] == "Instance.StateChange":
        # The seed's lifecycle notice: no status in the name, the new state in the content.
        state = (event["details"].get("labels") or {}).get("state", "")
        return {"id": event["event_id"], "eventTime": event["publish_time"], "level": event["level"],
                "name": "Instance:StateChange", "product": product, "resourceId": event["instance_id"],
                "content": {**event["details"], "resourceId": event["instance_id"], "resourceType": "Instance",
                            "state": state}}
    return {"id": event["event_id"], "eventTime": event["publish_time"], "level": event["level"],
            "name": f"Instance:{event['type']}:{event['status']}", "product": product,
            "resourceId": event["instance_id"], "content": event["details"]}
