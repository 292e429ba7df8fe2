"""The sections of the settings about what is read and kept: paths, network, store,
ingest bounds, log rules, plugins and application groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo, field_validator

from collectors import apps as app_rules
from collectors import kernel_patterns as rules
from diag.settings.defaults import RETENTION
from diag.settings.types import BitRate, Duration, Size, Strict as _Strict


class Paths(_Strict):
    # The tree's root filesystem: where /usr/sbin/sshd, /run/sshd... are looked for, and
    # where statvfs finds each mountpoint of proc's mount table (node_exporter's --path.rootfs).
    root: Path = Field(Path("/"), description="the filesystems of the --proc tree are mounted under this "
                                                "directory (statvfs reads DIR/<mountpoint>), like node_exporter's "
                                                "--path.rootfs")
    proc: Path = Field(Path("/proc"), description="read this tree instead of /proc")
    sys: Path = Field(Path("/sys"), description="read this tree instead of /sys")
    kmsg: Path = Field(Path("/dev/kmsg"), description="read this file instead of /dev/kmsg")
    etc: Path = Path("/etc")
    pstore: Path = Path("/sys/fs/pstore")


class Cap(_Strict):
    inbound: BitRate | None = None
    outbound: BitRate | None = None


class Network(_Strict):
    # scope -> purchased bandwidth, e.g. {"public": {"inbound": "100Mbit", "outbound": "10Mbit"}}
    bandwidth_caps: dict[Literal["public", "private"], Cap] = {}
    # interface -> scope, overriding the address-based guess
    interface_scopes: dict[str, Literal["public", "private"]] = {}


class Retention(_Strict):
    raw: Duration = RETENTION["raw"]
    m1: Duration = RETENTION["m1"]
    m5: Duration = RETENTION["m5"]
    h1: Duration = RETENTION["h1"]
    d1: Duration = RETENTION["d1"]


class StoreConfig(_Strict):
    head_span: Duration = 7200
    retention: Retention = Retention()
    size_cap: Size | None = None
    maintain_every: Duration = 300
    # Each instance's system log (GET /api/v1/instances/{id}/kernel-log): the newest lines kept,
    # and for how long.
    kernel_log_lines: int = Field(5000, ge=100, le=1_000_000)
    kernel_log_keep: Duration = 7 * 86400


class IngestConfig(_Strict):
    """Bounds on what pushers may store (POST /api/v1/ingest answers 429 beyond them)."""

    # New series one instance may have in all: a flood of label values grew the store by
    # 191 MB in 3 s.
    max_series_per_instance: int = Field(50_000, ge=1)
    # Points per second each token (or, with none, each client address) may push on
    # average, and at once: a token bucket refilled at points_per_second up to points_burst.
    points_per_second: float = Field(200_000, gt=0)
    points_burst: int = Field(1_000_000, ge=1)


class LogPattern(_Strict):
    """An operator's log rule (node-problem-detector's system-log monitor rule)."""

    pattern: str
    source: str = "kernel"  # "kernel" (/dev/kmsg), "journal", or a log file's absolute path
    type: Literal[rules.RULE_TYPES] = "temporary"
    level: Literal[rules.USER_LEVELS] = "WARN"
    clear: str | None = None  # permanent only: a line ending the condition

    # The checks live with the rules, so that the agent (no pydantic) refuses what this refuses.
    _pattern = field_validator("pattern", "clear")(rules.check_regex)
    _source = field_validator("source")(rules.check_source)

    @field_validator("clear")
    @classmethod
    def _clear_needs_permanent(cls, v: str | None, info: ValidationInfo) -> str | None:
        return rules.check_clear(v, info.data.get("type"))


RuleName = Annotated[str, StringConstraints(pattern=rules.RULE_NAME.pattern)]


def _number_arg(v: Any) -> Any:
    # `[check_load, -w, 5]` in YAML: an argument that looks like a number is still an argument.
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


_Arg = Annotated[str, BeforeValidator(_number_arg), Field(min_length=1)]


class Plugin(_Strict):
    """A Nagios-compatible plugin run as a check (plugin.<name>); README "Plugin checks"."""

    command: Annotated[list[_Arg], Field(min_length=1, max_length=256)]
    timeout: Annotated[Duration, Field(le=3600)] = 10
    interval: Annotated[Duration, Field(ge=1)] = 60
    severity: Literal["critical", "non_critical"] = "critical"
    recommendation: str = ""
    description: str = ""
    # Before `user`, whose check reads it. Root only when the config says so in these words.
    run_as_root: bool = False
    user: str | None = None  # default: nobody (when the service is root; else the service's own user)

    @field_validator("command")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        # No shell and no PATH lookup: what runs is the file named, whoever edits PATH.
        if not v[0].startswith("/"):
            raise ValueError(f"the program must be an absolute path (no shell, no PATH lookup), not {v[0]!r}")
        return v

    @field_validator("user")
    @classmethod
    def _not_root(cls, v: str | None, info: ValidationInfo) -> str | None:
        import pwd

        if v is None:
            return v
        if info.data.get("run_as_root"):
            raise ValueError("run_as_root: true runs the plugin as root; leave user out")
        try:
            uid = pwd.getpwnam(v).pw_uid
        except KeyError:
            raise ValueError(f"no user {v!r} on this machine") from None
        if uid == 0:
            raise ValueError(f"{v} is root: a plugin runs as root only with run_as_root: true")
        return v


PluginName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
# Checked by collectors/apps.py, which the agent shares.
AppGroupName = Annotated[str, AfterValidator(app_rules.check_group_name)]
AppPattern = Annotated[str, AfterValidator(app_rules.check_pattern)]
