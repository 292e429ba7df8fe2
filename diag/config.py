"""The service's one typed config: defaults, a YAML or TOML file, environment, flags.

Precedence, last wins: defaults < file < environment (DIAG_*) < command-line flags.
A bad file is refused with its path, line and field.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo,
                      field_validator)

from collectors import apps as app_rules
from collectors import kernel_patterns as rules
from collectors.kernel_patterns import UserRule
from collectors.roots import Roots
from collectors.settings import BandwidthCap, CollectorSettings
from diag.config_lines import line_of as _line_of
from diag.units import parse_bitrate, parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
BitRate = Annotated[float, BeforeValidator(parse_bitrate), Field(gt=0)]


class ConfigError(Exception):
    """A config problem, located: `path:line: field: message`."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        where = ":".join(str(p) for p in (path, line) if p is not None)
        super().__init__(" ".join(p for p in (f"{where}:" if where else "", f"{field}:" if field else "", message) if p))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Paths(_Strict):
    # The tree's root filesystem: where /usr/sbin/sshd, /run/sshd... are looked for, and
    # where statvfs finds each mountpoint of proc's mount table (node_exporter's --path.rootfs).
    root: Path = Path("/")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")
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
    raw: Duration = 48 * 3600
    m1: Duration = 31 * 86400
    m5: Duration = 31 * 86400
    h1: Duration = 31 * 86400
    d1: Duration = 180 * 86400


class StoreConfig(_Strict):
    head_span: Duration = 7200
    retention: Retention = Retention()
    size_cap: Size | None = None
    maintain_every: Duration = 300
    # Each instance's system log (GET /api/v1/instances/{id}/kernel-log): the newest lines kept,
    # and for how long.
    kernel_log_lines: int = Field(5000, ge=100, le=1_000_000)
    kernel_log_keep: Duration = 7 * 86400


# -- alerting (diag/alerting) ------------------------------------------------------------
class Smtp(_Strict):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "diag@localhost"
    timeout: Duration = 10
    verify: bool = True
    ca_file: Path | None = None


class AlertingConfig(_Strict):
    policies_file: Path | None = None  # YAML/JSON: policies, contacts, contact_groups, upserted at start
    defaults: bool = True  # create the one-click default policies on first start
    external_url: str | None = None  # base of the links in notifications; else http://host:port
    # The zone of the times in notices (the seed's eventTime, 20181226T220114.058+0800, and
    # the chat messages); the server's own zone when unset.
    timezone: str | None = None
    smtp: Smtp = Smtp()
    retry_base: Duration = 5
    retry_cap: Duration = 600
    give_up_after: Duration = 86400
    deliver_every: Duration = 2

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, v: str | None) -> str | None:
        # Every notice links to {external_url}/instances/{id}: a query, a fragment or a
        # missing scheme would make each of those links wrong, so they are refused here.
        if v is None:
            return v
        u = _urlsplit(v)
        if u is None or u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("must be an http(s) URL like https://diag.example.org")
        if u.query or u.fragment or any(c.isspace() for c in v):
            raise ValueError("must be a base URL without spaces, ?query or #fragment (a path prefix is fine)")
        return v.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v[:80]!r} (use an IANA name like Asia/Shanghai)") from None
        return v


def _urlsplit(v: str) -> Any:
    import urllib.parse

    try:
        u = urllib.parse.urlsplit(v)
        u.port  # noqa: B018 - raises on a bad port
        return u
    except ValueError:
        return None
# -- end alerting --------------------------------------------------------------------------


class IngestConfig(_Strict):
    """Bounds on what pushers may store (POST /api/v1/ingest answers 429 beyond them)."""

    # New series one instance may have in all: a flood of label values grew the store by
    # 191 MB in 3 s.
    max_series_per_instance: int = Field(50_000, ge=1)
    # Points per second each token (or, with none, each client address) may push on
    # average, and at once: a token bucket refilled at points_per_second up to points_burst.
    points_per_second: float = Field(200_000, gt=0)
    points_burst: int = Field(1_000_000, ge=1)


class RecordDelivery(_Strict):
    """Where each finished execution record goes (diag/commands/records.py): appended to a
    JSON-lines file, POSTed to a webhook, or both; at least once, through a persisted outbox."""

    file: Path | None = None
    webhook: str | None = None
    headers: dict[str, str] = {}  # sent with each POST, e.g. Authorization for the receiver
    retry_base: Duration = 5
    retry_cap: Duration = 600
    give_up_after: Duration = 7 * 86400

    @field_validator("file")
    @classmethod
    def _absolute_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError(f"must be an absolute path, not {str(v)!r}")
        if v is not None and not v.parent.is_dir():
            raise ValueError(f"{v.parent} is not a directory")
        return v

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        import urllib.parse

        if v is None:
            return v
        u = urllib.parse.urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, not {v[:100]!r}")
        try:
            u.port  # noqa: B018 - raises on a port that is not a number or out of range
        except ValueError as e:
            raise ValueError(f"has a bad port: {e}") from None
        return v


