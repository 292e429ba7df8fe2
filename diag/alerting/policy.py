"""Alert policies, contacts and contact groups: the models and their validation.

Shape validation is pydantic's; what depends on the running service (does the metric
exist, is the period at least one collection interval, does the contact group exist)
is `ref_errors`. Every failure names its field as the API reports it:
`conditions[0].threshold`, `effective.timezone`; a body with several is refused with all
of them (`PolicyError.errors`), so a form can mark every bad field at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      WithJsonSchema, field_validator, model_validator)

from collectors.kernel_patterns import CUSTOM_PREFIX, RULE_NAME
from diag import catalogue
from diag.events import TYPES
from diag.units import parse_duration

STATISTICS = ("avg", "min", "max", "sum", "last")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
SEVERITIES = ("critical", "warning", "info")
MISSING = ("insufficient", "ok", "breaching", "keep")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SILENCE_MIN, SILENCE_MAX = 300.0, 86400.0
LEVEL_SEVERITY = {"CRITICAL": "critical", "WARN": "warning", "INFO": "info"}

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class PolicyError(ValueError):
    """An invalid body: `field` is the path the API reports (`conditions[0].metric`) of the
    first problem, `errors` every problem as {"field", "message"} (no field: the whole body)."""

    def __init__(self, field: str | None, message: str, status: int = 422,
                 errors: list[dict[str, str]] | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message, self.status = field, message, status
        self.errors = errors or [_problem(field, message)]

    @classmethod
    def of(cls, errors: list[dict[str, str]]) -> "PolicyError":
        """The error of several problems, the first one named."""
        return cls(errors[0].get("field"), errors[0]["message"], errors=errors)


def _problem(field: str | None, message: str) -> dict[str, str]:
    return {"field": field, "message": message} if field else {"message": message}


def _duration(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("must be a duration like 5m")
    try:
        return parse_duration(v)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None


Duration = Annotated[float, BeforeValidator(_duration)]

# -- the API document's form of what the validators below take ---------------------------------
# The document is fuzzed (tests/web/test_openapi.py): what it allows must be accepted, so each
# schema is as strict as its validator. What depends on the running service (the metric names,
# the collection interval, the contact groups, the time zones) the web layer adds when serving.

# Label names as patternProperties (JSON Schema draft 4, which OpenAPI 3.0 tools validate with).
_LABELS_SCHEMA = {"type": "object", "maxProperties": 32, "additionalProperties": False,
                  "patternProperties": {_LABEL.pattern: {"type": "string", "maxLength": 512}}}
_HHMM_SCHEMA = {"type": "string", "pattern": r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"}
_DAY_SCHEMA = {"oneOf": [{"type": "string", "description": "mon..sun (only the first three letters count)",
                          "pattern": "^([Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|[Tt][Hh][Uu]|[Ff][Rr][Ii]"
                                     "|[Ss][Aa][Tt]|[Ss][Uu][Nn])"},
                         {"type": "integer", "minimum": 1, "maximum": 7}]}
_FAMILIES = sorted({t[:i + 1] + "*" for t in TYPES for i, ch in enumerate(t) if ch == "."})
# A known type, a family (`Kernel.*`), or Custom.<log_patterns rule name> / Custom.*.
_EVENT_TYPE_SCHEMA = {"anyOf": [{"type": "string", "enum": [*TYPES, *_FAMILIES]},
                                {"type": "string", "pattern": "^" + CUSTOM_PREFIX.replace(".", "\\.")
                                 + "(\\*|" + RULE_NAME.pattern.strip("^$") + ")$"}]}

Labels = Annotated[dict[str, str], WithJsonSchema(_LABELS_SCHEMA)]


def _labels(v: dict[str, str] | None) -> dict[str, str]:
    v = v or {}
    if len(v) > 32:
        raise ValueError("at most 32 labels")
    for k, val in v.items():
        if not _LABEL.match(k):
            raise ValueError(f"{k!r} is not a label name")
        if len(val) > 512:
            raise ValueError(f"the value of {k} is longer than 512 characters")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Condition(_Strict):
    metric: str
    labels: Labels = {}
    statistic: Literal["avg", "min", "max", "sum", "last"] = "avg"
    period: Duration = 300.0
    comparison: Literal["<", "<=", ">", ">=", "==", "!="]
    threshold: float
    consecutive: StrictInt = Field(1, ge=1, le=100)  # strict: not "3" or 3.0 (the API says integer)
    severity: Literal["critical", "warning", "info"] = "warning"

    @field_validator("labels")
    @classmethod
    def _lab(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v[:80]!r} is not a metric name")
        return v

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _display_name(self) -> Condition:
        """A /metrics name is kept as the catalogue's, the threshold in its unit
        (`diag_cpu_usage_ratio > 0.8` is `cpu_usage > 80`): one policy, whichever name it
        was written with, evaluated on the stored series and exported under /metrics' name."""
        m = catalogue.BY_EXPOSED.get(self.metric)
        if m is not None and m.name != self.metric:
            self.metric, self.threshold = m.name, catalogue.from_exposed(m, self.threshold)
        return self

    @field_validator("period")
    @classmethod
    def _period(cls, v: float) -> float:
        if not 1 <= v <= 86400:
            raise ValueError("must be between 1s and 1d")
        return v


