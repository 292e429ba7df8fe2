"""Shared response schemas for the OpenAPI document (see openapi.py), and the request bodies
still validated by hand (ingest, contacts, silences, inhibit rules); the others are pydantic
models (diag/web/bodies.py, diag.alerting, diag.commands.model, diag.connectivity_request),
which are their own schema."""

from __future__ import annotations

import time
from zoneinfo import available_timezones


from checks.base import STATUSES
from checks.catalogue import BY_ID as CHECKS
from diag.alerting.inhibition import RuleBody
from diag.alerting.policy import (CHANNEL_TYPES, COMPARISONS, DAYS, MISSING, SEVERITIES, STATISTICS, Contact,
                                   ContactGroup, Policy, Route)
from diag.alerting.preview import SampleEvent
from diag.alerting.silences import MatcherSilence, TargetSilence
from diag.commands.model import CommandBody, InvokeBody
from diag.commands.runner import SCRIPT_TYPES
from diag.commands.schedule import REPEAT_MODES
from diag.commands.states import PARTIAL, RECORD_STATES
from diag.connectivity_request import Question
from diag.events import LEVELS, STATUSES as EVENT_STATUSES
from diag.health import STATES
from diag.kernel_lines import LEVEL_NAMES
from diag.web.parts import parts
from diag.web.openapi import ANY_OBJ, BOOL, INT, LABELS, NUM, STR, arr, component, enum, live, model_schema, nullable, obj
from diag.web.validate import INSTANCE_ID, LABEL_NAME, MAX_ABS_TIME, MAX_LABEL_VALUE, METRIC_NAME

# -- what the hand validators take, as schemas --------------------------------------------------
# The document is fuzzed (tests/web/test_openapi.py): a request it allows must be accepted, so
# each input schema here is as strict as the route's validator (diag/web/validate.py, the
# pydantic models of diag/alerting/policy.py), never looser.


def text(max_len: int, min_len: int = 1, pattern: str | None = None) -> dict:
    out: dict = {"type": "string", "minLength": min_len, "maxLength": max_len}
    if pattern:
        out["pattern"] = pattern
    return out


def between(lo: float, hi: float, kind: str = "number") -> dict:
    return {"type": kind, "minimum": lo, "maximum": hi}


INSTANCE_ID_IN = text(128, pattern=INSTANCE_ID.pattern)
# Label names as patternProperties (JSON Schema draft 4, which OpenAPI 3.0 tools validate with;
# `propertyNames` came in draft 6 and they ignore it).
LABELS_IN = {"type": "object", "maxProperties": 32, "additionalProperties": False,
             "patternProperties": {LABEL_NAME.pattern: {"type": "string", "maxLength": MAX_LABEL_VALUE}}}
# diag.units.parse_time: `now`, UNIX seconds, `-<duration>` before now, RFC 3339 with a zone;
# within MAX_ABS_TIME of 1970 (the bounds below keep every form inside it).
LABELS_OR_NULL = nullable(LABELS_IN)  # validate.labels reads null as no labels
TIME_IN = {"type": "string", "description": "UNIX seconds, RFC 3339 with a zone, now, or -1h (before now)",
           "pattern": r"^(now|-?[0-9]{1,10}(\.[0-9]{1,6})?|-[0-9]{1,5}(\.[0-9]{1,3})?(ms|s|m|h|d|w)"
                      r"|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]"
                      r":[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))$"}
assert MAX_ABS_TIME >= 1e10  # the patterns above allow 10 digits


def duration_text(pattern: str, description: str) -> dict:
    """A duration as diag.units.parse_duration reads it, within a route's bounds."""
    return {"type": "string", "pattern": f"^({pattern})$", "description": description}


_MIN_1_TO_1440 = "[1-9]|[1-9][0-9]|[1-9][0-9]{2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440"
_H_1_TO_24 = "[1-9]|1[0-9]|2[0-4]"

HEALTH_STATUS = enum(*STATES)

HEALTHZ = obj({"status": enum("ok", "failing"), "version": STR},
              {"instance_id": STR, "last_collection": nullable(NUM), "failing": arr(STR)})