class CommandsConfig(_Strict):  # remote commands (diag/commands), used only with enable_commands
    allow: list[str] = []  # command names (or name@sha256 of the content) that may run; empty: any
    delivery_timeout: Duration = 60  # a task no agent collected by then fails (AgentNotOnline)
    workers: Annotated[int, Field(ge=1, le=64)] = 4  # concurrent runs on this instance
    records: RecordDelivery = RecordDelivery()


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


class Config(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./data")
    interval: Duration = 10
    instance_id: str | None = None
    token: str | None = None
    ingest_token: str | None = None
    store_url: str | None = None
    # Only the admin token (or a dashboard login) may read the API, /metrics and the pages
    # (agents' own endpoints excepted). Unset: on when listening beyond loopback with a token.
    protect_reads: bool | None = None
    enable_commands: bool = False
    top_processes: int = Field(5, ge=1, le=50)
    # Application groups charted per cycle: the top N by CPU and by memory, the rest as "other".
    top_apps: int = Field(10, ge=1, le=50)
    # Operators' application groups: {web: [nginx, "php-fpm*"]}, first match in order wins.
    app_groups: dict[AppGroupName, Annotated[list[AppPattern], Field(min_length=1)]] = {}
    # Containers and cgroups with series each cycle: the top N by CPU and by memory, plus every
    # one at or over this share of its memory limit (keep it at or below the warning threshold
    # of performance.container_memory, or a container between the two is seen only in a top N).
    top_containers: int = Field(5, ge=1, le=50)
    containers_over_percent: float = Field(80.0, gt=0, le=100)
    # Ports a user must be able to reach (access.port_listening, access.firewall); sshd's own are added.
    service_ports: list[Annotated[int, Field(ge=1, le=65535)]] = []
    diagnose_every: Duration = 300
    # Per-check threshold overrides: {"storage.disk_usage": {"warning": 85}}; checked against
    # the catalogue at load, so a typo is refused with its field.
    checks: dict[str, dict[str, float]] = {}
    # Treat lines that user space wrote to /dev/kmsg as kernel findings (for fault drills).
    kmsg_user_records: bool = False
    # Operators' own log rules, by name (the event type is Custom.<name>); README "Your own log patterns".
    log_patterns: dict[RuleName, LogPattern] = {}
    # node_exporter's textfile convention: *.prom files in this directory become series of
    # this instance (collectors/textfile.py; README "Your own metrics from files"). None: off.
    textfile_dir: Path | None = None
    textfile_max_series_per_file: int = Field(1000, ge=1)
    textfile_max_series: int = Field(10000, ge=1)
    # Nagios-compatible plugins run as checks, by name (check id plugin.<name>); README "Plugin checks".
    plugins: dict[PluginName, Plugin] = {}
    paths: Paths = Paths()
    network: Network = Network()
    store: StoreConfig = StoreConfig()
    alerting: AlertingConfig = AlertingConfig()
    commands: CommandsConfig = CommandsConfig()
    ingest: IngestConfig = IngestConfig()

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, v: str | None) -> str | None:
        if v is not None and not (1 <= len(v) <= 128 and all(c.isalnum() or c in "-_.:" for c in v)):
            raise ValueError("instance_id takes 1-128 letters, digits and - _ . :")
        return v

    @property
    def roots(self) -> Roots:
        p = self.paths
        return Roots(proc=p.proc, sys=p.sys, kmsg=p.kmsg, etc=p.etc, pstore=p.pstore, root=p.root)

    def collector_settings(self) -> CollectorSettings:
        return CollectorSettings(
            state_dir=self.data_dir / "state",
            bandwidth_caps={s: BandwidthCap(c.inbound, c.outbound) for s, c in self.network.bandwidth_caps.items()},
            interface_scopes=dict(self.network.interface_scopes),
            top_processes=self.top_processes,
            top_apps=self.top_apps,
            top_containers=self.top_containers, containers_over_percent=self.containers_over_percent,
            app_groups={name: tuple(pats) for name, pats in self.app_groups.items()},
            kmsg_user_records=self.kmsg_user_records,
            textfile_dir=self.textfile_dir, textfile_max_series_per_file=self.textfile_max_series_per_file,
            textfile_max_series=self.textfile_max_series,
            log_rules=tuple(UserRule.of(name, p.source, p.pattern, p.level, p.type, p.clear)
                            for name, p in self.log_patterns.items()),
        )

    def resolved_instance_id(self) -> str:
        return self.instance_id or instance_id_from(self.roots.etc)


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback one. A name is resolved, not
    read: `127.anywhere` may well be 0.0.0.0. A name that does not resolve is not loopback."""
    return _loopback(host.strip())


@functools.lru_cache(maxsize=64)
def _loopback(host: str) -> bool:
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not name:
        return False  # "" binds every interface
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    try:
        return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)
    except ValueError:
        return False


def reads_protected(config: Config) -> bool:
    """protect_reads as set, else on whenever the service answers beyond this machine."""
    if config.protect_reads is not None:
        return config.protect_reads
    return bool(config.token) and not is_loopback(config.host)


def check_listen(config: Config) -> None:
    """The service answers only this machine unless an admin token protects it."""
    if not config.token and not is_loopback(config.host):
        raise ConfigError(
            f"refusing to listen on {config.host} without a token: it is not (or does not resolve only to) a "
            "loopback address; set DIAG_TOKEN (or token in the config) or listen on 127.0.0.1", field="host")
    if config.protect_reads and not config.token:
        raise ConfigError("protect_reads needs an admin token (DIAG_TOKEN) to read with", field="protect_reads")


def check_commands(config: Config) -> None:
    """Remote commands run code as root: never without the admin token to guard them."""
    if config.enable_commands and not config.token:
        raise ConfigError("refusing to enable remote commands without an admin token: set DIAG_TOKEN "
                          "(or token in the config)", field="enable_commands")


def instance_id_from(etc: Path) -> str:
    from diag.identity import instance_id_from as from_machine_id  # shared with the light agent

    return from_machine_id(etc)


ENV = {
    "DIAG_HOST": "host",
    "DIAG_PORT": "port",
    "DIAG_DATA_DIR": "data_dir",
    "DIAG_INTERVAL": "interval",
    "DIAG_STORE_URL": "store_url",
    "DIAG_TOKEN": "token",
    "DIAG_INGEST_TOKEN": "ingest_token",
    "DIAG_COMMANDS": "enable_commands",
    "DIAG_INSTANCE_ID": "instance_id",
}


def load(path: str | Path | None = None, env: dict[str, str] | None = None, **flags: Any) -> Config:
    """Build the config from defaults, the file at `path`, the environment and flags.

    Flags whose value is None were not given and change nothing.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        text, data = _read_file(Path(path))
    for var, key in ENV.items():
        if env.get(var, "") != "":
            data[key] = env[var]
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        cfg = Config.model_validate(data)
        problem = _unknown_threshold(cfg.checks)
        if problem is None:
            return cfg
        loc, msg = problem
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"] if p != "[key]"]  # a bad dict key: the key's own path
        msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    line = _line_of(text, loc, str(path)) if path is not None else None
    raise ConfigError(msg, str(path) if line else None, line, ".".join(loc))


