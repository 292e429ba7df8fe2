"""Alerting: policies, the evaluator, silences and the notification outbox.

`Alerting` is built by diag.wiring with the parts it reads; the scheduler calls `evaluate()`
every collection interval and `deliver()` every few seconds; the routes call the rest.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from diag.alerting import evaluator, inhibition, notices, quiet, resend, routing, schema, semantics
from diag.alerting.evaluator import Change, alert_id
from diag.alerting.labels import alert_labels
from diag.alerting.notices import recipients
from diag.alerting.outbox import Outbox
from diag.alerting.policy import Contact, ContactGroup, Policy, PolicyError, dump, parse, validate
from checks.windows import fmt_time
from diag.alerting.repository import Repository
from checks.base import Check
from diag.db import Database
from diag.events import EventLog
from diag.instances import Instances
from diag.reports import Reports
from diag.settings.delivery import AlertingConfig
from diag.store import ReadStore

log = logging.getLogger(__name__)

WATERMARK = "alerting:events_rowid"  # an EventLog mark: the key keeps its name in existing databases
HISTORY_DAYS = 60


class Alerting:
    def __init__(self, db: Database, *, settings: AlertingConfig, local_id: str, interval: float, listen_url: str,
                 store: ReadStore, events: EventLog, instances: Instances, reports: Reports,
                 checks: Sequence[Check]) -> None:
        self.settings = settings
        self.db = db
        self.local_id = local_id
        self.interval = interval
        self._listen_url = listen_url
        self.store = store
        self.events = events
        self.instances = instances
        self.reports = reports
        self.checks = list(checks)
        schema.create(self.db)
        self.repo = Repository(self.db)
        self.outbox = Outbox(self.db, self.settings)
        self.inhibit_rules = inhibition.Rules(self.db)
        self.inhibit_rules.seed_default()
        self._held: set[str] | None = None  # instances in maintenance, as of the last cycle
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[str, Policy]] = {}
        self.last_stats: dict[str, float] = {}
        if self.db.get_kv(WATERMARK) is None:  # alert on what happens from now on, not on old history
            self.db.set_kv(WATERMARK, self.events.newest_mark())
        from diag.alerting import defaults, files

        if self.settings.policies_file is not None:
            files.load(self, self.settings.policies_file)
        if self.settings.defaults:
            defaults.create_once(self)
        if self.settings.notify_webhook is not None:
            given = defaults.notify_webhook(self, self.settings.notify_webhook)
            if given:
                log.info("the default policies %s notify alerting.notify_webhook", ", ".join(given))

    @property
    def base_url(self) -> str:
        return self.settings.external_url or self._listen_url

    # -- policies, contacts, groups --------------------------------------------------------

    def validate_policy(self, body: Any) -> Policy:
        known = set(self.metric_names())
        return validate(body, metric_exists=known.__contains__, interval=self.interval,
                        group_exists=lambda g: self.repo.exists("contact_group", g))

    def metric_names(self) -> list[str]:
        """Metric names a policy may use: the catalogue and what the store holds, or the
        catalogue alone when the store cannot list (an engine that is down)."""
        from diag import catalogue

        names = list(catalogue.BY_NAME)
        try:
            names += self.store.metric_names()
        except Exception:  # noqa: BLE001 - a store that cannot list still has the catalogue
            log.warning("the store could not list its metrics", exc_info=True)
        return names

    def save_policy(self, body: Any, policy_id: str | None = None, source: str = "api") -> dict[str, Any]:
        p = self.validate_policy(body)
        saved = self.repo.put("policy", dump(p), policy_id, source)
        self._retire_uncovered(saved["policy_id"], p)
        return saved

    def _retire_uncovered(self, policy_id: str, p: Policy) -> None:
        """Resolve the live alerts a saved policy no longer makes: all of a disabled one, those
        of a condition it no longer has or of an instance it no longer targets. Nothing would
        evaluate them again, and the resends would keep them active in Alertmanager for ever."""
        if not p.enabled:
            self._retire("policy_id = ?", (policy_id,), "the policy was disabled", None)
            return
        paths = ["all"] if p.match == "all" and p.conditions else [f"conditions[{i}]" for i in range(len(p.conditions))]
        paths += [f"event_conditions[{i}]" for i in range(len(p.event_conditions))]
        targeted = [i["instance_id"] for i in self.instances.list()
                    if p.targets.selects(i["instance_id"], i["labels"])]
        where = (f"policy_id = ? AND (condition NOT IN ({','.join('?' * len(paths))}) "
                 f"OR instance_id NOT IN ({','.join('?' * len(targeted))}))")
        self._retire(where, (policy_id, *paths, *targeted), "the policy no longer covers it", None)

    def patch_policy(self, policy_id: str, changes: Any) -> dict[str, Any]:
        cur = self.repo.get("policy", policy_id)
        if cur is None:
            raise PolicyError(None, f"no policy {policy_id}", 404)
        if not isinstance(changes, dict):
            raise PolicyError(None, "must be a JSON object", 400)
        body = {k: v for k, v in cur.items() if k in Policy.model_fields}
        body.update(changes)
        return self.save_policy(body, policy_id, cur["source"])

    def save_contact(self, body: Any, contact_id: str | None = None) -> dict[str, Any]:
        c = dump(parse(Contact, body))
        for ch in c["channels"]:  # only signing robots have a secret: keep the others' bodies as they were
            if ch.get("secret") is None:
                ch.pop("secret", None)
        return self.repo.put("contact", c, contact_id)

    def save_group(self, body: Any, group_id: str | None = None) -> dict[str, Any]:
        g = parse(ContactGroup, body)
        for i, cid in enumerate(g.contacts):
            if not self.repo.exists("contact", cid):
                raise PolicyError(f"contacts[{i}]", f"unknown contact {cid[:80]!r}")
        return self.repo.put("contact_group", dump(g), group_id)

    def policies(self) -> list[tuple[str, Policy]]:
        out = []
        for pid, body in self.repo.policy_bodies():
            raw = json.dumps(body, sort_keys=True)
            cached = self._parsed.get(pid)
            if cached is None or cached[0] != raw:
                try:
                    cached = (raw, Policy.model_validate(body))
                except Exception:  # noqa: BLE001 - one stored policy that no longer parses must not stop the rest
                    log.exception("policy %s no longer validates; skipped", pid)
                    continue
                self._parsed[pid] = cached
            out.append((pid, cached[1]))
        return out

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> dict[str, Any]:
        """One cycle; returns its figures (changes, notices, seconds, store share)."""
        with self._lock:
            t0 = time.perf_counter()
            now = time.time() if now is None else now
            stats: dict[str, float] = {}
            changes, instances = self._changes(now, None, stats)
            done = self._apply(changes, instances, now)
            done["grouped"] = quiet.flush_groups(self, instances, now)
            done["notices"] += self._resend(instances, now)
            self.repo.expire_silences(now)
            stats.update(done)
            stats["seconds"] = time.perf_counter() - t0
            self.last_stats = stats
            return stats

    def _changes(self, now: float, only: str | None, stats: dict[str, float],
                 sample_event: dict[str, Any] | None = None) -> tuple[list[Change], dict[str, dict]]:
        instances = {i["instance_id"]: i for i in self.instances.list() if i["monitoring"]}
        held = {iid for iid in instances if self.events.maintaining(iid, now)}
        policies = [(pid, p) for pid, p in self.policies() if only is None or pid == only]
        if only is not None:  # a test evaluates even a disabled policy, or one outside its window
            policies = [(pid, p.model_copy(update={"enabled": True, "effective": None})) for pid, p in policies]
        jobs = evaluator.active_jobs(policies, list(instances.values()), held, now)
        alerts = self.repo.alert_rows()
        if sample_event is not None:
            new_events, top = [sample_event], None
        else:
            new_events, top = self.events.recorded_since(int(self.db.get_kv(WATERMARK) or 0))
        changes = evaluator.metric_changes(self.store, jobs, alerts, now, stats, everything=only is not None)
        changes += evaluator.event_changes(new_events, jobs, alerts, now)
        self._alerts, self._top, self._held = alerts, top, held
        return changes, instances

    def _apply(self, changes: list[Change], instances: dict[str, dict], now: float) -> dict[str, float]:
        """Write the changes in one transaction: alert rows, state history, outbox rows."""
        planned = [(ch, plan) for ch in changes if (plan := self._plan(ch, now)) is not None]
        # An alert firing in this cycle inhibits from this cycle on: the rules see the planned rows.
        why_quiet = quiet.check(self, instances, now, [p[0] for _, p in planned]) if planned else None
        counts = {"changes": 0, "notices": 0, "muted": 0}
        who: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        routes: dict[str, Any] = {}
        rows, history, outgoing, grouped = [], [], [], []
        for ch, (row, step, kind) in planned:
            labels = quiet.labels(row, ch.policy, instances)
            mute = why_quiet(row, labels) if kind and why_quiet else None
            to: list[dict[str, Any]] = []
            if kind and mute is None:
                groups = tuple(ch.policy.contact_groups)
                if groups not in who:
                    who[groups] = recipients(self.repo, list(groups))
                to = who[groups]
            if to:
                notice = self.notice_for(ch, row, "resolved" if step.state == "resolved" else "firing",
                                         kind, instances.get(row["instance_id"], {}), now)
                if ch.policy_id not in routes:
                    routes[ch.policy_id] = routing.route_for(ch.policy_id, ch.policy,
                                                             lambda g: self.repo.get("contact_group", g))
                route = routes[ch.policy_id]
                outgoing += [(notice, contact, idx) for contact in to for idx, chan in enumerate(contact["channels"])
                             if route is None or chan["type"] not in routing.GROUPED_TYPES]
                if route is not None:
                    grouped.append((route, ch, labels, notice))
                row.update(message=notice["message"], last_notified_at=now, notices=row["notices"] + 1)
                if any(resend.am_channels(contact) for contact in to):
                    resend.mark(row, notice, now)
            elif row["state"] == "resolved" and resend.known(row):
                # Nobody is told (no recovery notices, an event alert ageing out, a silence), but
                # the Alertmanager holding the alert active must learn that it ended.
                outgoing += self._to_alertmanager(row, ch.policy, "resolved", "the condition cleared",
                                                  instances.get(row["instance_id"], {}), now)
            elif row["state"] == row["_prev"]:
                counts["muted"] += mute is not None
                continue  # muted, or nobody to tell: nothing to record until someone can be told
            rows.append(row)
            if row["state"] != row["_prev"]:
                detail = row.get("note") or ""
                if kind and mute is not None:
                    detail = mute
                elif to:
                    detail = row["message"]
                history.append((now, "state", row["alert_id"], ch.policy_id, row["instance_id"], row["condition"],
                                row["_prev"], row["state"], row.get("value"), None, None, None, detail))
        for r in rows:
            self._alerts[(r["policy_id"], r["condition"], r["instance_id"], r.get("series", ""))] = r
        with self.db.write() as c:
            Repository.save_alerts(c, rows, now)
            Repository.add_state_history(c, history)
            for notice, contact, idx in outgoing:
                counts["notices"] += self.outbox.enqueue(c, notice, contact, idx, self.base_url, now)
            for (owner, route), ch, labels, notice in grouped:
                routing.add(c, owner, route, ch.policy_id, ch.policy.contact_groups, labels, notice, now)
            if self._top is not None:  # the events read, in the transaction of what they made
                Database.set_kv_in(c, WATERMARK, self._top)
        counts["changes"] = len(rows)
        return counts

    def _to_alertmanager(self, row: dict[str, Any], p: Policy, status: str, text: str, instance: dict[str, Any],
                         now: float, summary: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
        """(notice, contact, channel index) for each Alertmanager channel of the policy's
        groups: a resend of a firing alert, or the resolve of one nobody else is told about."""
        targets = [(c, i) for c in recipients(self.repo, list(p.contact_groups)) for i in resend.am_channels(c)]
        if not targets:
            return []
        kind = "refresh" if status == "firing" else "resolved"
        notice = self.enrich(notices.state_notice(row["policy_id"], p, row, status=status, kind=kind, text=text,
                                                  summary=summary, instance=instance, base_url=self.base_url,
                                                  now=now), p)
        return [(notice, c, i) for c, i in targets]

    def _resend(self, instances: dict[str, dict], now: float) -> int:
        """Queue a resend of each firing alert Alertmanager has not been sent for a resend
        delay (resend.py), with endsAt a few minutes ahead; muted alerts are left to expire there."""
        policies = {pid: p for pid, p in self.policies() if p.enabled and p.contact_groups}
        rows = resend.due([r for r in self._alerts.values() if r["policy_id"] in policies], now)
        if not rows:
            return 0
        why_quiet = quiet.check(self, instances, now)
        queued = 0
        with self.db.write() as c:
            for row in rows:
                p = policies[row["policy_id"]]
                if why_quiet(row, quiet.labels(row, p, instances)) is not None:
                    continue
                last = resend.known(row) or {}
                out = self._to_alertmanager(row, p, "firing", last.get("text") or "still firing",
                                            instances.get(row["instance_id"], {}), now, summary=last.get("summary"))
                if not out:
                    continue
                for notice, contact, idx in out:
                    queued += self.outbox.enqueue(c, notice, contact, idx, self.base_url, now)
                resend.mark(row, out[0][0], now)
                Repository.set_detail(c, row["alert_id"], row["detail"])
        return queued

    def forget_instance(self, instance_id: str, now: float | None = None) -> int:
        """Resolve the firing alerts of an instance that is being forgotten (state, history,
        resolve notices to every channel, Alertmanager's included) and clear its pending ones;
        returns how many alerts it ended."""
        return self._retire("instance_id = ?", (instance_id,), "the instance was forgotten", now)

    def delete_policy(self, policy_id: str, now: float | None = None) -> bool:
        """Delete a policy and its alerts, resolving its firing ones first where they were told."""
        self._retire("policy_id = ?", (policy_id,), "the policy was deleted", now)
        return self.repo.delete("policy", policy_id)

    def _retire(self, where: str, args: tuple, reason: str, now: float | None) -> int:
        """Firing alerts matching `where` resolve, pending ones clear, in one transaction with
        their history and notices: the channels that were told it fired are told it ended."""
        now = time.time() if now is None else now
        with self._lock:
            policies = dict(self.policies())
            rows = self.repo.live_alert_rows(where, args)
            outgoing, history = [], []
            for row in rows:
                prev, p = row["state"], policies.get(row["policy_id"])
                row.update(state="resolved" if prev == "firing" else "ok")
                if prev == "firing":
                    row["resolved_at"] = now
                    instance = self.instances.get(row["instance_id"]) or {}
                    # an event alert ends without a notice, as when its hold runs out
                    if row["notices"] and p is not None and p.notify_recovery \
                            and not row["condition"].startswith("event_conditions"):
                        notice = self.enrich(notices.state_notice(
                            row["policy_id"], p, row, status="resolved", kind="resolved", text=reason,
                            summary=None, instance=instance, base_url=self.base_url, now=now), p)
                        outgoing += [(notice, c, i) for c in recipients(self.repo, list(p.contact_groups))
                                     for i in range(len(c["channels"]))]
                    elif resend.known(row) and p is not None:
                        outgoing += self._to_alertmanager(row, p, "resolved", reason, instance, now)
                history.append((now, "state", row["alert_id"], row["policy_id"], row["instance_id"], row["condition"],
                                prev, row["state"], row["value"], None, None, None, reason))
            with self.db.write() as c:
                Repository.set_states(c, rows, now)
                Repository.add_state_history(c, history)
                for notice, contact, idx in outgoing:
                    self.outbox.enqueue(c, notice, contact, idx, self.base_url, now)
        return len(rows)

    # -- silences, inhibition, groups (quiet.py, routing.py) -------------------------------

    def labels_of(self, alert: dict[str, Any]) -> dict[str, str]:
        """An alert's labels (row or API object), as silences and rules match them."""
        return quiet.labels_of(self, alert)

    def covering(self, now: float) -> Any:
        """`cover(alert)` -> {labels, silence, inhibited_by}: what keeps an alert quiet now."""
        return quiet.covering(self, now)

    def ack(self, alert_id: str, who: str, comment: str = "", expires_in: float = 86400,
            now: float | None = None) -> dict[str, Any]:
        """"I am on it": the alert's repeats stop until it resolves (its next episode starts
        unacknowledged) or the acknowledgement expires. Recorded in the alert and its history."""
        now = time.time() if now is None else now
        with self.db.write() as c:
            r = Repository.alert_row(c, alert_id)
            if r is None:
                raise PolicyError(None, f"no alert {alert_id}", 404)
            if r["state"] not in ("firing", "pending"):
                raise PolicyError(None, f"an alert that is {r['state']} needs no acknowledgement", 409)
            detail = json.loads(r["detail"] or "{}")
            detail["ack"] = {"by": who, "at": now, "until": now + expires_in, "comment": comment, "episode": r["episode"]}
            Repository.set_detail(c, alert_id, json.dumps(detail), now)
            Repository.add_history(c, now, "ack", alert_id=alert_id, policy_id=r["policy_id"],
                                   instance_id=r["instance_id"], condition=r["condition"], from_state=r["state"],
                                   to_state=r["state"], value=r["value"],
                                   detail=f"acknowledged by {who} until {fmt_time(now + expires_in)}"
                                   + (f": {comment}" if comment else ""))
        return self.repo.alert(alert_id) or {}

    def _plan(self, ch: Change, now: float) -> tuple[dict[str, Any], semantics.Step, str | None] | None:
        """The alert row after this change, the step taken and the notice kind, or None."""
        pid, cond, iid, series = ch.key
        prev = self._alerts.get(ch.key)
        state = prev["state"] if prev else None
        episode_notices = prev["notices"] if prev else 0
        step = semantics.transition(state, ch.verdict, last_notified_at=prev["last_notified_at"] if prev else None,
                                    silence=ch.policy.silence, now=now, notify_recovery=ch.policy.notify_recovery,
                                    notified_this_episode=episode_notices > 0)
        if step is None:
            return None
        row = dict(prev) if prev else {"alert_id": alert_id(pid, cond, iid, series), "policy_id": pid,
                                       "condition": cond, "instance_id": iid, "series": series, "episode": 0,
                                       "notices": 0, "last_notified_at": None, "started_at": None, "fired_at": None,
                                       "resolved_at": None, "detail": "{}"}
        row["_prev"] = state or "ok"
        raw = row.get("detail") or "{}"
        detail = json.loads(raw) if raw != "{}" else {}
        if step.new_episode:
            row.update(episode=row["episode"] + 1, notices=0, last_notified_at=None, fired_at=None, resolved_at=None,
                       started_at=ch.started_at or now)
            detail = {}
        row["state"], row["severity"] = step.state, ch.severity
        if ch.value is not None or ch.verdict != semantics.KEEP:
            row["value"] = ch.value
        if step.state == "firing" and row["_prev"] != "firing":
            row["fired_at"] = now
        if step.state == "resolved":
            row["resolved_at"] = now
            if ch.verdict == semantics.INSUFFICIENT:
                row["note"] = "no data for the whole evaluation window (insufficient data)"
        if ch.event is not None:
            detail.update(last_event_at=ch.event["publish_time"], event_id=ch.event["event_id"],
                          event_type=ch.event["type"])
        row["detail"] = json.dumps(detail) if detail else "{}"
        kind = step.notice
        if kind == "resolved" and cond.startswith("event_conditions"):
            kind = None  # an event has no recovery: its alert just ages out
        return row, step, kind

    def notice_for(self, ch: Change, row: dict[str, Any], status: str, kind: str, instance: dict[str, Any],
                   now: float) -> dict[str, Any]:
        return self.enrich(evaluator.message_for(ch, row, status, kind, instance, self.base_url, now), ch.policy)

    def enrich(self, n: dict[str, Any], p: Policy) -> dict[str, Any]:
        """What a notice carries beyond the alert (issue 18 item 5): its labels, the instance's
        name beside its id, the time in the seed's format and zone, the check the alert is
        about with its recommendation, the dashboard link when the server knows its external
        URL, and until when Alertmanager should hold it active unless it is re-sent."""
        from diag.alerting.notices import check_of, seed_time

        n["labels"] = alert_labels(n, p)
        n["ends_at"] = resend.ends_at(n["created_at"], self.interval)
        n["instance_name"] = n.get("hostname") or n["instance_id"]
        n["time_zone"] = self.settings.timezone
        n["event_time"] = seed_time(n["created_at"], self.settings.timezone)
        n["dashboard_url"] = n["url"] if self.settings.external_url else None
        check_id = check_of(n, p, {c.id for c in self.checks})
        n["check_id"], n["recommendation"] = check_id, self._recommendation(check_id, n["instance_id"])
        return n

    def _recommendation(self, check_id: str | None, instance_id: str) -> str:
        """The latest report's advice for this check on this instance when it found the problem
        (it may name the mountpoint or process), else the check's own."""
        if check_id is None:
            return ""
        try:
            latest = self.reports.latest_full(instance_id)
        except Exception:  # noqa: BLE001 - a notice goes out without the report's advice rather than not at all
            log.warning("no report for the recommendation of %s", check_id, exc_info=True)
            latest = None
        for r in (latest or {}).get("checks", []):
            if r.get("id") == check_id and r.get("status") in ("warning", "critical") and r.get("recommendation"):
                return str(r["recommendation"])
        check = next((c for c in self.checks if c.id == check_id), None)
        return check.recommendation if check is not None else ""

    def test_contact(self, contact_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """Send a test notice to each channel of a contact now, one attempt each, all at once
        within the outbox's deadline; returns each channel's outcome and records it in the
        history. Not queued: a test that fails is shown and not retried, so a robot being
        set up does not keep receiving tests after it was fixed or removed."""
        from concurrent.futures import ThreadPoolExecutor

        from diag.alerting import notices
        from diag.alerting.notifiers import payloads
        from diag.alerting.outbox import _describe, idempotency_key

        contact = self.repo.get("contact", contact_id)
        if contact is None:
            raise PolicyError(None, f"no contact {contact_id}", 404)
        now = time.time() if now is None else now
        me = self.instances.get(self.local_id) or {"instance_id": self.local_id}
        notice = notices.test_notice(contact["name"], me, self.base_url, now)
        notice.update(instance_name=notice["hostname"] or notice["instance_id"], time_zone=self.settings.timezone,
                      event_time=notices.seed_time(now, self.settings.timezone),
                      dashboard_url=notice["url"] if self.settings.external_url else None, check_id=None,
                      recommendation="")

        def one(i: int, ch: dict[str, Any]) -> dict[str, Any]:
            body = payloads.render(ch, notice, contact["name"], self.base_url)
            outcome, detail = self._send_once(ch, body, idempotency_key("test", contact_id, i, now))
            return {"index": i, "type": ch["type"], "channel": _describe(ch), "outcome": outcome, "detail": detail}

        with ThreadPoolExecutor(max_workers=min(8, len(contact["channels"]))) as pool:
            results = list(pool.map(lambda a: one(*a), enumerate(contact["channels"])))
        with self.db.write() as c:
            for r in results:
                Repository.add_history(c, time.time(), "test", channel=r["channel"], outcome=r["outcome"],
                                       detail=f"test of contact {contact['name']}: {r['detail']}")
        return results

    def _send_once(self, channel: dict[str, Any], body: Any, key: str) -> tuple[str, str]:
        """One attempt within the outbox's deadline, never retried: ("delivered" | "failed", detail)."""
        from diag.alerting.notifiers import DeliveryError

        try:
            return "delivered", self.outbox._send(channel, body, key, self.settings, deadline=self.outbox.deadline)
        except DeliveryError as e:
            return "failed", str(e)[:500]
        except Exception as e:  # noqa: BLE001 - a notifier bug is this channel's failure, not the request's
            log.exception("test of a %s channel failed unexpectedly", channel.get("type"))
            return "failed", type(e).__name__

    def simulate_event(self, policy_id: str, now: float | None = None) -> dict[str, Any]:
        """An event-only policy's test: a sample event of the type it watches, on an instance it
        targets, through the same evaluation and notice rendering as a real one, its notices
        marked as a test and sent once to the policy's contacts now. No alert is stored; the
        sends are in the history as tests. Returns the preview with `event` and each send's
        `to` (the channel as the history names it), `outcome` and `detail`."""
        from diag.alerting.outbox import _describe, idempotency_key
        from diag.alerting.preview import event_sample, preview

        now = time.time() if now is None else now
        parsed = dict(self.policies()).get(policy_id)
        if parsed is None:
            raise PolicyError(None, f"no policy {policy_id}", 404)
        targeted = [i["instance_id"] for i in self.instances.list()
                    if i["monitoring"] and parsed.targets.selects(i["instance_id"], i.get("labels") or {})]
        sample = event_sample(parsed, targeted[0] if targeted else self.local_id)
        if sample is None:
            raise PolicyError("event_conditions", "no known event type matches these conditions to simulate", 422)
        result = preview(self, policy_id, sample, now, as_test=True)
        history = []
        for r in result["results"]:
            for k, send in enumerate(r["notifications"]):
                key = idempotency_key("simulate", policy_id, r["instance_id"], send["contact_id"], k, now)
                send["outcome"], send["detail"] = self._send_once(send["channel"], send["payload"], key)
                send["to"] = _describe(send["channel"])
                history.append((send["to"], send["outcome"], r["instance_id"],
                                f"test of policy {parsed.name}: simulated {sample['type']}: {send['detail']}"))
        with self.db.write() as c:
            for to, outcome, iid, detail in history:
                Repository.add_history(c, time.time(), "test", policy_id=policy_id, instance_id=iid,
                                       channel=to, outcome=outcome, detail=detail)
        return {**result, "event": sample}

    def deliver(self, now: float | None = None, wait: float | None = None) -> dict[str, int]:
        return dict(self.outbox.deliver(now, wait=wait))

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.repo.expire_history(now - HISTORY_DAYS * 86400)
        self.repo.expire_silences(now)

    # -- test ----------------------------------------------------------------------------

    def test(self, policy_id: str, sample_event: dict[str, Any] | None = None,
             now: float | None = None) -> dict[str, Any]:
        """What the policy would do now (or on this event), sending and storing nothing."""
        from diag.alerting.preview import preview

        return preview(self, policy_id, sample_event, time.time() if now is None else now)
