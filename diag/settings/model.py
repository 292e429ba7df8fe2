"""The settings model: what server and agent both read (`Collection`), and the server's own.

Every interval the service keeps lives here, as a Duration; the agent's own settings are
in diag/settings/agent.py, on the same base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from collectors.kernel_patterns import UserRule
from collectors.roots import Roots
from collectors.settings import BandwidthCap, CollectorSettings
from diag.settings.delivery import AlertingConfig, CommandsConfig
from diag.settings.sections import (AppGroupName, AppPattern, IngestConfig, LogPattern, Network, Paths, Plugin,
                                    PluginName, RuleName, StoreConfig)
from diag.settings.types import Duration, Strict


class Collection(Strict):
    """What a machine's collectors read and how often: the same keys on server and agent."""

    interval: Duration = Field(10, description="collection interval, e.g. 10s")
    # How often the slow facts (packages, units, sshd's config...) are taken again.
    facts_every: Duration = 300
    instance_id: str | None = Field(None, description="this machine's instance id; none: derived from /etc/machine-id")
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
    # Treat lines that user space wrote to /dev/kmsg as kernel findings (for fault drills).
    kmsg_user_records: bool = False
    # Operators' own log rules, by name (the event type is Custom.<name>); README "Your own log patterns".
    log_patterns: dict[RuleName, LogPattern] = {}
    # node_exporter's textfile convention: *.prom files in this directory become series of
    # this instance (collectors/textfile.py; README "Your own metrics from files"). None: off.
    textfile_dir: Path | None = None
    textfile_max_series_per_file: int = Field(1000, ge=1)
    textfile_max_series: int = Field(10000, ge=1)
    data_dir: Path = Field(Path("./data"), description="where the metrics, events and state are kept")
    paths: Paths = Paths()
    network: Network = Network()

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
            # The kernel-log position lives in the data dir, so it survives restarts.
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
        from diag.identity import instance_id_from  # shared with the light agent

        return self.instance_id or instance_id_from(self.paths.etc)


class Config(Collection):
    """`diag serve`'s settings. A field with a description is also a flag of `diag serve`."""

    host: str = Field("127.0.0.1", description="address to listen on; beyond loopback only with a token")
    port: int = Field(8080, ge=0, le=65535, description="port to listen on (0: any free port)")
    token: str | None = None
    ingest_token: str | None = None
    store_url: str | None = Field(None, description="Prometheus-compatible query API to read metrics from "
                                                    "instead of the embedded store")
    # Only the admin token (or a dashboard login) may read the API, /metrics and the pages
    # (agents' own endpoints excepted). Unset: on when listening beyond loopback with a token.
    protect_reads: bool | None = None
    enable_commands: bool = Field(False, description="run remote commands (scripts as root on the instances); "
                                                     "needs an admin token (DIAG_TOKEN)")
    diagnose_every: Duration = 300
    # Per-check threshold overrides: {"storage.disk_usage": {"warning": 85}}; checked against
    # the catalogue at load, so a typo is refused with its field.
    checks: dict[str, dict[str, float]] = {}
    # Nagios-compatible plugins run as checks, by name (check id plugin.<name>); README "Plugin checks".
    plugins: dict[PluginName, Plugin] = {}
    store: StoreConfig = StoreConfig()
    alerting: AlertingConfig = AlertingConfig()
    commands: CommandsConfig = CommandsConfig()
    ingest: IngestConfig = IngestConfig()
