"""The persisted outbox: every notification is a row before anything is sent.

The evaluator inserts rows in the same transaction that changes the alert's state, so a
crash either loses both or keeps both. `deliver` sends due rows, one attempt each,
recording every attempt and its outcome in alert_history; a failure is retried with
exponential backoff (base * 2^attempts, capped), until it succeeds, fails permanently
(a 4xx answer, a refused recipient) or is older than `give_up_after`.

Delivery is at-least-once. The one window for a double send is a crash after a
receiver accepted a notification and before its row was marked delivered: the row is
sent again after the restart, with the same idempotency key (the `Idempotency-Key`
header, the mail's Message-ID; Alertmanager deduplicates by labels itself). After the
row is marked delivered it is never sent again.

Each receiver (an HTTP origin, or the mail server) has its own lane: a pass starts one
thread per receiver with due rows and sends that receiver's rows in order, so a
receiver that hangs holds only its own lane, never another contact's notices; a lane
still busy from an earlier pass is skipped, never doubled. An HTTP attempt has a hard
wall-clock deadline (`deadline`), after which it counts as a failure and is retried
with backoff; the rest of that lane waits for the next pass rather than each row
waiting out the deadline in turn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from diag.alerting import notifiers
from diag.alerting.notifiers import DeliveryError, payloads
from diag.alerting.policy import CHAT
from diag.alerting.repository import Repository
from diag.db import Database

log = logging.getLogger(__name__)

DEADLINE = 10.0  # seconds, one HTTP attempt as a whole
MAX_LANES = 16  # receivers attempted at once; more wait for a lane to come free


def idempotency_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Outbox:
    def __init__(self, db: Database, settings: Any, send: Callable[..., str] = notifiers.send) -> None:
        self.db = db
        self.settings = settings  # config.alerting: smtp, retry_base, retry_cap, give_up_after
        self._send = send
        self.deadline = DEADLINE
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # receivers with a lane in flight
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def enqueue(self, c: sqlite3.Connection, notice: dict[str, Any], contact: dict[str, Any],
                channel_index: int, external_url: str, now: float) -> bool:
        """Insert one row (inside the caller's transaction); False if its key exists."""
        channel = contact["channels"][channel_index]
        refresh = notice["kind"] == "refresh"
        key = idempotency_key(notice["alert_id"], notice["episode"], notice["seq"], notice["kind"],
                              contact["contact_id"], channel_index, *([notice["created_at"]] if refresh else []))
        body = payloads.render(channel, notice, contact["name"], external_url)
        nid = "n-" + uuid.uuid4().hex[:16]
        if refresh:
            # A resend supersedes the one before it (Alertmanager needs only the newest endsAt),
            # so a receiver that is down for an hour finds one row per alert, not sixty.
            c.execute("DELETE FROM alert_outbox WHERE alert_id = ? AND kind = 'refresh' AND contact_id = ? "
                      "AND channel = ?", (notice["alert_id"], contact["contact_id"], json.dumps(channel)))
        cur = c.execute(
            "INSERT OR IGNORE INTO alert_outbox (notification_id, key, alert_id, kind, contact_id, channel, payload, "
            "state, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            (nid, key, notice["alert_id"], notice["kind"], contact["contact_id"], json.dumps(channel),
             json.dumps(body), now, now))
        if cur.rowcount and not refresh:  # a resend every minute would bury the history; failures are recorded
            Repository.add_history(c, now, "notification", alert_id=notice["alert_id"], policy_id=notice["policy_id"],
                                   instance_id=notice["instance_id"], condition=notice["condition"],
                                   notification_id=nid, channel=_describe(channel), outcome="queued",
                                   detail=notice["kind"])
        return bool(cur.rowcount)

    def backoff(self, attempts: int) -> float:
        return float(min(self.settings.retry_cap, self.settings.retry_base * 2 ** max(0, attempts - 1)))

    def deliver(self, now: float | None = None, limit: int = 200, wait: float | None = None) -> Counter[str]:
        """Start sending what is due now, one lane per receiver, and wait for those lanes up
        to `wait` seconds (default: an attempt's deadline and a second); returns the
        outcomes (delivered, retry, failed) of the attempts finished by then. A lane that
        outlives the wait goes on and records its outcomes itself."""
        done: Counter[str] = Counter()
        now = time.time() if now is None else now
        started = []
        with self._lock:
            rows = self.db.read("SELECT * FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                                "ORDER BY created_at, rowid LIMIT ?", (now, limit))
            lanes: dict[str, list[sqlite3.Row]] = {}
            for r in rows:
                lane = receiver(json.loads(r["channel"]))
                if lane not in self._busy:
                    lanes.setdefault(lane, []).append(r)
            for lane, mine in list(lanes.items())[:max(0, MAX_LANES - len(self._busy))]:
                self._busy.add(lane)
                t = threading.Thread(target=self._lane, args=(lane, mine, now, done), name=f"outbox {lane}",
                                     daemon=True)
                t.start()
                started.append(t)
        end = time.monotonic() + (self.deadline + 1 if wait is None else wait)
        for t in started:
            t.join(max(0.0, end - time.monotonic()))
        with self._lock:
            return Counter(done)

    def _lane(self, lane: str, rows: list[sqlite3.Row], now: float, done: Counter[str]) -> None:
        try:
            for r in rows:
                outcome = self._attempt(r, now)
                with self._lock:
                    done[outcome] += 1
                if outcome == "retry":  # the receiver is failing now: its other rows wait for a later pass
                    break
        except Exception:  # noqa: BLE001 - e.g. the database closed under a late lane at shutdown
            log.exception("delivery lane %s stopped", lane)
        finally:
            with self._lock:
                self._busy.discard(lane)

    def _attempt(self, r: sqlite3.Row, now: float) -> str:
        channel = json.loads(r["channel"])
        attempts = r["attempts"] + 1
        try:
            detail = self._send(channel, json.loads(r["payload"]), r["key"], self.settings, deadline=self.deadline)
            outcome = "delivered"
        except DeliveryError as e:
            detail = str(e)[:500]
            late = now - r["created_at"] > self.settings.give_up_after
            outcome = "failed" if e.permanent or late else "retry"
        except Exception as e:  # noqa: BLE001 - a notifier bug must not stop the other rows
            log.exception("notifier %s failed unexpectedly", channel.get("type"))
            detail, outcome = f"{type(e).__name__}: {e}"[:500], "retry"
        at = max(now, time.time())  # `now` may be a test's clock ahead of the wall
        with self.db.write() as c:
            if outcome == "delivered":
                c.execute("UPDATE alert_outbox SET state = 'delivered', attempts = ?, delivered_at = ?, last_error = NULL "
                          "WHERE notification_id = ?", (attempts, at, r["notification_id"]))
            elif outcome == "failed":
                c.execute("UPDATE alert_outbox SET state = 'failed', attempts = ?, last_error = ? WHERE notification_id = ?",
                          (attempts, detail, r["notification_id"]))
            else:
                c.execute("UPDATE alert_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
                          "WHERE notification_id = ?", (attempts, at + self.backoff(attempts), detail, r["notification_id"]))
            if not (r["kind"] == "refresh" and outcome == "delivered"):  # a resend that worked is no news
                a = c.execute("SELECT policy_id, instance_id, condition FROM alerts WHERE alert_id = ?",
                              (r["alert_id"],)).fetchone()
                Repository.add_history(c, at, "delivery", alert_id=r["alert_id"], notification_id=r["notification_id"],
                                       policy_id=a["policy_id"] if a else None,
                                       instance_id=a["instance_id"] if a else None,
                                       condition=a["condition"] if a else None, channel=_describe(channel),
                                       outcome=outcome, detail=f"attempt {attempts}: {detail}")
        with self._lock:
            self.outcomes[(channel["type"], outcome)] += 1
        return outcome

    def counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self.db.read("SELECT state, COUNT(*) AS n FROM alert_outbox GROUP BY state")}

    def list(self, limit: int = 200) -> list[dict[str, Any]]:
        return [{k: r[k] for k in r.keys() if k != "payload"} for r in
                self.db.read("SELECT * FROM alert_outbox ORDER BY created_at DESC LIMIT ?", (limit,))]