class EventCondition(_Strict):
    # A type or a level, or both (`_something`).
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["type"], "properties": {"type": _EVENT_TYPE_SCHEMA}},
        {"required": ["level"], "properties": {"level": {"type": "string", "enum": list(LEVEL_SEVERITY)}}}]})
    # `type` is an event type, or a family like `Kernel.*`; `level` an event level.
    type: Annotated[str, WithJsonSchema(_EVENT_TYPE_SCHEMA)] | None = None
    level: Literal["CRITICAL", "WARN", "INFO"] | None = None
    severity: Literal["critical", "warning", "info"] | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith(CUSTOM_PREFIX):
            # Operators name these in log_patterns, on the server or on any agent, so the
            # server cannot list them: any name the log_patterns config accepts is one.
            name = v[len(CUSTOM_PREFIX):]
            if name != "*" and not RULE_NAME.match(name):
                raise ValueError(f"{v[:80]!r}: a Custom event type is Custom.<rule name> (the rule's name in "
                                 f"log_patterns, matching {RULE_NAME.pattern}) or Custom.*")
        elif v.endswith(".*"):
            if not any(t.startswith(v[:-1]) for t in TYPES):
                raise ValueError(f"no event type starts with {v[:-1]!r}")
        elif v not in TYPES:
            raise ValueError(f"unknown event type {v[:80]!r}")
        return v

    @model_validator(mode="after")
    def _something(self) -> "EventCondition":
        if self.type is None and self.level is None:
            raise ValueError("give a type, a level or both")
        return self

    def matches(self, etype: str, level: str) -> bool:
        if self.level is not None and level != self.level:
            return False
        if self.type is None:
            return True
        return etype.startswith(self.type[:-1]) if self.type.endswith(".*") else etype == self.type

    def effective_severity(self) -> str:
        return self.severity or LEVEL_SEVERITY.get(self.level or "", "warning")


