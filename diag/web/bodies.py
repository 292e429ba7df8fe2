"""Request bodies as pydantic models. Each model validates its body into the typed values
the route uses and is also that body's schema in the OpenAPI document (`schema`), so the
validator and the document cannot drift apart: the document is fuzzed
(tests/web/test_openapi.py), and what it allows must be accepted, what it forbids refused.

A field whose value is parsed (a duration, a time) rather than typed carries its document
schema beside its parser (`WithJsonSchema`); a field whose bounds are known only when the
document is served (the configured checks) gets them from `schema(..., served=...)`.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      StringConstraints, ValidationInfo, WithJsonSchema, field_validator)

from diag import fleet
from diag.alerting.policy import PolicyError, parse as parse_model
from diag.commands import model as commands_model, sendfile
from diag.events import MAINTENANCE
from diag.units import parse_duration, parse_time
from diag.web.errors import ApiError
from diag.web.openapi import live, model_schema as schema  # noqa: F401  (the routes' import)
from diag.web.schemas import duration_text
from diag.web.validate import INSTANCE_ID, LABEL_NAME, MAX_LABEL_VALUE

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    # python-re: a pattern's `$` takes one final newline, as re.match in the other validators
    # and the fuzzer's generator (hypothesis' from_regex) read the document's pattern.
    model_config = ConfigDict(extra="ignore", regex_engine="python-re")


def parse(model: type[M], body: Any, **context: Any) -> M:
    """`body` as `model`, or the ApiError of its first problem, its field named as the
    alerting models name theirs (policy.field_path). An unknown field (extra="forbid")
    is named first, the first in sorted order. `context` is what
    the validators read (`now`: the request's time, which `now` and `-1h` are relative to)."""
    try:
        return parse_model(model, body, context)
    except PolicyError as e:
        if e.status != 422:
            raise ApiError(e.status, e.message, e.field) from None
        unknown = sorted((p.get("field") or "" for p in e.errors if p["message"] == "unknown field"))
        if unknown:
            raise ApiError(422, "unknown field", unknown[0]) from None
        # A label map's bad key is named as the key itself (labels.Bad-Key), as validate.labels did.
        raise ApiError(422, e.message, (e.field or "").removesuffix(".[key]") or None) from None


# -- shared field types -------------------------------------------------------------------------

InstanceId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=INSTANCE_ID.pattern)]
# Label names as patternProperties (the pattern bounds their length), the draft-4 form
# OpenAPI 3.0 tools validate with; null reads as no labels.
Labels = Annotated[dict[Annotated[str, StringConstraints(pattern=LABEL_NAME.pattern)],
                        Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]],
                   Field(max_length=32)]


def _text(max_len: int) -> Any:
    return Field("", max_length=max_len)


def _duration(v: Any) -> float:
    if isinstance(v, bool):  # float(True) is 1.0: a boolean is no duration
        raise ValueError("must be a duration like 1h")
    try:
        return parse_duration(v)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None


