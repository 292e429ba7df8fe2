"""Validation of command and invocation bodies; each failure names its field. A command body is
a pydantic model (CommandBody), which is also its OpenAPI schema."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, WithJsonSchema)

from diag.commands import parameters
from diag.commands.runner import SCRIPT_TYPES
from diag.commands.schedule import REPEAT_MODES
from diag.actor import token_fingerprint
from diag.identity import INSTANCE_ID
from diag.units import parse_duration

MAX_CONTENT = 16 * 1024
MAX_INSTANCES = 50
MAX_CHECK_IDS = 20
DEFAULT_TIMEOUT, MIN_TIMEOUT, MAX_TIMEOUT = 60.0, 10.0, 86400.0
USERNAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")


class CommandError(ValueError):
    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code


def _text(max_len: int, required: bool = False) -> BeforeValidator:
    """A text field: null reads as empty; NUL never."""
    def check(v: Any) -> str:
        v = "" if v is None else v
        if not isinstance(v, str) or len(v) > max_len or (required and not v.strip()) or "\x00" in v:
            raise ValueError(f"must be {'a non-empty' if required else 'a'} string of at most {max_len} characters")
        return v
    return BeforeValidator(check)


def timeout(value: Any, field: str = "timeout") -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        t = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else parse_duration(value)
    except (ValueError, TypeError):
        raise CommandError(422, "must be seconds or a duration like 60s, 5m", field) from None
    if not MIN_TIMEOUT <= t <= MAX_TIMEOUT:
        raise CommandError(422, f"must be between {MIN_TIMEOUT:g}s and {MAX_TIMEOUT:g}s", field)
    return t


class _TooLarge(Exception):
    """Not a ValueError, so that pydantic lets it through: a body this large is a 413, not a 422."""


def _type(v: Any) -> str:
    if v not in SCRIPT_TYPES:  # "" or null is a wrong type, not the default
        raise ValueError(f"must be one of {', '.join(SCRIPT_TYPES)}")
    return v


def _encoding(v: Any) -> str:
    if v not in ("PlainText", "Base64"):
        raise ValueError("must be PlainText or Base64")
    return v


def _content(raw: Any, info: ValidationInfo) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty string (the script)")
    if "content_encoding" not in info.data:  # a bad encoding is named, not guessed at
        return raw
    if info.data.get("content_encoding") == "Base64":
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input (a plain ValueError)
            raise ValueError("is not base64 of UTF-8 text") from None
    size = len(raw.encode())
    if size > MAX_CONTENT:
        if size > 4 * MAX_CONTENT and "type" in info.data:  # a bad type is named first, as always
            raise _TooLarge(f"is {size} bytes; at most {MAX_CONTENT} (16 KiB)")
        raise ValueError(f"is {size} bytes; at most {MAX_CONTENT} (16 KiB)")
    if "\x00" in raw:
        raise ValueError("must not contain NUL")
    if "type" in info.data:
        parameters.names(raw, info.data["type"])  # a ParameterError is a ValueError naming content
    return raw


def _working_dir(v: str) -> str:
    if v and not v.startswith("/"):
        raise ValueError("must be an absolute path")
    return v


def _username(v: str) -> str:
    if v and not USERNAME.match(v):
        raise ValueError("is not a valid user name")
    return v


def _tags(v: Any) -> list[str]:
    v = v or []
    if not isinstance(v, list) or len(v) > 10 or not all(isinstance(t, str) and 0 < len(t) <= 128 for t in v):
        raise ValueError("must be a list of at most 10 strings (e.g. check ids)")
    return v


def _check_id_list(v: Any) -> Any:
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > MAX_CHECK_IDS:
        raise ValueError(f"must be a list of at most {MAX_CHECK_IDS} check ids")
    return v


def _check_id(v: Any) -> str:
    from checks.catalogue import BY_ID  # here, not at the top: agents import this module and run no checks

    if not isinstance(v, str) or v not in BY_ID:
        raise ValueError("is not a check id (GET /api/v1/checks lists them)")
    return v


def _once(v: list[str]) -> list[str]:
    if len(set(v)) != len(v):
        raise ValueError("lists a check twice")
    return v


_timeout = timeout  # the field's annotation is read in the class, where `timeout` is the field
_TIMEOUT_DOC = {"oneOf": [{"type": "number", "minimum": MIN_TIMEOUT, "maximum": MAX_TIMEOUT}, {"type": "string"}],
                "description": "10-86400 s, or 10s-24h; default 60"}


class CommandBody(BaseModel):
    """A command: its script (`content`), how it runs and what it is offered for."""

    # The first bad field is named (`command`), in the order of _CHECKED: a bad type before
    # the content that would be parsed as that type.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["name", "content"]})
    type: Annotated[str, BeforeValidator(_type), WithJsonSchema({"type": "string", "enum": list(SCRIPT_TYPES)})] = \
        "RunShellScript"
    content_encoding: Annotated[str, BeforeValidator(_encoding),
                                WithJsonSchema({"type": "string", "enum": ["PlainText", "Base64"]})] = "PlainText"
    # The script, or its base64 with Base64; at most 16 KiB (413 when far over).
    content: Annotated[str, BeforeValidator(_content), WithJsonSchema({"type": "string", "minLength": 1})] = \
        Field(None, validate_default=True)
    working_dir: Annotated[str, _text(1024), AfterValidator(_working_dir), WithJsonSchema(
        {"type": "string", "maxLength": 1024, "pattern": r"^(/[^\x00]*)?$"})] = ""
    username: Annotated[str, _text(33), AfterValidator(_username), WithJsonSchema(
        {"type": "string", "pattern": f"^$|{USERNAME.pattern}"})] = ""
    tags: Annotated[list[str], BeforeValidator(_tags), WithJsonSchema(
        {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 128}, "maxItems": 10})] = []
    name: Annotated[str, _text(128, required=True), WithJsonSchema(
        {"type": "string", "maxLength": 128, "pattern": r"^[^\x00]*[^\x00\s][^\x00]*$"})] = \
        Field(None, validate_default=True)
    description: Annotated[str, _text(512), WithJsonSchema({"type": "string", "maxLength": 512,
                                                           "pattern": r"^[^\x00]*$"})] = ""
    timeout: Annotated[float, BeforeValidator(_timeout), WithJsonSchema(_TIMEOUT_DOC)] = \
        Field(None, validate_default=True)
    # The diagnosis checks a command is offered for (beside a failing one on the Diagnosis page).
    # (The document lists the catalogue's ids as the items when served.)
    check_ids: Annotated[list[Annotated[str, BeforeValidator(_check_id)]], BeforeValidator(_check_id_list),
                         AfterValidator(_once), WithJsonSchema({"type": "array", "items": {"type": "string"},
                                                                "maxItems": MAX_CHECK_IDS, "uniqueItems": True})] = []


_CHECKED = ("type", "content", "content_encoding", "working_dir", "username", "tags", "name", "description",
            "timeout", "check_ids")


def command(body: dict, base: dict | None = None) -> dict[str, Any]:
    """A full command from a create body, or `base` updated by a PUT body."""
    if base is not None:
        body = {**base, **{k: v for k, v in body.items() if k != "command_id"}}
    try:
        c = CommandBody.model_validate(body)
    except _TooLarge as e:
        raise CommandError(413, str(e), "content") from None
    except ValidationError as e:
        # The first problem in the order the fields have always been checked in: content is
        # declared after content_encoding only to be decoded by it.
        err = min(e.errors(), key=lambda x: _CHECKED.index(x["loc"][0]) if x["loc"] else -1)
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise CommandError(422, err["msg"].removeprefix("Value error, "), field or None) from None
    return {"name": c.name, "description": c.description, "type": c.type, "content": c.content,
            "parameters": parameters.names(c.content, c.type), "working_dir": c.working_dir,
            "timeout": c.timeout, "username": c.username, "tags": c.tags, "check_ids": c.check_ids}


EDITABLE = ("name", "description", "type", "content", "working_dir", "timeout", "username", "tags", "check_ids")


def editable(cmd: dict[str, Any]) -> dict[str, Any]:
    """The fields of a saved command that a PUT or a clone may change."""
    return {k: cmd[k] for k in EDITABLE}


def clone(cmd: dict[str, Any], changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a saved command named <name>-copy, the fields in `changes` replacing its own."""
    return command(changes or {}, base={**editable(cmd), "name": cmd["name"][:123] + "-copy"})


