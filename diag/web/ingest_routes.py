"""POST /api/v1/ingest: a batch from an agent, or a user's own metrics, stored durably."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from diag import catalogue
from diag.model import KernelLine, Sample, SampleColumns, Signal
from diag.settings.defaults import RETENTION
from diag.store import StoreFullError
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.validate import INSTANCE_ID, METRIC_NAME, finite, json_body, labels, string, too_deep
from diag.web.openapi import doc, ref
from diag.web.schemas import INGEST_BODY, INGEST_RESULT
from diag.web.parts import parts
from diag.wiring import Parts

bp = Blueprint("ingest_api", __name__, url_prefix="/api/v1")

MAX_SAMPLES = 20_000
MAX_SIGNALS = 1_000
MAX_KERNEL_LINES = 1_000  # an agent sends at most collectors.kernel_log.MAX_LINES_PER_CYCLE a batch
MAX_KERNEL_MESSAGE = 4096
FUTURE_SLACK = 300  # clocks drift; a point more than 5 minutes ahead is a bug, not drift
MAX_AGE = RETENTION["raw"]  # older than the default raw retention would be deleted at once


@bp.post("/ingest")
@doc("Store a batch of samples and signals (agents, custom metrics).", body=INGEST_BODY,
     responses={202: INGEST_RESULT, 429: ref("Error")})
def ingest():
    auth.may_push(None)  # a bad token is a 401 before the body is read
    p = parts()
    body = json_body(walk=False)  # samples are checked one by one below; facts are walked
    now = time.time()
    instance_id = string(body.get("instance_id", p.instance_id), "instance_id", INSTANCE_ID, 128)
    auth.may_push(instance_id)  # an agent token pushes only for its own instance
    # The OpenAPI document says a string, not nullable: `null` is refused, not read as absent.
    batch_id = string(body["batch_id"], "batch_id", max_len=128) if "batch_id" in body else None
    writer = p.writer
    # With no store of ours to ask (an engine scrapes the samples), every series' names are checked.
    samples = _samples(body.get("samples", []), now, (lambda keys: writer.unknown_series(instance_id, keys))
                       if writer is not None else (lambda keys: list(range(len(keys)))))
    signals = _signals(body.get("signals", []), now)
    # Absent from older agents' batches: they still push everything else.
    kernel_lines = _kernel_lines(body.get("kernel_lines", []), now)
    _within_budgets(p, instance_id, samples)
    hostname = body.get("hostname", "")
    if not isinstance(hostname, str) or len(hostname) > 255:
        raise ApiError(422, "must be a string of at most 255 characters", "hostname")
    inst_labels = labels(body.get("labels"), "labels")
    if auth.shared_ingest_token():
        # Everyone who pushes holds the shared token: it may not speak for a machine that has
        # a token of its own, nor rename or relabel the server (labels pick policy targets).
        if p.fleet.has_agent(instance_id):
            raise ApiError(403, f"instance {instance_id} has its own agent token: only that token pushes for it",
                           "instance_id")
        if instance_id == p.instance_id and (hostname or inst_labels):
            raise ApiError(403, "the ingest token may not set the server's own hostname or labels",
                           "hostname" if hostname else "labels")
    interval = body.get("interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                 or not 0.1 <= interval <= 86400):
        raise ApiError(422, "must be the sender's collection interval in seconds (0.1 to 86400)", "interval")
    processes = _processes(body.get("processes"))
    facts = body.get("facts")
    if facts is not None and not isinstance(facts, dict):
        raise ApiError(422, "must be an object (a facts snapshot)", "facts")
    if facts is not None:
        too_deep(facts, "facts")
    extra = []
    dropped = body.get("dropped_batches", 0)
    if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
        # The agent's buffer overflowed while the server was away: a gap the operator should
        # know of, recorded with the batch's other events (once, whatever the retries).
        extra.append({"etype": "Agent.BatchesDropped", "ts": now, "level": "WARN", "fold_key": str(batch_id),
                      "message": f"the agent dropped {dropped} batches while the server was away (buffer full)"})
    try:
        stored = p.ingest.ingest(instance_id, samples, signals, batch_id=batch_id, hostname=hostname,
                                  labels=inst_labels, facts=facts, interval=float(interval) if interval else None,
                                  processes=processes, extra_events=extra, kernel_lines=kernel_lines)
    except StoreFullError as e:
        raise ApiError(507, f"the store cannot write now: {e}", code="InsufficientStorage") from None
    # With --store-url the samples are the engine's to scrape: say so rather than count them as stored.
    kept = p.writer is not None
    # A duplicate stored nothing this time: it claims no samples and no signals.
    return jsonify({"instance_id": instance_id, "accepted": len(samples.keys) if kept and stored else 0,
                    "signals": len(signals) if stored else 0, "duplicate": not stored, "batch_id": batch_id,
                    "samples_stored": kept}), 202


class _Buckets:
    """Per pusher, a token bucket of points (config `ingest`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, tuple[float, float]] = {}  # pusher -> (points left, at)

    def take(self, who: str, n: int, rate: float, burst: int) -> float:
        """0 when `n` points may go now (and takes them), else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            left, at = self.held.get(who, (float(burst), now))
            left = min(float(burst), left + (now - at) * rate)
            if n <= left:
                self.held[who] = (left - n, now)
                return 0.0
            self.held[who] = (left, now)
            return (n - left) / rate


def _within_budgets(p: Parts, instance_id: str, samples: SampleColumns) -> None:
    cfg = p.config.ingest
    n = len(samples.keys)
    if n > cfg.points_burst:
        raise ApiError(413, f"at most {cfg.points_burst} points per batch (ingest.points_burst)", "samples")
    writer = p.writer
    if writer is not None and n:
        count = writer.series_count
        try:
            new = {samples.keys[i] for i in writer.unknown_series(instance_id, samples.keys)}
        except TypeError:
            new = set()
        # Concurrent pushes of one instance may each pass: the budget can be passed by a few
        # batches' worth, never flooded.
        if new and count(instance_id) + len(new) > cfg.max_series_per_instance:
            raise ApiError(429, f"instance {instance_id} has {count(instance_id)} series; {len(new)} more would "
                                f"pass ingest.max_series_per_instance ({cfg.max_series_per_instance})",
                           "samples", code="TooManySeries", headers={"Retry-After": "3600"})
    token = request.headers.get("Authorization", "")
    who = hashlib.sha256(token.encode()).hexdigest() if token else "addr:" + (request.remote_addr or "")
    buckets = current_app.extensions["diag"].setdefault("ingest_buckets", _Buckets())
    wait = buckets.take(who, n, cfg.points_per_second, cfg.points_burst)
    if wait:
        raise ApiError(429, f"this token pushed more than ingest.points_per_second ({cfg.points_per_second:g}) "
                            f"allows; retry in {math.ceil(wait)} s", "samples", code="TooManyPoints",
                       headers={"Retry-After": str(math.ceil(wait))})


def _samples(raw: object, now: float, unknown: Callable[[list[tuple]], list[int]]) -> SampleColumns:
    if not isinstance(raw, list):
        raise ApiError(422, "must be a list", "samples")
    if len(raw) > MAX_SAMPLES:
        raise ApiError(413, f"at most {MAX_SAMPLES} samples per batch", "samples")
    # The common case in a tight loop, with no object per sample: an agent sends the same
    # series every 10 s, so only a series the store has never had gets its names checked
    # (`unknown`); values and times are checked always. orjson has already refused NaN,
    # Infinity and numbers too large for a double. Any doubt goes to `_sample`, which
    # finds and names the problem.
    lo, hi = now - MAX_AGE, now + FUTURE_SLACK
    keys: list[tuple] = []
    values: list[float] = []
    times: list[float] = []
    for i, s in enumerate(raw):
        try:
            value, ts, lab = s["value"], s.get("ts", now), s.get("labels")
            tv, tt = type(value), type(ts)
            if (tv is float or tv is int) and (tt is float or tt is int) and lo <= ts <= hi:
                keys.append((s["metric"], *(_NONE if lab is None else lab).items()))
                values.append(value)
                times.append(ts)
                continue
        except (TypeError, KeyError, AttributeError):
            pass
        good = _sample(s, i, now)  # raises, naming the field, unless the doubt was unfounded
        keys.append((good.metric, *good.labels.items()))
        values.append(good.value)
        times.append(good.ts)
    try:
        todo: Iterable[int] = unknown(keys)
    except TypeError:  # an unhashable name or label value: the full check names it
        todo = range(len(keys))
    checked: set[tuple] = set()
    for i in todo:
        try:
            seen = keys[i] in checked
        except TypeError:
            seen = False
        if not seen:
            _sample(raw[i], i, now)  # raises on a bad name, label or label set
            checked.add(keys[i])  # hashable now: every name and value is a string
    return SampleColumns(keys, values, times)


_NONE: dict[str, str] = {}  # read only, never stored


def _sample(s: object, i: int, now: float) -> Sample:
    """One sample, checked field by field; the error names the field."""
    f = f"samples[{i}]"
    if not isinstance(s, dict):
        raise ApiError(422, "must be an object with metric, labels, value, ts", f)
    metric = string(s.get("metric"), f"{f}.metric", METRIC_NAME, 200)
    lab = labels(s.get("labels"), f"{f}.labels")
    known = catalogue.BY_NAME.get(metric)
    if known is not None and set(lab) != set(known.labels):
        raise ApiError(422, f"{metric} takes the labels {sorted(known.labels)}", f"{f}.labels")
    value = finite(s.get("value"), f"{f}.value")
    ts = finite(s.get("ts", now), f"{f}.ts")
    if ts > now + FUTURE_SLACK:
        raise ApiError(422, "is in the future", f"{f}.ts")
    if ts < now - MAX_AGE:
        raise ApiError(422, "is older than the raw retention (48h)", f"{f}.ts")
    return Sample(metric, lab, value, ts)


def _signals(raw: object, now: float) -> list[Signal]:
    if not isinstance(raw, list):
        raise ApiError(422, "must be a list", "signals")
    if len(raw) > MAX_SIGNALS:
        raise ApiError(413, f"at most {MAX_SIGNALS} signals per batch", "signals")
    out = []
    for i, s in enumerate(raw):
        f = f"signals[{i}]"
        if not isinstance(s, dict):
            raise ApiError(422, "must be an object with ts, kind, message, labels", f)
        ts = finite(s.get("ts", now), f"{f}.ts")
        if ts > now + FUTURE_SLACK:
            raise ApiError(422, "is in the future", f"{f}.ts")
        kind = string(s.get("kind"), f"{f}.kind", METRIC_NAME, 100)
        message = s.get("message", "")
        if not isinstance(message, str) or len(message) > 4096:
            raise ApiError(422, "must be a string of at most 4096 characters", f"{f}.message")
        out.append(Signal(ts, kind, message, labels(s.get("labels"), f"{f}.labels")))
    return out


def _kernel_lines(raw: object, now: float) -> list[KernelLine]:
    if not isinstance(raw, list):
        raise ApiError(422, "must be a list", "kernel_lines")
    if len(raw) > MAX_KERNEL_LINES:
        raise ApiError(413, f"at most {MAX_KERNEL_LINES} kernel lines per batch", "kernel_lines")
    out = []
    for i, ln in enumerate(raw):
        f = f"kernel_lines[{i}]"
        if not isinstance(ln, dict):
            raise ApiError(422, "must be an object with ts, level, seq, message", f)
        ts = finite(ln.get("ts"), f"{f}.ts")
        if ts > now + FUTURE_SLACK:
            raise ApiError(422, "is in the future", f"{f}.ts")
        if ts < 0:  # boot time plus the record's µs: never before 1970
            raise ApiError(422, "must be UNIX seconds, at least 0", f"{f}.ts")
        level, seq = ln.get("level"), ln.get("seq")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 7:
            raise ApiError(422, "must be a syslog severity, an integer 0-7", f"{f}.level")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
            raise ApiError(422, "must be the record's sequence number, an integer of at least 0", f"{f}.seq")
        message = ln.get("message")
        if not isinstance(message, str) or len(message) > MAX_KERNEL_MESSAGE:
            raise ApiError(422, f"must be a string of at most {MAX_KERNEL_MESSAGE} characters", f"{f}.message")
        out.append(KernelLine(ts, level, seq, message))
    return out


MAX_PROCESS_ROWS = 20


def _processes(value: Any) -> dict[str, list[dict[str, Any]]] | None:
    """An agent's top processes: {"by_cpu": [...], "by_memory": [...]}, each row
    {"pid", "name", "cpu_percent", "rss_bytes"}; kept as evidence for its reports."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"by_cpu", "by_memory"}:
        raise ApiError(422, 'must be {"by_cpu": [...], "by_memory": [...]}', "processes")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, rows in value.items():
        field = f"processes.{key}"
        if not isinstance(rows, list) or len(rows) > MAX_PROCESS_ROWS:
            raise ApiError(422, f"must be a list of at most {MAX_PROCESS_ROWS} processes", field)
        kept = []
        for i, r in enumerate(rows):
            pid, name = (r.get("pid"), r.get("name")) if isinstance(r, dict) else (None, None)
            cpu, rss = (r.get("cpu_percent"), r.get("rss_bytes")) if isinstance(r, dict) else (None, None)
            if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and isinstance(name, str)
                    and len(name) <= 64 and _number_or_none(cpu) and _number_or_none(rss)):
                raise ApiError(422, "must be {pid: int, name: str (<= 64), cpu_percent: number|null, "
                                    "rss_bytes: number|null}", f"{field}[{i}]")
            kept.append({"pid": pid, "name": name, "cpu_percent": cpu, "rss_bytes": rss})
        out[key] = kept
    return out


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0)