class Targets(_Strict):
    # Not empty: no instances and no labels (`_not_empty`).
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["instances"], "properties": {"instances": {"maxItems": 0}, "labels": {"maxProperties": 0}}}})
    # ["*"] (every instance, the default) or instance ids; with no instances, a label selector.
    instances: Annotated[list[str], WithJsonSchema({"anyOf": [
        {"type": "array", "items": {"type": "string", "enum": ["*"]}, "maxItems": 1},
        {"type": "array", "items": {"type": "string", "not": {"type": "string", "enum": ["*"]}}}]})] = ["*"]
    labels: Labels = {}

    @field_validator("labels")
    @classmethod
    def _lab(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @model_validator(mode="after")
    def _not_empty(self) -> "Targets":
        if not self.instances and not self.labels:
            raise ValueError("name instances (or [\"*\"]) or a label selector: a policy without targets watches nothing")
        if "*" in self.instances and len(self.instances) > 1:
            raise ValueError("\"*\" means every instance and stands alone")
        return self

    def selects(self, instance_id: str, labels: dict[str, str]) -> bool:
        if self.instances and "*" not in self.instances and instance_id not in self.instances:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


class Effective(_Strict):
    """start and end may not be equal (default 00:00 and 24:00)"""

    days: Annotated[list[str], WithJsonSchema({"type": "array", "items": _DAY_SCHEMA, "minItems": 1})] = list(DAYS)
    start: Annotated[str, WithJsonSchema(_HHMM_SCHEMA)] = "00:00"
    end: Annotated[str, WithJsonSchema(_HHMM_SCHEMA)] = "24:00"
    timezone: str = "UTC"

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty list of days (mon..sun or 1..7, Monday first)")
        out = []
        for d in v:
            if isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7:
                out.append(DAYS[d - 1])
            elif isinstance(d, str) and d[:3].lower() in DAYS:
                out.append(d[:3].lower())
            else:
                raise ValueError(f"{d!r} is not a day (mon..sun or 1..7)")
        return out

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("must be a time of day HH:MM")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v[:80]!r} (use an IANA name like Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> "Effective":
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


_ROUTE_TEXT = re.compile(r"^(0|[1-9][0-9]{0,5})(s|m|h|d)$")


def _route_duration(v: Any) -> float:
    # Text in one plain form only (30s, 5m, 4h), as the API document states it.
    if isinstance(v, str) and not _ROUTE_TEXT.match(v):
        raise ValueError("must be seconds or a duration like 30s, 5m or 4h")
    return _duration(v)


RouteDuration = Annotated[float, BeforeValidator(_route_duration)]
GROUP_BY_DEFAULT = ["policy_id", "instance_id"]
ROUTE_BOUNDS = {"group_wait": (0, 3600, "0s and 1h"), "group_interval": (60, 86400, "1m and 24h"),
                "repeat_interval": (300, 86400, "5m and 24h")}


def _timer_schema(field: str, say: str) -> WithJsonSchema:
    # The API document's form of a route timer: seconds within its bounds, or text whose
    # bounds `_bounds` checks (a 422 names the field).
    lo, hi, _ = ROUTE_BOUNDS[field]
    return WithJsonSchema({"oneOf": [{"type": "number", "minimum": lo, "maximum": hi},
                                     {"type": "string", "pattern": _ROUTE_TEXT.pattern, "description": say}]})


GroupByName = Annotated[str, WithJsonSchema({"anyOf": [{"type": "string", "pattern": _LABEL.pattern},
                                                       {"type": "string", "enum": ["..."]}]})]


class Route(_Strict):
    """How the notices of a policy (or of every policy notifying a contact group) are
    grouped, with Alertmanager's meanings: alerts with the same `group_by` label values
    share one notice; a new group waits `group_wait` for its other alerts, a group that
    changed waits `group_interval` after its last notice, and an unchanged group still
    firing is sent again every `repeat_interval`. `["..."]` groups by every label."""

    group_by: list[GroupByName] = Field(default_factory=lambda: list(GROUP_BY_DEFAULT), max_length=20)
    group_wait: Annotated[RouteDuration, _timer_schema("group_wait", "from 0s to 1h (default 30s)")] = 30.0
    group_interval: Annotated[RouteDuration, _timer_schema("group_interval", "from 1m to 24h (default 5m)")] = 300.0
    repeat_interval: Annotated[RouteDuration, _timer_schema("repeat_interval", "from 5m to 24h (default 4h)")] = \
        4 * 3600.0

    @field_validator("group_by")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if name != "..." and not _LABEL.match(name):
                raise ValueError(f"{name[:80]!r} is not a label name")
        return v

    @field_validator("group_wait", "group_interval", "repeat_interval")
    @classmethod
    def _bounds(cls, v: float, info: Any) -> float:
        lo, hi, say = ROUTE_BOUNDS[info.field_name]
        if not lo <= v <= hi:
            raise ValueError(f"must be between {say}")
        return v


class Policy(_Strict):
    # A condition or an event condition (`_has_conditions`).
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["conditions"], "properties": {"conditions": {"minItems": 1}}},
        {"required": ["event_conditions"], "properties": {"event_conditions": {"minItems": 1}}}]})
    name: str = Field(min_length=1, max_length=200)
    enabled: StrictBool = True  # strict: not "yes" or 1 (the API says boolean)
    targets: Targets = Targets()
    match: Literal["any", "all"] = "any"
    conditions: list[Condition] = Field([], max_length=20)
    event_conditions: list[EventCondition] = Field([], max_length=20)
    effective: Effective | None = None
    silence: Annotated[Duration, WithJsonSchema({"oneOf": [
        {"type": "number", "minimum": SILENCE_MIN, "maximum": SILENCE_MAX},
        {"type": "string", "pattern": "^(([5-9]|[1-9][0-9]|[1-9][0-9]{2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440)m"
                                      "|([1-9]|1[0-9]|2[0-4])h|1d)$", "description": "from 5m to 24h"}]})] = SILENCE_MAX
    notify_recovery: StrictBool = True
    missing_data: Literal["insufficient", "ok", "breaching", "keep"] = "insufficient"
    contact_groups: list[str] = Field([], max_length=50)
    description: str = Field("", max_length=2000)
    routing: Route | None = None  # None: the first contact group's routing, else one notice per alert

    @field_validator("silence")
    @classmethod
    def _silence(cls, v: float) -> float:
        if not SILENCE_MIN <= v <= SILENCE_MAX:
            raise ValueError("must be between 5m and 24h")
        return v

    @model_validator(mode="after")
    def _has_conditions(self) -> "Policy":
        if not self.conditions and not self.event_conditions:
            raise ValueError("a policy needs at least one condition or event condition")
        return self