def known_instance_ids(value: Any, known: Callable[[str], bool]) -> list[str]:
    """`instance_ids`, each an instance this server knows (422 naming the first it does not)."""
    ids = instance_ids(value)
    for i, iid in enumerate(ids):
        if not known(iid):
            raise CommandError(422, f"no instance {iid}", f"instance_ids[{i}]")
    return ids


class _Refused(Exception):
    """Not a ValueError, so that pydantic lets it through: the CommandError inside names the
    item (instance_ids[1]), which a validator's ValueError could not."""

    def __init__(self, error: CommandError):
        super().__init__(error.message)
        self.error = error


def _known(value: Any, info: ValidationInfo) -> list[str]:
    try:
        return known_instance_ids(value, info.context["known"])
    except CommandError as e:
        raise _Refused(e) from None


def _timeout_or_none(v: Any) -> float | None:
    return None if v is None else _timeout(v)  # None: the command's


def _string(v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ValueError("must be a string")
    return v


class InvokeBody(BaseModel):
    """An invocation of a command: on which instances, with what values, when."""

    # The first problem is reported in the order of the fields; what depends on the command
    # (the allow-list, the parameters it has, the schedule) the engine checks after.
    # extra="ignore": /run-command's body carries the command too.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["instance_ids"]})
    instance_ids: Annotated[list[str], BeforeValidator(_known), WithJsonSchema(
        {"type": "array", "minItems": 1, "maxItems": MAX_INSTANCES, "uniqueItems": True,
         "items": {"type": "string", "pattern": INSTANCE_ID.pattern}})] = Field(None, validate_default=True)
    timeout: Annotated[float | None, BeforeValidator(_timeout_or_none), WithJsonSchema(
        {**_TIMEOUT_DOC, "description": "10-86400 s, or 10s-24h; default: the command's"})] = None
    repeat_mode: Annotated[str | None, BeforeValidator(_string), WithJsonSchema(
        {"type": "string", "enum": list(REPEAT_MODES)})] = None  # absent: Once
    frequency: Annotated[str | None, BeforeValidator(_string), WithJsonSchema({"type": "string"})] = None
    # The command's parameters by name, each a string.
    parameters: Annotated[Any, WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}})] = None


def invocation(body: dict[str, Any], known: Callable[[str], bool]) -> InvokeBody:
    """`body` as an InvokeBody, its instances each one `known`; CommandError naming the first bad field."""
    try:
        return InvokeBody.model_validate(body, context={"known": known})
    except _Refused as e:
        raise e.error from None
    except ValidationError as e:
        err = e.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise CommandError(422, err["msg"].removeprefix("Value error, "), field or None) from None


def audit(token: str, source: str | None, user_agent: str) -> dict[str, Any]:
    """Who started an invocation, from where and with what, as the API and the page record it."""
    return {"who": token_fingerprint(token), "source": source, "user_agent": user_agent[:200]}


def instance_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INSTANCES:
        raise CommandError(422, f"must be a list of 1-{MAX_INSTANCES} instance ids", "instance_ids")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not INSTANCE_ID.match(v):
            raise CommandError(422, "is not an instance id", f"instance_ids[{i}]")
    if len(set(value)) != len(value):
        raise CommandError(422, "lists an instance twice", "instance_ids")
    return list(value)