def receiver(channel: dict[str, Any]) -> str:
    """The lane a channel's notices travel: its URL's origin, or the one mail server. Each
    chat robot is a lane of its own: the robots of a vendor share a host but each has its
    own rate limit and its own errors, so one refusing must not hold the others' notices.
    The robot is named by a hash of its URL, which is its token (lanes name threads)."""
    if channel["type"] == "email":
        return "smtp"
    try:
        u = urllib.parse.urlsplit(str(channel.get("url", "")))
        origin = f"{u.scheme}://{u.netloc.rpartition('@')[2]}".lower()
    except ValueError:  # "http://[": its sends fail at once (permanently); it must not stop the others' lanes
        origin = "invalid-url"
    if channel["type"] in CHAT:
        return f"{origin}#{hashlib.sha256(channel['url'].encode()).hexdigest()[:12]}"
    return origin


def _describe(channel: dict[str, Any]) -> str:
    if channel["type"] == "email":
        return f"email:{channel['address']}"
    if channel["type"] in CHAT:  # the history keeps no token: the robot's host and the hash of its URL
        return f"{channel['type']}:{receiver(channel)}"
    if channel["type"] == "webhook":
        return f"webhook/{channel.get('format', 'json')}:{channel['url']}"
    return f"alertmanager:{channel['url']}"
