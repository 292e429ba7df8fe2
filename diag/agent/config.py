"""The agent's settings: a small YAML/TOML file, the environment, then flags (last wins).

Not diag.config: that one is pydantic and the server's whole config; the agent stays
light and needs a dozen keys. What both take, `log_patterns`, is checked by the same
functions (collectors/kernel_patterns.py), so an agent refuses what the server refuses.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from collectors.apps import AppGroupError, parse_app_groups
from collectors.kernel_patterns import RuleError, UserRule, parse_rules
from collectors.roots import Roots
from collectors.settings import BandwidthCap, CollectorSettings
from diag.settings.locator import line_of
from diag.identity import instance_id_from
from diag.units import parse_bitrate, parse_duration


class AgentConfigError(Exception):
    pass


@dataclass
class AgentConfig:
    server: str = ""
    token: str | None = None
    activation_id: str | None = None
    activation_code: str | None = None
    instance_id: str | None = None
    hostname: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    interval: float = 10.0
    facts_every: float = 300.0
    data_dir: Path = Path("./agent-data")
    listen: str | None = None
    buffer_batches: int = 8640  # a day at 10 s
    max_backoff: float = 300.0
    top_processes: int = 5
    top_apps: int = 10
    # Containers given series, as the server's settings of the same names.
    top_containers: int = 5
    containers_over_percent: float = 80.0
    # Application groups, as the server's `app_groups`, checked by the same functions.
    app_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    service_ports: list[int] = field(default_factory=list)
    kmsg_user_records: bool = False
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")
    etc: Path = Path("/etc")
    pstore: Path = Path("/sys/fs/pstore")
    root: Path = Path("/")
    # Where the boot id is read for remote commands' reboot schedules (None: <proc>/sys/kernel/
    # random/boot_id). A file the operator controls lets a container or a test agent report
    # a boot of its own.
    boot_id_file: Path | None = None
    bandwidth_caps: dict[str, dict[str, Any]] = field(default_factory=dict)
    interface_scopes: dict[str, str] = field(default_factory=dict)
    # Operators' own log rules, as the server's `log_patterns` (README "Your own log
    # patterns"): their matches reach the server as Custom.<name> events.
    log_patterns: tuple[UserRule, ...] = ()
    # The server's textfile settings (README "Your own metrics from files"): the series reach
    # the server in the batches, as the agent's other readings do.
    textfile_dir: Path | None = None
    textfile_max_series_per_file: int = 1000
    textfile_max_series: int = 10000

    @property
    def roots(self) -> Roots:
        return Roots(proc=self.proc, sys=self.sys, kmsg=self.kmsg, etc=self.etc, pstore=self.pstore, root=self.root)

    def collector_settings(self) -> CollectorSettings:
        # The kernel-log position lives in the data dir, so it survives restarts.
        caps = {s: BandwidthCap(_rate(c.get("inbound")), _rate(c.get("outbound"))) for s, c in self.bandwidth_caps.items()}
        return CollectorSettings(state_dir=self.data_dir / "state", bandwidth_caps=caps,
                                 interface_scopes=dict(self.interface_scopes), top_processes=self.top_processes,
                                 top_apps=self.top_apps, app_groups=dict(self.app_groups),
                                 top_containers=self.top_containers,
                                 containers_over_percent=self.containers_over_percent,
                                 kmsg_user_records=self.kmsg_user_records, log_rules=self.log_patterns,
                                 textfile_dir=self.textfile_dir,
                                 textfile_max_series_per_file=self.textfile_max_series_per_file,
                                 textfile_max_series=self.textfile_max_series)

    def resolved_instance_id(self) -> str:
        return self.instance_id or instance_id_from(self.etc)


def _rate(v: Any) -> float | None:
    return None if v is None else parse_bitrate(v)


ENV = {"DIAG_SERVER": "server", "DIAG_TOKEN": "token", "DIAG_INSTANCE_ID": "instance_id",
       "DIAG_AGENT_DATA_DIR": "data_dir", "DIAG_INTERVAL": "interval"}
_TYPES = {f.name: f.type for f in fields(AgentConfig)}


def load(path: str | None, env: dict[str, str] | None = None, **flags: Any) -> AgentConfig:
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}  # where each setting of the file is, for errors
    text = ""
    if path:
        p = Path(path)
        try:
            text = p.read_text()
            data = tomllib.loads(text) if p.suffix == ".toml" else (yaml.safe_load(text) or {})
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise AgentConfigError(f"{path}: {e}") from None
        if not isinstance(data, dict):
            raise AgentConfigError(f"{path}: the top level must be a mapping of settings")
        lines = _toml_lines(text) if p.suffix == ".toml" else _yaml_lines(text)
        data = {**data.pop("paths", {}), **data}

    def where(key: str) -> str:
        if key in flags and flags[key] is not None or not path:
            return ""
        line = lines.get(key) or lines.get(f"paths.{key}")
        return f"{path}:{line}: " if line else f"{path}: "

    for var, key in ENV.items():
        if env.get(var):
            data.setdefault(key, env[var])
    data.update({k: v for k, v in flags.items() if v is not None})
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise AgentConfigError(f"{where(unknown[0])}unknown setting {unknown[0]!r}")
    cfg = AgentConfig()
    for key, value in data.items():
        try:
            setattr(cfg, key, _convert(key, value))
        except (RuleError, AppGroupError) as e:  # the line of the entry's own field, as the server names it
            loc = [key, *map(str, e.loc)]
            line = line_of(text, loc, str(path)) if path else None
            raise AgentConfigError(f"{path}:{line}: " * bool(line) + f"{'.'.join(loc)}: {e.message}") from None
        except (TypeError, ValueError) as e:
            raise AgentConfigError(f"{where(key)}{key}: {e}") from None
    if not cfg.server:
        raise AgentConfigError("server: the server's URL is required (--server http://host:8080)")
    if not isinstance(cfg.labels, dict) or not all(isinstance(v, str) for v in cfg.labels.values()):
        raise AgentConfigError(f"{where('labels')}labels: must be a mapping of strings")
    try:  # read here, not at the first collection, so a bad cap stops the agent with its line
        cfg.collector_settings()
    except (AttributeError, TypeError, ValueError) as e:
        raise AgentConfigError(f"{where('bandwidth_caps')}bandwidth_caps: {e}") from None
    return cfg


def _yaml_lines(text: str) -> dict[str, int]:
    """Line of each top-level key (and of each key under paths:), 1-based."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[str(k.value)] = k.start_mark.line + 1
            if k.value == "paths" and isinstance(v, yaml.MappingNode):
                for kk, _ in v.value:
                    out[f"paths.{kk.value}"] = kk.start_mark.line + 1
    return out


