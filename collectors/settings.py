"""The part of the service's config that collectors need, as a plain value.

diag/settings/model.py builds this from the settings; collectors never import the config
loader (data flows one way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from collectors.kernel_patterns import UserRule


@dataclass(frozen=True, slots=True)
class BandwidthCap:
    """A purchased bandwidth for one scope, in bit/s; None means no cap that way."""

    inbound: float | None = None
    outbound: float | None = None


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    # Where collectors keep what must survive a restart (kernel-log position, last boot id).
    # None keeps it in memory only (`diag collect --once`).
    state_dir: Path | None = None
    # Scope ("public"/"private") -> cap. Without one the link speed is used.
    bandwidth_caps: dict[str, BandwidthCap] = field(default_factory=dict)
    # Interface -> scope, overriding the address-based guess.
    interface_scopes: dict[str, str] = field(default_factory=dict)
    top_processes: int = 5
    # Application groups kept per cycle: the top N by CPU and the top N by memory, the
    # rest summed into "other" (collectors/apps.py), so series stay bounded on any host.
    top_apps: int = 10
    # Operators' groups (config `app_groups`): group -> process names or globs, in order.
    app_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Containers and cgroups kept per cycle (collectors/cgroups.py): the top N by CPU and by
    # memory, plus every one using at least this share of its memory limit (at most 50 more).
    top_containers: int = 5
    containers_over_percent: float = 80.0
    # Count kernel-log lines written from user space as findings (fault-injection tests).
    kmsg_user_records: bool = False
    # Also put every raw counter a collector parses (per-CPU jiffies, /proc/net/dev,
    # diskstats, PSI totals, conntrack, file-nr) into `Batch.counters`, for `diag collect
    # --json`. Off in the service and agent: nothing there reads them, and the ~100 dict
    # entries a cycle cost more than the 0.1 ms budget allows (bench/collect.py).
    raw_counters: bool = False
    # Operators' own rules (config `log_patterns`): kernel-log ones after the catalogue,
    # file and journal ones in collectors/log_files.py.
    log_rules: tuple[UserRule, ...] = ()
    # node_exporter's textfile convention (collectors/textfile.py): the directory of *.prom
    # files to read, None for none; and the series kept from one file and from all of them.
    textfile_dir: Path | None = None
    textfile_max_series_per_file: int = 1000
    textfile_max_series: int = 10000