METRIC = component("Metric", obj({"name": STR, "unit": STR, "kind": STR, "labels": arr(STR), "description": STR}))

SERIES = obj({"instance_id": STR, "labels": LABELS, "points": arr(arr(NUM, minItems=2, maxItems=2))})
QUERY_RESULT = component("QueryResult", obj({"metric": STR, "unit": STR, "step": NUM, "series": arr(SERIES)}))

PROCESS = obj({"pid": INT, "name": STR}, {"cpu_percent": nullable(NUM), "rss_bytes": nullable(NUM)})
# The body parser (orjson) reads an integer beyond 2**64 - 1 as a float, which is no pid.
_PROCESS_IN = obj({"pid": {"type": "integer", "minimum": 1, "maximum": 2**64 - 1}, "name": text(64, 0)},
                  {"cpu_percent": nullable({"type": "number", "minimum": 0}),
                   "rss_bytes": nullable({"type": "number", "minimum": 0})})
# Sample times: no older than the raw retention (48 h), at most 5 minutes ahead; as of when
# the document is served (an hour inside the first bound, so the document stays true a while).
_SAMPLE_TS = live(lambda: {"type": "number", "minimum": round(time.time() - 47 * 3600),
                           "maximum": round(time.time() + 300),
                           "description": "UNIX seconds, within the last 48 h (bounds as of serving this document)"})
_SIGNAL_TS = live(lambda: {"type": "number", "maximum": round(time.time() + 300),
                           "description": "UNIX seconds, at most 5 minutes ahead (as of serving this document)"})
_KERNEL_LINE_TS = live(lambda: {"type": "number", "minimum": 0, "maximum": round(time.time() + 300),
                                "description": "UNIX seconds, at most 5 minutes ahead (as of serving this document)"})
