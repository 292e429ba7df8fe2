"""A silence of one alert, policy or instance, as the API (POST /api/v1/silences) and the
Alerts page's firing rows both make it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, WithJsonSchema, field_validator

from diag.alerting import matchers as m
from diag.units import parse_duration

if TYPE_CHECKING:
    from diag.alerting.repository import Repository
    from diag.instances import Instances

TARGETS = ("alert_id", "policy_id", "instance_id")
MAX_SECONDS = 30 * 86400
# The duration's document schema is the web layer's (a pattern of 1m..30d), put in when served.
_DURATION = WithJsonSchema({"type": "string"})


def _id(v: Any) -> str | None:
    if v is not None and (not isinstance(v, str) or not v or len(v) > 128):
        raise ValueError("must be an id")
    return v


def _duration(v: Any) -> float:
    try:
        return parse_duration(v)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None


def _comment(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 1024:
        raise ValueError("must be a string of at most 1024 characters")
    return v


def _unix(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):  # null too: leave it out
        raise ValueError("must be UNIX seconds")
    return float(v)


Id = Annotated[str | None, BeforeValidator(_id), WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 128})]
Comment = Annotated[str, BeforeValidator(_comment), WithJsonSchema({"type": "string", "maxLength": 1024})]
UnixTime = Annotated[float | None, BeforeValidator(_unix), WithJsonSchema({"type": "number"})]


class TargetSilence(BaseModel):
    """A silence of one alert, policy or instance (exactly one: the route says so first,
    and whether it exists, before a bad duration or comment)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": [t]} for t in TARGETS]})
    alert_id: Id = None
    policy_id: Id = None
    instance_id: Id = None
    duration: Annotated[float, BeforeValidator(_duration), _DURATION] = 3600.0
    comment: Comment = ""

    @field_validator("duration")
    @classmethod
    def _bounds(cls, v: float) -> float:
        if not 60 <= v <= MAX_SECONDS:
            raise ValueError("must be between 1m and 30d")
        return v


def _matchers(raw: Any) -> list[m.Matcher]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= m.MAX_MATCHERS or not all(isinstance(x, dict) for x in raw):
        raise ValueError(f"must be a list of 1 to {m.MAX_MATCHERS} objects {{name, op, value}}")
    try:
        return m.parse_all(raw)
    except m.MatcherError as e:
        raise ValueError(str(e)) from None


class MatcherSilence(BaseModel):
    """A silence of the alerts its matchers all match, from `starts_at` to `ends_at` or for
    `duration` (its bounds, 1m to 30d after it starts, depend on the time: `bounds`)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, json_schema_extra={"required": ["matchers"]})
    matchers: Annotated[list[m.Matcher], BeforeValidator(_matchers), WithJsonSchema(
        {"type": "array", "items": m.MATCHER_SCHEMA, "minItems": 1, "maxItems": m.MAX_MATCHERS})] = []
    starts_at: UnixTime = None
    ends_at: UnixTime = None
    duration: Annotated[float | None, _DURATION] = None
    comment: Comment = ""

    @field_validator("duration", mode="before")
    @classmethod
    def _one_end(cls, v: Any, info: ValidationInfo) -> float:
        if info.data.get("ends_at") is not None:
            raise ValueError("give ends_at or duration, not both")
        return _duration(v)

    def bounds(self, now: float) -> tuple[float, float]:
        """(starts, ends), or ValueError when the silence would not last 1m to 30d."""
        starts = max(now, self.starts_at) if self.starts_at is not None else now
        ends = (self.ends_at if self.ends_at is not None
                else starts + (self.duration if self.duration is not None else 3600))
        if not starts + 60 <= ends <= starts + MAX_SECONDS:
            raise ValueError("a silence lasts from 1m to 30d after it starts")
        return starts, ends


def target_exists(repo: Repository, instances: Instances, scope: str, target: str) -> bool:
    """Whether the alert, policy or instance (`scope`, one of TARGETS) is there to silence."""
    if scope == "alert_id":
        return repo.alert(target) is not None
    if scope == "policy_id":
        return repo.exists("policy", target)
    return instances.get(target) is not None


def silence_target(repo: Repository, scope: str, target: str, duration: float, comment: str, created_by: str,
                   now: float) -> dict[str, Any]:
    """Silence the one alert, policy or instance from now for `duration` seconds."""
    return repo.add_silence(duration=duration, comment=comment, now=now, created_by=created_by,
                            **{k: (target if k == scope else None) for k in TARGETS})
