"""POST /api/v1/ingest: a batch from an agent, or a user's own metrics, stored durably."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify

from diag import catalogue
from diag.model import Sample, Signal
from diag.store import StoreFullError
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.validate import INSTANCE_ID, MAX_LABEL_VALUE, METRIC_NAME, finite, json_body, labels, string, too_deep
from diag.web.openapi import doc
from diag.web.schemas import INGEST_BODY, INGEST_RESULT

bp = Blueprint("ingest_api", __name__, url_prefix="/api/v1")

MAX_SAMPLES = 20_000
MAX_SIGNALS = 1_000
FUTURE_SLACK = 300  # clocks drift; a point more than 5 minutes ahead is a bug, not drift
MAX_AGE = 48 * 3600  # older than raw retention would be deleted at once


@bp.post("/ingest")
@doc("Store a batch of samples and signals (agents, custom metrics).", body=INGEST_BODY,
     responses={202: INGEST_RESULT})
def ingest():
    auth.may_push(None)  # a bad token is a 401 before the body is read
    service = current_app.extensions["diag"]["service"]
    body = json_body(walk=False)  # samples are checked one by one below; facts are walked
    now = time.time()
    instance_id = string(body.get("instance_id", service.instance_id), "instance_id", INSTANCE_ID, 128)
    auth.may_push(instance_id)  # an agent token pushes only for its own instance
    batch_id = body.get("batch_id")
    if batch_id is not None:
        string(batch_id, "batch_id", max_len=128)
    samples = _samples(body.get("samples", []), now)
    signals = _signals(body.get("signals", []), now)
    hostname = body.get("hostname", "")
    if not isinstance(hostname, str) or len(hostname) > 255:
        raise ApiError(422, "must be a string of at most 255 characters", "hostname")
    inst_labels = labels(body.get("labels"), "labels")
    facts = body.get("facts")
    if facts is not None and not isinstance(facts, dict):
        raise ApiError(422, "must be an object (a facts snapshot)", "facts")
    if facts is not None:
        too_deep(facts, "facts")
    try:
        stored = service.ingest(instance_id, samples, signals, batch_id=batch_id, hostname=hostname,
                                labels=inst_labels, facts=facts)
    except StoreFullError as e:
        raise ApiError(507, f"the store cannot write now: {e}", code="InsufficientStorage") from None
    dropped = body.get("dropped_batches", 0)
    if stored and isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
        # The agent's buffer overflowed while the server was away: a gap the operator should know of.
        service.events.detected(instance_id, "Agent.BatchesDropped", now,
                                f"the agent dropped {dropped} batches while the server was away (buffer full)",
                                level="WARN", fold_key=str(batch_id))
    return jsonify({"instance_id": instance_id, "accepted": len(samples), "signals": len(signals),
                    "duplicate": not stored, "batch_id": batch_id}), 202


def _samples(raw: object, now: float) -> list[Sample]:
    if not isinstance(raw, list):
        raise ApiError(422, "must be a list", "samples")
    if len(raw) > MAX_SAMPLES:
        raise ApiError(413, f"at most {MAX_SAMPLES} samples per batch", "samples")
    # The common case in a tight loop (an agent sends the same names every 10 s, so a
    # metric and its label names are checked once per request); any doubt goes to
    # `_sample`, which finds and names the exact problem.
    lo, hi = now - MAX_AGE, now + FUTURE_SLACK
    good_shapes: set[tuple] = set()
    out = []
    for i, s in enumerate(raw):
        try:
            metric, lab, value, ts = s["metric"], s.get("labels") or {}, s["value"], s.get("ts", now)
            shape = (metric, *lab)
            ok = (type(value) in _NUMBER and type(ts) in _NUMBER and lo <= ts <= hi and value - value == 0
                  and all(type(v) is str and len(v) <= MAX_LABEL_VALUE for v in lab.values()))
        except (TypeError, KeyError, AttributeError):
            ok = False
        if ok and shape not in good_shapes:
            _sample(s, i, now)  # raises on a bad name or label set
            good_shapes.add(shape)
        out.append(Sample(metric, lab, float(value), float(ts)) if ok else _sample(s, i, now))
    return out


_NUMBER = (int, float)  # exact types: a bool is no number here


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
