"""Shared response and body schemas for the OpenAPI document (see openapi.py)."""

from __future__ import annotations

from checks.base import STATUSES
from diag.alerting.policy import COMPARISONS, DAYS, MISSING, SEVERITIES, STATISTICS
from diag.commands.schedule import REPEAT_MODES
from diag.commands.states import FINAL, PARTIAL, RECORD_STATES
from diag.events import LEVELS, MAINTENANCE, STATUSES as EVENT_STATUSES
from diag.health import STATES
from diag.web.openapi import ANY_OBJ, BOOL, INT, LABELS, NUM, STR, arr, component, enum, nullable, obj

HEALTH_STATUS = enum(*STATES)

HEALTHZ = obj({"status": enum("ok", "failing"), "version": STR},
              {"instance_id": STR, "last_collection": nullable(NUM), "failing": arr(STR)})

METRIC = component("Metric", obj({"name": STR, "unit": STR, "kind": STR, "labels": arr(STR), "description": STR}))

SERIES = obj({"instance_id": STR, "labels": LABELS, "points": arr(arr(NUM, minItems=2, maxItems=2))})
QUERY_RESULT = component("QueryResult", obj({"metric": STR, "unit": STR, "step": NUM, "series": arr(SERIES)}))

PROCESS = obj({"pid": INT, "name": STR}, {"cpu_percent": nullable(NUM), "rss_bytes": nullable(NUM)})
INGEST_BODY = obj(optional={
    "instance_id": STR, "batch_id": STR, "hostname": STR, "labels": LABELS,
    "samples": arr(obj({"metric": STR, "value": NUM}, {"labels": LABELS, "ts": NUM})),
    "signals": arr(obj({"kind": STR}, {"ts": NUM, "message": STR, "labels": LABELS})),
    "facts": ANY_OBJ, "interval": {"type": "number", "minimum": 0.1, "maximum": 86400},
    "dropped_batches": INT,
    "processes": obj(optional={"by_cpu": arr(PROCESS), "by_memory": arr(PROCESS)}),
})
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
DIAGNOSIS_BODY = obj(optional={"instance_id": STR, "window": STR, "checks": arr(STR)})

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
EVENT_BODY = obj({"type": enum(*MAINTENANCE)}, {
    "instance_id": STR, "not_before": {"oneOf": [NUM, STR]}, "duration": STR, "comment": STR})

# -- fleet ------------------------------------------------------------------------------------

ACTIVATION_BODY = obj(optional={"count": INT, "expires_in": {"oneOf": [STR, NUM]}, "description": STR})
ACTIVATION = obj({"activation_id": STR, "activation_code": STR, "description": STR, "count": INT,
                  "remaining": INT, "created_at": NUM, "expires_at": NUM})
REGISTER_BODY = obj({"activation_id": STR, "activation_code": STR, "instance_id": STR},
                    {"hostname": STR, "labels": LABELS})
REGISTERED = obj({"instance_id": STR, "agent_token": STR})
# One shape for the three kinds: "command" carries script/working_dir/username, "file" the
# file fields, "stop" only the task_id of a record to stop.
AGENT_TASK = obj({"task_id": STR, "kind": enum("command", "file", "stop")}, {
    "invoke_id": STR, "timeout": NUM, "script": STR, "env": {"type": "object", "additionalProperties": STR},
    "working_dir": STR, "username": STR,
    "file_name": STR, "content_b64": STR, "target_dir": STR, "mode": STR, "owner": STR, "group": STR,
    "overwrite": BOOL})
AGENT_TASKS = obj({"instance_id": STR, "tasks": arr(AGENT_TASK)}, {"poll_after": NUM})

# -- remote commands --------------------------------------------------------------------------

REPEAT_MODE = enum(*REPEAT_MODES)
COMMAND_ERROR_CODES = enum("ExecutionTimeout", "ExitCodeNonzero", "ExecutionException", "AgentNotOnline",
                           "DeliveryTimeout", "InstanceRestarted", "FileAlreadyExists")
_COMMAND_FIELDS = {"description": STR, "type": enum("RunShellScript"), "content_encoding": enum("PlainText", "Base64"),
                   "working_dir": STR, "timeout": {"oneOf": [NUM, STR]}, "username": STR, "tags": arr(STR),
                   "check_ids": arr(STR)}
COMMAND_BODY = obj({"name": STR, "content": STR}, _COMMAND_FIELDS)
COMMAND_PATCH_BODY = obj(optional={"name": STR, "content": STR, **_COMMAND_FIELDS})
COMMAND = component("Command", obj({
    "command_id": STR, "name": STR, "description": STR, "type": enum("RunShellScript"), "content": STR,
    "parameters": arr(STR), "working_dir": STR, "timeout": NUM, "username": STR, "tags": arr(STR),
    "check_ids": arr(STR), "created_at": NUM, "updated_at": NUM}))
_INVOKE_FIELDS = {"parameters": {"type": "object", "additionalProperties": STR}, "repeat_mode": REPEAT_MODE,
                  "frequency": STR, "timeout": {"oneOf": [NUM, STR]}}
INVOKE_BODY = obj({"instance_ids": arr(STR)}, _INVOKE_FIELDS)
RUN_COMMAND_BODY = obj({"instance_ids": arr(STR), "content": STR},
                       {"name": STR, "keep_command": BOOL, **_COMMAND_FIELDS, **_INVOKE_FIELDS})