# -- contacts: one shape per channel type, which is the API document's form of a channel; Channel
# validates a channel of any type against its shape's requirements, in the messages the API has
# always given (a bad type, a missing url, a secret on a robot that does not sign).

# `\s` spelled out as well: the document's readers (the fuzzer's generator) may not count the
# separators \x1c-\x1f and \x85 as space, which Python's re does.
HTTP_URL = r"^https?://[^\s\x1c-\x1f\x85/]+"
EMAIL = r"^[^@\s\x1c-\x1f\x85]+@[^@\s\x1c-\x1f\x85]+$"


class _ChannelCommon(_Strict):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")
    format: Literal["json", "alertmanager", "alibaba"] = "json"
    headers: dict[str, str] = {}


class HttpChannel(_ChannelCommon):
    type: Literal["webhook", "alertmanager"]
    url: str = Field(pattern=HTTP_URL)
    address: str | None = None


class EmailChannel(_ChannelCommon):
    type: Literal["email"]
    address: str = Field(pattern=EMAIL)
    url: str | None = None


class RobotChannel(_ChannelCommon):
    """A group robot whose URL carries its token."""
    type: Literal["wecom", "slack"]
    url: str = Field(pattern=HTTP_URL)
    address: str | None = None


class SigningRobotChannel(_ChannelCommon):
    """A robot that may also require a signature made with a secret (DingTalk "加签", Feishu "签名校验")."""
    type: Literal["dingtalk", "feishu"]
    url: str = Field(pattern=HTTP_URL)
    address: str | None = None
    secret: str = Field(None, min_length=1, max_length=256)  # type: ignore[assignment]  # absent: unsigned


CHANNEL_SHAPES: dict[str, type[_ChannelCommon]] = {
    t: shape for shape in (HttpChannel, EmailChannel, RobotChannel, SigningRobotChannel)
    for t in get_args(shape.model_fields["type"].annotation)}
CHAT = (*get_args(RobotChannel.model_fields["type"].annotation),
        *get_args(SigningRobotChannel.model_fields["type"].annotation))  # group robots: a URL that is its own token
SIGNED = tuple(t for t, shape in CHANNEL_SHAPES.items() if "secret" in shape.model_fields)
_CHANNEL_DOC = {"oneOf": [shape.model_json_schema() for shape in dict.fromkeys(CHANNEL_SHAPES.values())]}


def _required(t: str, name: str) -> bool:
    field = CHANNEL_SHAPES[t].model_fields.get(name)
    return field is not None and field.is_required()