def _unknown_threshold(overrides: dict[str, dict[str, float]]) -> tuple[list[str], str] | None:
    """The first override naming a check or threshold the catalogue does not have."""
    from checks import catalogue

    for cid, values in overrides.items():
        if cid not in catalogue.BY_ID:
            return ["checks", cid], f"unknown check {cid!r}"
        known = catalogue.BY_ID[cid].thresholds
        for key in values:
            if key not in known:
                return ["checks", cid, key], f"{cid} has no threshold {key!r} (it has {', '.join(known) or 'none'})"
    return None


def _read_file(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", str(path)) from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except tomllib.TOMLDecodeError as e:
        message, line, column = _toml_error(e, text)
        raise ConfigError(message if column is None else f"{message} (column {column})", str(path), line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(str(getattr(e, "problem", e)), str(path), mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", str(path), 1)
    return text, data


_TOML_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)


def _toml_error(e: tomllib.TOMLDecodeError, source: str) -> tuple[str, int | None, int | None]:
    """Message, line and column of a TOML syntax error in `source`.

    tomllib has `lineno`/`colno` only from Python 3.14; before, the position exists only
    in the text, as "Invalid value (at line 2, column 8)" or "(at end of document)".
    """
    line, column = getattr(e, "lineno", None), getattr(e, "colno", None)
    text = str(e)
    m = _TOML_AT.match(text)
    if m:
        return m.group(1), line or int(m.group(2)), column or int(m.group(3))
    message = text.split(" (at ")[0]
    if line is None and text.endswith("(at end of document)"):
        line = max(1, len(source.splitlines()))  # an unclosed bracket or string: its last line
    return message, line, column