def _time(v: Any, info: ValidationInfo) -> float:
    """UNIX seconds as a number, or text as diag.units.parse_time reads it."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return parse_time(str(v), (info.context or {}).get("now") or time.time())


# -- events -------------------------------------------------------------------------------------

# Not in the past: UNIX seconds from when the document was served, `now`, or a time after 2033.
_NOT_BEFORE_DOC = {"oneOf": [live(lambda: {"type": "number", "minimum": round(time.time())}),
                             {"type": "string", "pattern": r"^(now|[2-9][0-9]{9}(\.[0-9]{1,6})?)$"}]}
NotBefore = Annotated[float, BeforeValidator(_time), WithJsonSchema(_NOT_BEFORE_DOC)]
_WEEK = r"[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h|[1-7]d"


class EventBody(Body):
    instance_id: InstanceId = None  # type: ignore[assignment]  # absent: this server
    type: Literal[MAINTENANCE]  # type: ignore[valid-type]
    not_before: NotBefore = None  # type: ignore[assignment]  # absent: now
    inquire: StrictBool = False  # created Inquiring: it waits for POST /events/{id}/accept before it runs
    duration: Annotated[float, BeforeValidator(_duration),
                        WithJsonSchema(duration_text(_WEEK, "from 1m to 7d"))] = Field("1h", validate_default=True)
    comment: str = _text(1024)


class EventPatchBody(Body):
    model_config = ConfigDict(extra="forbid")
    not_before: NotBefore


# -- diagnosis ----------------------------------------------------------------------------------

MAX_WINDOW = 31 * 86400


def _window(v: Any) -> float:
    if not isinstance(v, str):  # text only: the document says so
        raise ValueError("must be a duration from 1m to 31d, like 12h")
    seconds = parse_duration(v)
    if not 60 <= seconds <= MAX_WINDOW:
        raise ValueError("must be a duration from 1m to 31d, like 12h")
    return seconds


_WINDOW_DOC = duration_text(r"([6-9][0-9]|[1-9][0-9]{2,5})s|[1-9][0-9]{0,3}m|([1-9]|[1-9][0-9]|[1-6][0-9]{2})h"
                            r"|([1-9]|[12][0-9]|3[01])d", "from 1m to 31d, like 12h")


class DiagnosisBody(Body):
    instance_id: InstanceId = None  # type: ignore[assignment]  # absent: this server
    window: Annotated[float, BeforeValidator(_window), WithJsonSchema(_WINDOW_DOC)] = \
        Field("12h", validate_default=True)
    # Ids of the catalogue's and the configured plugin checks, which the route knows; null: every check.
    checks: list[str] | None = Field(None, min_length=1)


# -- fleet --------------------------------------------------------------------------------------

def _expires_in(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):  # float(True) is 1.0: no duration
        raise ValueError("must be a duration like 1h or a number of seconds")
    seconds = parse_duration(v)
    if not 0 < seconds <= fleet.MAX_EXPIRES:
        raise ValueError("must be more than 0 and at most 365d")
    return seconds


_EXPIRES_DOC = {"oneOf": [duration_text(r"[1-9][0-9]{0,3}[smh]|([1-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-5])d",
                                        "more than 0 and at most 365d"),
                          {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": fleet.MAX_EXPIRES}]}


def _cidr(v: str) -> str:
    try:
        return fleet.parse_cidrs([v])[0]
    except ValueError as e:  # "[0]: why": the item's place is pydantic's to name
        raise ValueError(str(e).partition(": ")[2]) from None


# Normalised (10.1.2.3/8 -> 10.0.0.0/8), each network once; the pattern bounds the length by
# itself (43 characters at most).
Cidrs = Annotated[list[Annotated[str, AfterValidator(_cidr), WithJsonSchema({"type": "string",
                                                                              "pattern": fleet.CIDR_PATTERN})]],
                  Field(max_length=fleet.MAX_CIDRS), AfterValidator(lambda nets: list(dict.fromkeys(nets)))]


class ActivationBody(Body):
    count: StrictInt = Field(1, ge=1, le=fleet.MAX_COUNT)
    expires_in: Annotated[float, BeforeValidator(_expires_in), WithJsonSchema(_EXPIRES_DOC)] = \
        Field("1h", validate_default=True)
    description: str = _text(1000)
    # Registrations from other addresses are refused (403) and recorded as an event; null: any.
    source_cidrs: Cidrs | None = None


class RegisterBody(Body):
    # Empty or missing: 401, as any wrong credentials.
    activation_id: str = Field(min_length=1)
    activation_code: str = Field(min_length=1)
    instance_id: InstanceId
    hostname: str = _text(255)
    labels: Labels | None = None


# -- alerting -----------------------------------------------------------------------------------

def _week(v: Any) -> float:
    seconds = _duration(v)
    if not 60 <= seconds <= 7 * 86400:
        raise ValueError("must be between 1m and 7d")
    return seconds


class AckBody(Body):
    model_config = ConfigDict(extra="forbid")
    comment: str = _text(1024)
    expires_in: Annotated[float, BeforeValidator(_week),
                          WithJsonSchema(duration_text(_WEEK, "from 1m to 7d (default 24h)"))] = \
        Field("24h", validate_default=True)


# -- remote commands ----------------------------------------------------------------------------

def _unique(ids: list[str]) -> list[str]:
    if len(set(ids)) != len(ids):
        raise ValueError("lists an instance twice")
    return ids


def _user(v: Any) -> str:
    v = v or ""  # absent, null or empty: the agent's own user
    if not isinstance(v, str) or (v and not commands_model.USERNAME.match(v)):
        raise ValueError("must be a user or group name")
    return v


UserName = Annotated[str, BeforeValidator(_user),
                     WithJsonSchema({"type": "string", "pattern": f"^$|{commands_model.USERNAME.pattern}"})]


class FileBody(Body):
    # Every field is checked; any other is refused (400, naming it).
    model_config = ConfigDict(extra="forbid")
    instance_ids: Annotated[list[InstanceId], Field(min_length=1, max_length=commands_model.MAX_INSTANCES),
                            AfterValidator(_unique)]
    name: Annotated[str, AfterValidator(sendfile.check_name)]
    target_dir: Annotated[str, AfterValidator(sendfile.check_dir)]
    mode: Annotated[str, StringConstraints(pattern=sendfile.MODE.pattern)] = "0644"
    content_encoding: Literal["Base64", "PlainText"] = "Base64"
    # The file's bytes in base64, or its text with PlainText; at most 32 KiB (413).
    content: Annotated[bytes, WithJsonSchema({"type": "string"})]
    owner: UserName = ""
    group: UserName = ""
    overwrite: StrictBool = False
    description: str = _text(512)
    timeout: Annotated[float, BeforeValidator(commands_model.timeout),
                       WithJsonSchema({"oneOf": [{"type": "number", "minimum": commands_model.MIN_TIMEOUT,
                                                  "maximum": commands_model.MAX_TIMEOUT}, {"type": "string"}],
                                       "description": "10-86400 s, or 10s-24h; default 60"})] = \
        Field(None, validate_default=True)

    @field_validator("content", mode="before")
    @classmethod
    def _decode(cls, v: Any, info: ValidationInfo) -> bytes:
        if not isinstance(v, str):
            raise ValueError("must be a string (the file's bytes in base64, or its text with PlainText)")
        if info.data.get("content_encoding") == "PlainText":
            return v.encode()
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:  # binascii.Error, and non-ASCII input (a plain ValueError)
            raise ValueError("must be the file's bytes in base64") from None