def _toml_lines(text: str) -> dict[str, int]:
    """Line of each top-level key and table (and of each key under [paths]), 1-based."""
    out: dict[str, int] = {}
    table = None
    for n, line in enumerate(text.splitlines(), 1):
        head = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if head:
            table = head.group(1)
            out.setdefault(table, n)
            continue
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line)
        if key and table in (None, "paths"):
            out.setdefault(key.group(1) if table is None else f"paths.{key.group(1)}", n)
    return out


def _convert(key: str, value: Any) -> Any:
    if key == "log_patterns":
        return parse_rules(value)
    if key == "app_groups":
        return parse_app_groups(value)
    if key in ("interval", "facts_every", "max_backoff"):
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
        if not seconds > 0:
            raise ValueError("must be positive")
        return seconds
    if key in ("proc", "sys", "kmsg", "etc", "pstore", "root", "data_dir", "textfile_dir", "boot_id_file"):
        return Path(value)
    if key in ("buffer_batches", "top_processes", "top_apps", "top_containers", "textfile_max_series_per_file",
               "textfile_max_series"):
        n = int(value)
        if n < 1:
            raise ValueError("must be at least 1")
        if key in ("top_apps", "top_containers") and n > 50:
            raise ValueError("must be at most 50")
        return n
    if key == "containers_over_percent":
        p = float(value)
        if not 0 < p <= 100:
            raise ValueError("must be more than 0 and at most 100")
        return p
    return value