FILE_BODY = obj({"instance_ids": arr(STR), "name": STR, "content": STR, "target_dir": STR},
                {"mode": STR, "owner": STR, "group": STR, "overwrite": BOOL})
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
TASK_RESULT_BODY = obj({"status": enum(*FINAL)}, {
    "exit_code": nullable(INT), "error_code": nullable(COMMAND_ERROR_CODES), "error_info": nullable(STR),
    "output_b64": STR, "dropped": {"type": "integer", "minimum": 0}, "start_time": nullable(NUM),
    "finish_time": nullable(NUM)})

# -- alerting ---------------------------------------------------------------------------------

ALERT_STATE = enum("ok", "pending", "firing", "resolved")
SEVERITY = enum(*SEVERITIES)
EVENT_LEVEL = enum(*LEVELS)
DURATION_IN = {"oneOf": [NUM, STR]}  # "5m" or seconds
_TARGETS = {"instances": arr(STR), "labels": LABELS}
_EFFECTIVE_IN = {"days": arr({"oneOf": [STR, INT]}), "start": STR, "end": STR, "timezone": STR}


def _policy_fields(out: bool) -> dict:
    """The policy's fields as a body takes them (durations as text or seconds) or as stored."""
    dur = NUM if out else DURATION_IN
    cond = obj({"metric": STR, "comparison": enum(*COMPARISONS), "threshold": NUM},
               {"labels": LABELS, "statistic": enum(*STATISTICS), "period": dur, "consecutive": INT,
                "severity": SEVERITY}, extra=out)
    ev = obj(optional={"type": nullable(STR), "level": nullable(EVENT_LEVEL), "severity": nullable(SEVERITY)},
             extra=False)
    eff = obj({"days": arr(enum(*DAYS)), "start": STR, "end": STR, "timezone": STR}) if out else \
        obj(optional=_EFFECTIVE_IN, extra=False)
    return {"enabled": BOOL, "targets": obj(optional=_TARGETS, extra=out), "match": enum("any", "all"),
            "conditions": arr(cond), "event_conditions": arr(ev), "effective": nullable(eff), "silence": dur,
            "notify_recovery": BOOL, "missing_data": enum(*MISSING), "contact_groups": arr(STR), "description": STR}


POLICY_BODY = obj({"name": STR}, _policy_fields(out=False), extra=False)
POLICY_PATCH_BODY = obj(optional={"name": STR, **_policy_fields(out=False)}, extra=False)
POLICY = component("AlertPolicy", obj({
    "policy_id": STR, "id": STR, "name": STR, **_policy_fields(out=True), "source": STR, "created_at": NUM,
    "updated_at": NUM}))
POLICY_TEST_BODY = obj(optional={"event": obj({"type": STR}, {"level": EVENT_LEVEL, "instance_id": STR,
                                                             "message": STR})}, extra=False)
CHANNEL_BODY = obj({"type": enum("webhook", "email", "alertmanager")},
                   {"url": STR, "format": enum("json", "alertmanager", "alibaba"), "address": STR,
                    "headers": LABELS}, extra=False)
CHANNEL = obj({"type": enum("webhook", "email", "alertmanager"), "url": nullable(STR),
               "format": enum("json", "alertmanager", "alibaba"), "address": nullable(STR), "headers": LABELS})
POLICY_TEST = obj({"policy_id": STR, "evaluated_at": NUM, "sent": BOOL, "store_seconds": NUM, "results": arr(obj({
    "instance_id": STR, "condition": STR, "verdict": STR, "state_before": ALERT_STATE, "state_after": ALERT_STATE,
    "would_notify": nullable(STR), "value": nullable(NUM), "severity": SEVERITY, "message": STR,
    "notifications": arr(obj({"contact_id": STR, "channel": CHANNEL,
                              "payload": {"description": "the body that channel would be sent"}}))}))})
ALERT = component("Alert", obj({
    "alert_id": STR, "policy_id": STR, "instance_id": STR, "condition": STR, "state": ALERT_STATE,
    "severity": SEVERITY, "value": nullable(NUM), "started_at": nullable(NUM), "fired_at": nullable(NUM),
    "resolved_at": nullable(NUM), "last_notified_at": nullable(NUM), "updated_at": NUM, "detail": ANY_OBJ}))
ALERT_HISTORY = obj({"history_id": INT, "ts": NUM, "kind": STR, "detail": STR}, {
    k: nullable(STR) for k in ("alert_id", "policy_id", "instance_id", "condition", "from_state", "to_state",
                               "notification_id", "channel", "outcome")} | {"value": nullable(NUM)})
SILENCE_BODY = obj(optional={"alert_id": STR, "policy_id": STR, "instance_id": STR, "duration": STR,
                             "comment": STR}, extra=False)
SILENCE = component("Silence", obj({
    "silence_id": STR, "alert_id": nullable(STR), "policy_id": nullable(STR), "instance_id": nullable(STR),
    "comment": STR, "created_at": NUM, "ends_at": NUM}))
CONTACT_BODY = obj({"name": STR, "channels": arr(CHANNEL_BODY)}, extra=False)
CONTACT = component("Contact", obj({"contact_id": STR, "name": STR, "channels": arr(CHANNEL), "created_at": NUM}))
CONTACT_GROUP_BODY = obj({"name": STR}, {"contacts": arr(STR)}, extra=False)
CONTACT_GROUP = component("ContactGroup", obj({"contact_group_id": STR, "name": STR, "contacts": arr(STR),
                                               "created_at": NUM}))