INGEST_BODY = obj(optional={
    "instance_id": INSTANCE_ID_IN, "batch_id": text(128), "hostname": text(255, 0), "labels": LABELS_OR_NULL,
    "samples": arr(obj({"metric": text(200, pattern=METRIC_NAME.pattern), "value": NUM},
                       {"labels": LABELS_OR_NULL, "ts": _SAMPLE_TS}),
                   maxItems=20_000, description="a catalogue metric takes exactly its catalogue labels"),
    "signals": arr(obj({"kind": text(100, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,99}$")},
                       {"ts": _SIGNAL_TS, "message": text(4096, 0), "labels": LABELS_OR_NULL}), maxItems=1000),
    "kernel_lines": arr(obj({"ts": _KERNEL_LINE_TS, "level": between(0, 7, "integer"),
                             "seq": between(0, 2**63 - 1, "integer"), "message": text(4096, 0)}),
                        maxItems=1000, description="the kernel-log records read since the last batch"),
    "facts": nullable(ANY_OBJ), "interval": nullable({"type": "number", "minimum": 0.1, "maximum": 86400}),
    "dropped_batches": {"description": "batches the agent dropped; only a positive integer counts, any other "
                                       "value is ignored"},
    "processes": nullable(obj(optional={"by_cpu": arr(_PROCESS_IN, maxItems=20),
                                        "by_memory": arr(_PROCESS_IN, maxItems=20)}, extra=False)),
})
STATUS = component("Status", obj({
    "version": STR, "instance_id": STR, "started_at": NUM,
    "store": obj({"kind": enum("embedded", "remote"), "head_span_seconds": nullable(NUM),
                  "size_cap_bytes": nullable(INT),
                  "levels": arr(obj({"level": enum("raw", "1m", "5m", "1h", "1d"),
                                     "resolution_seconds": nullable(INT), "retention_seconds": NUM}))}),
    "kernel_log": obj({"lines_per_instance": INT, "retention_seconds": NUM})}))
KERNEL_LEVEL_PARAM = enum(*LEVEL_NAMES, "error", "warn", "panic", *map(str, range(8)))
KERNEL_LOG = component("KernelLog", obj({
    "instance_id": STR, "truncated": BOOL,
    "lines": arr(obj({"ts": NUM, "level": enum(*LEVEL_NAMES), "priority": between(0, 7, "integer"),
                      "seq": INT, "message": STR})),
    "kept": obj({"lines": INT, "seconds": NUM})}))
INGEST_RESULT = obj({"instance_id": STR, "accepted": INT, "duplicate": BOOL},
                    {"signals": INT, "batch_id": nullable(STR), "samples_stored": BOOL})

CHECK = component("Check", obj({"id": STR, "category": STR, "name": STR, "severity": enum("critical", "non_critical"),
                                "lookback": NUM, "thresholds": ANY_OBJ, "description": STR}))
CHECK_RESULT = component("CheckResult", obj({
    "id": STR, "category": STR, "name": STR, "severity": enum("critical", "non_critical"),
    "status": enum(*STATUSES), "message": STR, "evidence": ANY_OBJ, "recommendation": STR, "duration_ms": NUM}))
SUMMARY = obj({s: INT for s in STATUSES})
REASON = obj({"status": STR, "message": STR}, {"check_id": nullable(STR)})
WINDOW = obj({"start": NUM, "end": NUM})
REPORT_SUMMARY = component("ReportSummary", obj({
    "report_id": STR, "instance_id": STR, "created_at": NUM, "window": WINDOW, "health_status": HEALTH_STATUS,
    "summary": SUMMARY}))
REPORT = component("Report", obj({
    "report_id": STR, "instance_id": STR, "created_at": NUM, "window": WINDOW, "health_status": HEALTH_STATUS,
    "summary": SUMMARY, "health_reasons": arr(REASON), "checks": arr(CHECK_RESULT)}))
INSTANCE = component("Instance", obj({
    "instance_id": STR, "hostname": STR, "labels": LABELS, "health_status": HEALTH_STATUS,
    "health_reasons": arr(REASON), "last_seen": nullable(NUM)}, {"latest_report_id": nullable(STR),
                                                                   "first_seen": NUM, "local": BOOL,
                                                                   "monitoring": BOOL}))
HEALTH = obj({"instance_id": STR, "health_status": HEALTH_STATUS, "health_reasons": arr(REASON),
              "evaluated_at": NUM}, {"latest_report_id": nullable(STR)})

EVENT = component("Event", obj({
    "event_id": STR, "instance_id": STR, "type": STR, "level": enum(*LEVELS), "status": enum(*EVENT_STATUSES),
    "publish_time": NUM, "not_before": nullable(NUM), "finish_time": nullable(NUM), "details": ANY_OBJ}))

# -- fleet ------------------------------------------------------------------------------------

ACTIVATION = obj({"activation_id": STR, "activation_code": STR, "description": STR, "count": INT,
                  "remaining": INT, "created_at": NUM, "expires_at": NUM, "source_cidrs": arr(STR)})
REGISTERED = obj({"instance_id": STR, "agent_token": STR})
# One shape for the three kinds: "command" carries script/working_dir/username, "file" the
# file fields, "stop" only the task_id of a record to stop.
AGENT_TASK = obj({"task_id": STR, "kind": enum("command", "file", "stop")}, {
    "invoke_id": STR, "timeout": NUM, "script": STR, "env": {"type": "object", "additionalProperties": STR},
    "working_dir": STR, "username": STR, "type": enum(*SCRIPT_TYPES),
    "file_name": STR, "content_b64": STR, "target_dir": STR, "mode": STR, "owner": STR, "group": STR,
    "overwrite": BOOL})
AGENT_TASKS = obj({"instance_id": STR, "tasks": arr(AGENT_TASK)}, {"poll_after": NUM})

# -- remote commands --------------------------------------------------------------------------

REPEAT_MODE = enum(*REPEAT_MODES)
COMMAND_ERROR_CODES = enum("ExecutionTimeout", "ExitCodeNonzero", "ExecutionException", "AgentNotOnline",
                           "DeliveryTimeout", "InstanceRestarted", "FileAlreadyExists")
SCRIPT_TYPE = enum(*SCRIPT_TYPES)
# The command's fields are its model's; a change is applied to the stored command, so each may be left out.
COMMAND_BODY = model_schema(CommandBody, {"check_ids[]": enum(*sorted(CHECKS))})
COMMAND_PATCH_BODY = {k: v for k, v in COMMAND_BODY.items() if k != "required"}
_COMMAND_OUT = {"name": STR, "description": STR, "type": SCRIPT_TYPE, "content": STR, "parameters": arr(STR),
                "working_dir": STR, "timeout": NUM, "username": STR, "tags": arr(STR), "check_ids": arr(STR)}
COMMAND = component("Command", obj({"command_id": STR, **_COMMAND_OUT, "created_at": NUM, "updated_at": NUM},
                                   {"library_id": STR}))  # library_id: enabled from the library
LIBRARY_COMMAND = component("LibraryCommand", obj({"library_id": STR, **_COMMAND_OUT, "enabled": BOOL,
                                                   "command_id": nullable(STR)}))
INVOKE_BODY = model_schema(InvokeBody)
# A command and its invocation in one; the timeout is the command's (which the invocation takes).
RUN_COMMAND_BODY = {**COMMAND_PATCH_BODY, "required": ["instance_ids", "content"], "properties": {
    **INVOKE_BODY["properties"], **COMMAND_BODY["properties"], "keep_command": BOOL}}
COMMAND_RECORD = component("CommandRecord", obj({
    "task_id": STR, "status": enum(*RECORD_STATES), "exit_code": nullable(INT), "output": STR, "dropped": INT,
    "error_code": nullable(COMMAND_ERROR_CODES), "error_info": nullable(STR), "created_at": NUM,
    "start_time": nullable(NUM), "finish_time": nullable(NUM)}))
INVOCATION = component("Invocation", obj({
    "invoke_id": STR, "command_id": nullable(STR), "kind": enum("command", "file"), "name": nullable(STR),
    "status": enum(*RECORD_STATES, PARTIAL), "repeat_mode": REPEAT_MODE, "frequency": STR,
    "timeout": nullable(NUM), "parameters": {"type": "object", "additionalProperties": STR},
    "created_at": NUM, "next_run": nullable(NUM),
    "audit": obj({"who": STR, "source": nullable(STR), "user_agent": STR, "at": NUM, "instance_ids": arr(STR),
                  "content_sha256": STR}, {"via": enum("dashboard"), "check_id": STR}),  # the dashboard adds these
    "instances": arr(obj({"instance_id": STR, "status": enum(*RECORD_STATES), "repeats": INT,
                          "records": arr(COMMAND_RECORD)}))}))
# -- alerting ---------------------------------------------------------------------------------

ALERT_STATE = enum("ok", "pending", "firing", "resolved")
SEVERITY = enum(*SEVERITIES)
EVENT_LEVEL = enum(*LEVELS)
DURATION_IN = {"oneOf": [NUM, STR]}  # "5m" or seconds


def _dur_in(lo: float, hi: float, minutes: str, hours: str = _H_1_TO_24, description: str = "") -> dict:
    """A policy duration: seconds, or text like 5m / 2h / 1d (diag.units), from lo to hi seconds."""
    return {"oneOf": [between(lo, hi), duration_text(f"({minutes})m|({hours})h|1d", description)]}


def _period_in() -> dict:
    # At least one collection interval (ref_errors), so it depends on the configured interval.
    interval = float(parts().config.interval)
    if interval <= 60:
        return _dur_in(max(1.0, interval), 86400, _MIN_1_TO_1440, description="from the collection interval to 1d")
    return {**between(interval, 86400), "description": "seconds, from the collection interval to 1d"}


def _metric_names() -> dict:
    # The catalogue and what the store holds (Alerting.metric_names), as of serving this document.
    return enum(*sorted(set(parts().alerting.metric_names())))


def _group_ids() -> dict:
    # The contact groups that exist when this document is served: an unknown one is refused.
    ids = sorted(g["contact_group_id"] for g in parts().alerting.repo.list(
        "contact_group"))
    return enum(*ids) if ids else {"type": "string", "not": {}, "description": "no contact group exists yet"}


_TIMEZONE = component("TimeZone", enum(*sorted(available_timezones())))


ROUTING_IN = nullable(model_schema(Route))
ROUTING = nullable(obj({"group_by": arr(STR), "group_wait": NUM, "group_interval": NUM, "repeat_interval": NUM}))


# What the policy model cannot know: the metric names, the collection interval, the contact groups
# and the time zones, as of serving the document.
_SERVED = {"conditions[].metric": live(_metric_names), "conditions[].period": live(_period_in),
           "effective.timezone": _TIMEZONE, "contact_groups[]": live(_group_ids)}
POLICY_BODY = model_schema(Policy, _SERVED)
# A change is applied to the stored policy: a list may be emptied only when the policy keeps a
# condition of the other kind, which depends on what is stored (a 422 says so).
POLICY_PATCH_BODY = {k: v for k, v in POLICY_BODY.items() if k not in ("required", "anyOf")}
POLICY_PATCH_BODY["description"] = "the policy after the change must still have a condition or an event condition"
_COND_OUT = obj({"metric": STR, "comparison": enum(*COMPARISONS), "threshold": NUM},
                {"labels": LABELS, "statistic": enum(*STATISTICS), "period": NUM, "consecutive": INT,
                 "severity": SEVERITY})
_EFFECTIVE_OUT = obj({"days": arr(enum(*DAYS)), "start": STR, "end": STR, "timezone": STR})
POLICY = component("AlertPolicy", obj({
    "policy_id": STR, "id": STR, "name": STR, "enabled": BOOL,
    "targets": obj(optional={"instances": arr(STR), "labels": LABELS}), "match": enum("any", "all"),
    "conditions": arr(_COND_OUT), "event_conditions": arr(obj(optional={
        "type": nullable(STR), "level": nullable(EVENT_LEVEL), "severity": nullable(SEVERITY)}, extra=False)),
    "effective": nullable(_EFFECTIVE_OUT), "silence": NUM, "notify_recovery": BOOL, "missing_data": enum(*MISSING),
    "contact_groups": arr(STR), "description": STR, "routing": ROUTING,
    "source": STR, "created_at": NUM, "updated_at": NUM}))
# The route checks the body's one field; the event is the preview's model.
POLICY_TEST_BODY = obj(optional={"event": nullable(model_schema(SampleEvent))}, extra=False)
# `secret` (signing robots only) and the token in a robot's URL are shown as ***, never as they are.
CHANNEL = obj({"type": enum(*CHANNEL_TYPES), "url": nullable(STR),
               "format": enum("json", "alertmanager", "alibaba"), "address": nullable(STR), "headers": LABELS},
              {"secret": nullable({**STR, "description": "*** when one is stored; never the secret itself"})})
POLICY_TEST = obj({"policy_id": STR, "evaluated_at": NUM, "sent": BOOL, "store_seconds": NUM, "results": arr(obj({
    "instance_id": STR, "condition": STR, "verdict": STR, "state_before": ALERT_STATE, "state_after": ALERT_STATE,
    "would_notify": nullable(STR), "value": nullable(NUM), "severity": SEVERITY, "message": STR,
    "notifications": arr(obj({"contact_id": STR, "channel": CHANNEL,
                              "payload": {"description": "the body that channel would be sent"}}))}))})
ALERT = component("Alert", obj({
    "alert_id": STR, "policy_id": STR, "instance_id": STR, "condition": STR,
    "series": {"type": "object", "additionalProperties": STR, "description": "the labels of the series alerted on"},
    "state": ALERT_STATE, "severity": SEVERITY, "value": nullable(NUM), "started_at": nullable(NUM), "fired_at": nullable(NUM),
    "resolved_at": nullable(NUM), "last_notified_at": nullable(NUM), "updated_at": NUM, "detail": ANY_OBJ}, {
    # In the list: the labels silences and inhibition rules match, and what keeps the alert quiet now.
    "labels": LABELS, "silenced_by": nullable(STR),
    "inhibited_by": nullable(obj({"rule_id": STR, "name": STR, "source": LABELS}))}))
ALERT_HISTORY = obj({"history_id": INT, "ts": NUM, "kind": STR, "detail": STR}, {
    k: nullable(STR) for k in ("alert_id", "policy_id", "instance_id", "condition", "from_state", "to_state",
                               "notification_id", "channel", "outcome")} | {"value": nullable(NUM)})
_SILENCE_DURATION = {"duration": duration_text(r"[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|[1-6][0-9]{2}|7[01][0-9]|720)h"
                                              r"|([1-9]|[12][0-9]|30)d", "from 1m to 30d (default 1h)")}
MATCHER = obj({"name": STR, "op": enum("=", "!=", "=~", "!~"), "value": STR})
# Exactly one target: an alert, a policy or an instance; or matchers over the alerts' labels
# (a regex must compile, the silence must last 1m to 30d: a 422 says which).
SILENCE_BODY = {"oneOf": [model_schema(TargetSilence, _SILENCE_DURATION), model_schema(MatcherSilence, _SILENCE_DURATION)]}
INHIBIT_RULE_BODY = model_schema(RuleBody)
INHIBIT_RULE = component("InhibitRule", obj({
    "rule_id": STR, "name": STR, "source": arr(MATCHER), "target": arr(MATCHER),
    "equal": arr(STR), "comment": STR, "created_at": NUM}))
ALERT_GROUP = component("AlertGroup", obj({
    "group_key": STR, "owner": STR, "policy_id": STR, "labels": LABELS, "route": ROUTING,
    "alerts": {"type": "object", "additionalProperties": enum("firing", "resolved"),
               "description": "alert id: its status in the group"},
    "created_at": NUM, "next_flush_at": NUM, "last_sent_at": nullable(NUM), "sends": INT}))
SILENCE = component("Silence", obj({
    "silence_id": STR, "alert_id": nullable(STR), "policy_id": nullable(STR), "instance_id": nullable(STR),
    "matchers": arr(MATCHER), "comment": STR, "created_by": STR, "created_at": NUM, "starts_at": NUM,
    "ends_at": NUM}))
CONTACT_BODY = model_schema(Contact)
CONTACT = component("Contact", obj({"contact_id": STR, "name": STR, "channels": arr(CHANNEL), "created_at": NUM}))
CONTACT_TEST = obj({"contact_id": STR, "results": arr(obj({
    "index": INT, "type": enum(*CHANNEL_TYPES), "channel": {**STR, "description": "where it went, secrets masked"},
    "outcome": enum("delivered", "failed"), "detail": STR}))})
# Each contact must exist (a 422 names the unknown one): a schema cannot say that.
CONTACT_GROUP_BODY = model_schema(ContactGroup)
CONTACT_GROUP = component("ContactGroup", obj({"contact_group_id": STR, "name": STR, "contacts": arr(STR),
                                               "created_at": NUM}, {"routing": ROUTING}))

# -- query parameters ---------------------------------------------------------------------------

_STATES = "(ok|pending|firing|resolved)"
ALERT_STATES_PARAM = {"type": "string", "description": "all, or comma-separated ok, pending, firing, resolved",
                      "pattern": f"^(all|,*{_STATES}(,+{_STATES})*,*)$"}
EVENT_STATUS_PARAM = enum(*EVENT_STATUSES)
INSTANCE_ID_OR_EMPTY = {"type": "string", "pattern": f"^$|{INSTANCE_ID.pattern}", "maxLength": 128,
                        "description": "empty or left out: this server"}
STEP_PARAM = {"type": "string", "pattern": r"^([1-9][0-9]{0,5}(\.[0-9]{1,3})?(s|m|h|d|w)?)$",
              "description": "a duration such as 60s or 5m (at least 1s)"}

# -- connectivity diagnosis (diag/connectivity.py) ---------------------------------------------
from diag.connectivity import OVERALL as _CONN_OVERALL, PROTOCOLS as _CONN_PROTOCOLS, VERDICTS as _CONN_VERDICTS  # noqa: E402

CONNECTIVITY_BODY = model_schema(Question)
_CONNECTIVITY_STEP = obj({"step": STR, "verdict": enum(*_CONN_VERDICTS),
                          "message": STR, "evidence": nullable(ANY_OBJ)})
CONNECTIVITY = component("Connectivity", obj({
    "source": STR, "destination": obj({"instance_id": nullable(STR), "address": nullable(STR)}),
    "port": INT, "protocol": enum(*_CONN_PROTOCOLS), "verdict": enum(*_CONN_OVERALL),
    "first_problem": nullable(obj({"step": STR, "message": STR})),
    "steps": arr(_CONNECTIVITY_STEP), "elapsed_ms": NUM}))