class Channel(_Strict):
    # The fields in the order contacts have always been stored in.
    type: Literal["webhook", "email", "alertmanager", "dingtalk", "wecom", "slack", "feishu"]
    url: str | None = None
    format: Literal["json", "alertmanager", "alibaba"] = "json"
    address: str | None = None
    headers: dict[str, str] = {}
    # The robot's signing secret; stored, never shown back.
    secret: str | None = Field(None, min_length=1, max_length=256)

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        # Runs only for a secret given: `null` is refused as the API documents a string (leave it out instead).
        if v is None:
            raise ValueError("must be a string; leave it out for a robot without a signing secret")
        return v

    @model_validator(mode="after")
    def _fields(self) -> "Channel":
        if _required(self.type, "url") and not (self.url and re.match(HTTP_URL, self.url)):
            raise ValueError(f"a {self.type} channel needs an http(s) url")
        if _required(self.type, "address") and not (self.address and re.match(EMAIL, self.address)):
            raise ValueError("an email channel needs an address like ops@example.com")
        if self.secret is not None and self.type not in SIGNED:
            raise ValueError(f"only {' and '.join(SIGNED)} robots sign with a secret; a {self.type} channel has none")
        return self


CHANNEL_TYPES: tuple[str, ...] = get_args(Channel.model_fields["type"].annotation)  # each has its shape


class Contact(_Strict):
    name: str = Field(min_length=1, max_length=200)
    channels: list[Annotated[Channel, WithJsonSchema(_CHANNEL_DOC)]] = Field(min_length=1, max_length=20)


class ContactGroup(_Strict):
    name: str = Field(min_length=1, max_length=200)
    contacts: list[str] = Field([], max_length=200)
    routing: Route | None = None  # for the policies notifying this group that have none of their own


def field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith(("function-", "literal[")):
            continue  # pydantic's internal validator steps, not fields
        else:
            out += ("." if out else "") + str(part)
    return out


def parse(model: type[BaseModel], body: Any, context: dict[str, Any] | None = None) -> Any:
    """Validate a body into `model` (its validators see `context`), or raise PolicyError
    naming every bad field."""
    if not isinstance(body, dict):
        raise PolicyError(None, "must be a JSON object", 400)
    try:
        return model.model_validate(body, context=context)
    except ValidationError as e:
        problems: list[dict[str, str]] = []
        for err in e.errors():
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            p = _problem(field_path(err["loc"]) or None, msg)
            if p not in problems:
                problems.append(p)
        raise PolicyError.of(problems) from None


def ref_errors(body: dict[str, Any], *, metric_exists: Callable[[str], bool], interval: float,
               group_exists: Callable[[str], bool]) -> list[dict[str, str]]:
    """What pydantic cannot know: the metrics, the interval, the contact groups. Reads the
    raw body warily, so that a body wrong elsewhere still hears of these too."""
    out: list[dict[str, str]] = []
    conditions = body.get("conditions")
    for i, c in enumerate(conditions if isinstance(conditions, list) else []):
        if not isinstance(c, dict):
            continue
        metric = c.get("metric")
        if isinstance(metric, str) and _NAME.match(metric) and not metric_exists(metric):
            out.append(_problem(f"conditions[{i}].metric",
                                f"unknown metric {metric!r}: not in the catalogue and never ingested"))
        try:
            period = _duration(c.get("period", 300.0))
        except ValueError:
            continue  # pydantic says why
        if period < interval:
            out.append(_problem(f"conditions[{i}].period",
                                f"{period:g}s is shorter than the collection interval ({interval:g}s)"))
    groups = body.get("contact_groups")
    for i, g in enumerate(groups if isinstance(groups, list) else []):
        if isinstance(g, str) and not group_exists(g):
            out.append(_problem(f"contact_groups[{i}]", f"unknown contact group {g[:80]!r}"))
    return out


def validate(body: Any, **refs: Any) -> Policy:
    """A Policy from `body`, or PolicyError with every problem: shape and references alike
    (`refs` as `ref_errors` takes them)."""
    try:
        p = parse(Policy, body)
    except PolicyError as e:
        if e.status != 422:
            raise
        named = {x.get("field") for x in e.errors}
        more = [x for x in ref_errors(body, **refs) if x["field"] not in named]
        raise PolicyError.of(e.errors + more) from None
    problems = ref_errors(dump(p), **refs)
    if problems:
        raise PolicyError.of(problems)
    return p


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
