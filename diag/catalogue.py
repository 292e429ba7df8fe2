"""The metric catalogue: every metric's canonical name, unit, kind, labels and meaning.

The single source of truth: the store, `/metrics`, the API's metric list, chart axes,
alert-rule validation and the docs all read it. Adding a metric is one entry here plus
the collector line that fills it.

Kinds:
- `gauge`: a level read as it is (percent, bytes, count);
- `rate`: per second, computed from a kernel counter and its previous reading;
- `delta`: how much a kernel counter rose during the last collection interval;
- `counter`: the raw monotonic kernel counter (`*_total`), exposed in `/metrics` so a
  Prometheus user can `rate()` it; stored only where its entry says so (the interface
  byte counters).

Every entry also holds how `/metrics` names it (`exposition_name`, by the rule of
`exposition` below) and the factor from its catalogue unit to that name's base unit
(`scale`): the dashboard, the seeds, the JSON API and policies use the display name and
unit; Prometheus users see `diag_cpu_usage_ratio` (0-1) for `cpu_usage` (percent). A
`delta` has no name of its own there: its `counter` is exposed instead, and PromQL's
`increase()` gives the per-interval count (a repeated scrape then counts nothing twice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    kind: str
    labels: tuple[str, ...]
    description: str
    area: str
    # The name in /metrics ("" for a delta, which is exposed as its counter) and the factor
    # from `unit` to that name's base unit: exposed value = stored value * scale.
    exposition_name: str = ""
    scale: float = 1.0
    counter: str = ""  # a delta's counter (its catalogue name), whose rise it is

    @property
    def base_unit(self) -> str:
        return BASE_UNITS[self.unit][0]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "kind": self.kind,
            "labels": list(self.labels),
            "description": self.description,
            "area": self.area,
            "exposition_name": self.exposition_name or BY_NAME[self.counter].exposition_name,
        }


def _m(area: str, name: str, unit: str, kind: str, labels: tuple[str, ...], description: str) -> Metric:
    return Metric(name, unit, kind, labels, description, area)


_NET = ("interface", "scope")
_DISK = ("device",)
_FS = ("mountpoint", "device", "fstype")
_CONT = ("container", "runtime", "cgroup")
_GPU = ("gpu", "name", "uuid", "pci")  # index, model, NVML UUID, PCI address as the driver's Xid lines print it

METRICS: tuple[Metric, ...] = (
    # CPU
    _m("cpu", "cpu_usage", "percent", "gauge", (), "Share of CPU time not idle (all cores), over the last interval."),
    _m("cpu", "cpu_user", "percent", "gauge", (), "Share of CPU time in user mode (user + nice)."),
    _m("cpu", "cpu_system", "percent", "gauge", (), "Share of CPU time in kernel mode (system + irq + softirq)."),
    _m("cpu", "cpu_iowait", "percent", "gauge", (), "Share of CPU time idle while waiting for I/O."),
    _m("cpu", "cpu_steal", "percent", "gauge", (), "Share of CPU time taken by the hypervisor for other guests."),
    _m("cpu", "cpu_core_usage", "percent", "gauge", ("cpu",), "CPU usage of one core."),
    _m("cpu", "load_1", "", "gauge", (), "Load average over 1 minute."),
    _m("cpu", "load_5", "", "gauge", (), "Load average over 5 minutes."),
    _m("cpu", "load_15", "", "gauge", (), "Load average over 15 minutes."),
    _m("cpu", "psi_cpu_some", "percent", "gauge", (), "Share of time some task waited for a CPU (PSI, over the interval)."),
    # memory
    _m("memory", "mem_usage", "percent", "gauge", (), "Memory in use: (total - available) / total."),
    _m("memory", "mem_used", "bytes", "gauge", (), "Memory in use: total - available."),
    _m("memory", "mem_available", "bytes", "gauge", (), "Memory available for new work without swapping (MemAvailable)."),
    _m("memory", "mem_total", "bytes", "gauge", (), "Total usable memory (MemTotal)."),
    _m("memory", "swap_usage", "percent", "gauge", (), "Swap in use; 0 when there is no swap."),
    _m("memory", "psi_memory_some", "percent", "gauge", (), "Share of time some task stalled on memory (PSI)."),
    _m("memory", "psi_memory_full", "percent", "gauge", (), "Share of time all tasks stalled on memory (PSI)."),
    _m("memory", "oom_kills", "count", "delta", (), "Processes killed by the OOM killer during the interval (vmstat oom_kill)."),
    # bandwidth
    _m("bandwidth", "net_in", "bit/s", "rate", _NET, "Bits received per second on an interface."),
    _m("bandwidth", "net_out", "bit/s", "rate", _NET, "Bits sent per second on an interface."),
    _m("bandwidth", "net_in_packets", "1/s", "rate", _NET, "Packets received per second."),
    _m("bandwidth", "net_out_packets", "1/s", "rate", _NET, "Packets sent per second."),
    _m("bandwidth", "net_in_drops", "1/s", "rate", _NET, "Received packets dropped per second."),
    _m("bandwidth", "net_out_drops", "1/s", "rate", _NET, "Packets dropped on send per second."),
    _m("bandwidth", "net_in_errors", "1/s", "rate", _NET, "Receive errors per second."),
    _m("bandwidth", "net_out_errors", "1/s", "rate", _NET, "Send errors per second."),
    _m("bandwidth", "net_link_speed", "bit/s", "gauge", ("interface",), "Negotiated link speed from /sys/class/net/*/speed."),
    _m("bandwidth", "net_up", "bool", "gauge", ("interface",), "1 when the interface's operational state (/sys/class/net/*/operstate) lets traffic pass: up, or unknown (lo, tun) with a carrier; read every collection, so a link that goes down shows within one interval."),
    _m("bandwidth", "net_carrier", "bool", "gauge", ("interface",), "1 when the interface has a carrier (/sys/class/net/*/carrier); no sample while it is administratively down, when the kernel does not say."),
    _m("bandwidth", "bandwidth_usage_in", "percent", "gauge", ("scope",), "Inbound bandwidth of a scope against its configured cap, or the link speed."),
    _m("bandwidth", "bandwidth_usage_out", "percent", "gauge", ("scope",), "Outbound bandwidth of a scope against its configured cap, or the link speed."),
    # traffic volume (issue 20): bytes per interval, so a `sum` over a period is the bytes of that period
    _m("bandwidth", "net_in_bytes", "bytes", "delta", _NET, "Bytes received on an interface during the interval (the rise of its /proc/net/dev counter): the `sum` over a period is the inbound traffic of that period, e.g. an alert policy on bytes per 5 minutes."),
    _m("bandwidth", "net_out_bytes", "bytes", "delta", _NET, "Bytes sent on an interface during the interval: the `sum` over a period is the outbound traffic of that period."),
    # connections
    _m("connections", "tcp_connections", "count", "gauge", ("state",), "TCP sockets by state (IPv4 and IPv6); on a live system the states but TIME_WAIT are counted every third collection (the count walks the kernel's whole connection hash) and repeated between."),
    _m("connections", "conntrack_usage", "percent", "gauge", (), "Connection-tracking table entries against nf_conntrack_max."),
    _m("connections", "file_handles_usage", "percent", "gauge", (), "Allocated file handles against fs.file-max."),
    # disk I/O
    _m("disk", "disk_read_iops", "1/s", "rate", _DISK, "Reads completed per second."),
    _m("disk", "disk_write_iops", "1/s", "rate", _DISK, "Writes completed per second."),
    _m("disk", "disk_read_bps", "bytes/s", "rate", _DISK, "Bytes read per second."),
    _m("disk", "disk_write_bps", "bytes/s", "rate", _DISK, "Bytes written per second."),
    _m("disk", "disk_util", "percent", "gauge", _DISK, "Share of the interval the device had I/O in flight."),
    _m("disk", "disk_await_read", "ms", "gauge", _DISK, "Average time a read took over the interval (queue + service)."),
    _m("disk", "disk_await_write", "ms", "gauge", _DISK, "Average time a write took over the interval (queue + service)."),
    _m("disk", "disk_inflight", "count", "gauge", _DISK, "I/O requests in flight now."),
    # filesystems
    _m("filesystem", "fs_usage", "percent", "gauge", _FS, "Space used, as df reports it: used / (used + available to users)."),
    _m("filesystem", "fs_inode_usage", "percent", "gauge", _FS, "Inodes used."),
    _m("filesystem", "fs_readonly", "bool", "gauge", _FS, "1 when the filesystem is mounted read-only."),
    _m("filesystem", "fs_stuck", "s", "gauge", _FS, "How long statvfs on a network, FUSE or other non-local filesystem has waited unanswered (a dead server, a stopped daemon); 0 when it answers. Local filesystems are not asked in a thread and have no series."),
    _m("filesystem", "fs_forced_readonly", "bool", "gauge", _FS, "1 when the filesystem turned itself read-only under a read-write mount, as after errors with errors=remount-ro (superblock options ro, emergency_ro or shutdown): a fault, never a choice."),
    # kernel signals
    _m("kernel", "tcp_listen_overflows", "count", "delta", (), "Times a listening socket's accept queue was full (TcpExt.ListenOverflows), per interval."),
    _m("kernel", "tcp_listen_drops", "count", "delta", (), "Connection requests dropped by listening sockets (TcpExt.ListenDrops), per interval."),
    _m("kernel", "udp_rcvbuf_errors", "count", "delta", (), "UDP and UDP6 datagrams dropped for a full receive buffer, per interval."),
    _m("kernel", "udp_sndbuf_errors", "count", "delta", (), "UDP and UDP6 datagrams dropped for a full send buffer, per interval."),
    _m("kernel", "softnet_dropped", "count", "delta", (), "Packets dropped for a full softirq backlog (/proc/net/softnet_stat), per interval."),
    _m("kernel", "psi_io_some", "percent", "gauge", (), "Share of time some task stalled on I/O (PSI)."),
    _m("kernel", "psi_io_full", "percent", "gauge", (), "Share of time all tasks stalled on I/O (PSI)."),
    _m("kernel", "kernel_signals", "count", "delta", ("kind",), "Kernel-log findings per interval, by kind (hung task, OOM kill, I/O error...)."),
    _m("kernel", "log_condition", "bool", "gauge", ("rule",), "1 while a permanent rule of config log_patterns holds its condition: set by its pattern, ended by its clear line or a reboot."),
    # state
    _m("state", "uptime", "s", "gauge", (), "Seconds since boot."),
    _m("state", "procs_running", "count", "gauge", (), "Runnable tasks (procs_running in /proc/stat)."),
    _m("state", "procs_blocked", "count", "gauge", (), "Tasks blocked on I/O (procs_blocked in /proc/stat)."),
    # applications (collectors/processes.py, groups in collectors/apps.py)
    _m("applications", "app_cpu_usage", "percent", "gauge", ("app",), "CPU time of an application group (processes by executable, or the config's app_groups; kernel threads are `kernel`), as a share of the whole machine like cpu_usage, over the last interval; the top N groups by CPU and by memory (top_apps), the rest summed as `other`."),
    _m("applications", "app_memory_rss", "bytes", "gauge", ("app",), "Resident memory summed over an application group's processes (a page shared by several processes counts in each, as in ps); the same groups as app_cpu_usage."),
    _m("applications", "app_processes", "count", "gauge", ("app",), "Processes in an application group; the same groups as app_cpu_usage."),
    _m("state", "collector_stalled", "bool", "gauge", ("collector",), "1 while a collector's call has not returned within its budget (a hung mount, a stuck process): its readings are missing, and it is not called again until the stuck call returns."),
    # containers and cgroups (collectors/cgroups.py): only the top_containers by CPU and by
    # memory, those at or over containers_over_percent of their limit and those OOM-killed
    # have series; `cgroup` is the path, as the kernel's OOM lines give it (task_memcg)
    _m("containers", "containers", "count", "gauge", (), "Containers, systemd services and scopes and other cgroups found where containers live; no series without a cgroup filesystem."),
    _m("containers", "container_cpu_usage", "percent", "gauge", _CONT, "CPU time of a container over the last interval(s) it was read, in percent of one CPU (200 = two cores busy), as docker stats shows it."),
    _m("containers", "container_memory_used", "bytes", "gauge", _CONT, "Memory a container uses that the kernel cannot simply reclaim: usage minus inactive page cache (the working set, as the kubelet and docker stats count it)."),
    _m("containers", "container_memory_limit", "bytes", "gauge", _CONT, "A container's memory limit (memory.max, memory.limit_in_bytes); no series when it has none."),
    _m("containers", "container_memory_usage", "percent", "gauge", _CONT, "container_memory_used against the container's memory limit: at 100 % the kernel OOM-kills inside it."),
    _m("containers", "container_oom_kills", "count", "delta", _CONT, "Processes the OOM killer killed inside a container during the interval (memory.events or memory.oom_control oom_kill)."),
    _m("containers", "container_psi_memory_some", "percent", "gauge", _CONT, "Share of time some task of a container stalled on memory (its memory.pressure), where the kernel keeps PSI per cgroup."),
    _m("containers", "container_psi_memory_full", "percent", "gauge", _CONT, "Share of time all tasks of a container stalled on memory (its memory.pressure)."),
    _m("containers", "container_io_read_bps", "bytes/s", "rate", _CONT, "Bytes a container read from block devices per second (io.stat rbytes, blkio io_service_bytes Read)."),
    _m("containers", "container_io_write_bps", "bytes/s", "rate", _CONT, "Bytes a container wrote to block devices per second (io.stat wbytes, blkio io_service_bytes Write)."),
    # the textfile convention (collectors/textfile.py); the files' own series are stored under their own names
    _m("textfile", "textfile_scrape_error", "bool", "gauge", ("file",), "1 when a *.prom file of textfile_dir could not be used this collection (syntax error, timestamp, duplicate series, over a cap, unreadable; `.` for the directory itself), 0 when it was read whole; a file in error keeps the series of its last good version."),
    _m("textfile", "textfile_mtime_seconds", "s", "gauge", ("file",), "Modification time (UNIX seconds) of the version of a *.prom file whose series are stored: its last good one."),
    # systemd units (collectors/systemd.py); no series on a machine without systemd
    _m("systemd", "systemd_units_failed", "count", "gauge", (), "systemd units in the failed state (`systemctl --failed`), listed at most every 60 s off the collection thread."),
    _m("systemd", "systemd_unit_failed", "bool", "gauge", ("unit", "result"), "1 while a unit is failed, labelled with systemd's Result (exit-code, signal, core-dump, timeout, start-limit-hit...); 0 for 10 minutes after it leaves the failed state. Only failed units have a series, at most 20."),
    _m("systemd", "systemd_unit_restarts", "count", "delta", ("unit",), "Automatic restarts of a service (its NRestarts rise) during the interval; only units that restarted or waited to restart (auto-restart) in the last hour have a series, at most 20."),
    # sensors and hardware (collectors/hardware.py): hwmon, thermal_throttle, EDAC, /proc/mdstat
    _m("hardware", "hw_temperature", "celsius", "gauge", ("chip", "sensor"), "A temperature from /sys/class/hwmon (temp*_input); chip is the driver's name (coretemp, nvme...), sensor its temp*_label or temp<N>."),
    _m("hardware", "hw_temperature_max", "celsius", "gauge", ("chip", "sensor"), "The sensor's own high limit (temp*_max), where its driver gives one: at or over it the hardware is hotter than it should run."),
    _m("hardware", "hw_temperature_crit", "celsius", "gauge", ("chip", "sensor"), "The sensor's own critical limit (temp*_crit), where its driver gives one: at or over it the hardware throttles or shuts down."),
    _m("hardware", "hw_fan_speed", "rpm", "gauge", ("chip", "sensor"), "A fan's speed from /sys/class/hwmon (fan*_input), revolutions per minute."),
    _m("hardware", "cpu_core_throttles", "count", "delta", (), "Times a CPU core was throttled for heat (thermal_throttle/core_throttle_count, one CPU per physical core), per interval."),
    _m("hardware", "cpu_package_throttles", "count", "delta", (), "Times a CPU package was throttled for heat or power (thermal_throttle/package_throttle_count, one per package), per interval."),
    _m("hardware", "edac_correctable_errors", "count", "delta", ("controller",), "Memory errors corrected by ECC (EDAC mc*/ce_count), per interval: rising counts foretell a failing DIMM."),
    _m("hardware", "edac_uncorrectable_errors", "count", "delta", ("controller",), "Memory errors ECC could not correct (EDAC mc*/ue_count), per interval: data was lost or a process or the kernel was killed."),
    _m("hardware", "md_disks", "count", "gauge", ("array",), "Members a software RAID array needs (the n of [n/m] in /proc/mdstat; raid0 and linear: their members; 0 while inactive)."),
    _m("hardware", "md_disks_active", "count", "gauge", ("array",), "Members of the array in sync (the m of [n/m] in /proc/mdstat)."),
    _m("hardware", "md_disks_failed", "count", "gauge", ("array",), "Members marked failed, (F), in /proc/mdstat."),
    _m("hardware", "md_degraded", "bool", "gauge", ("array",), "1 when an active array runs with fewer members in sync than it needs ([2/1] [U_]): one more failure may lose data."),
    _m("hardware", "md_sync_progress", "percent", "gauge", ("array", "action"), "Progress of the resync, recovery, reshape, check or repair running on the array (0 while pending or delayed); no sample when none runs."),
    # NVIDIA GPUs through NVML (collectors/gpu.py, issue 20); no series without a GPU, its driver or nvidia-ml-py
    _m("gpu", "gpu_utilization", "percent", "gauge", _GPU, "Share of the last sample period (1/6 s to 1 s, by model) in which one or more kernels ran on the GPU (NVML utilization.gpu)."),
    _m("gpu", "gpu_memory_used", "bytes", "gauge", _GPU, "GPU memory allocated (NVML memory info used): the GPU memory use the seeds' GPU instances report."),
    _m("gpu", "gpu_memory_total", "bytes", "gauge", _GPU, "GPU memory installed (NVML memory info total)."),
    _m("gpu", "gpu_memory_usage", "percent", "gauge", _GPU, "gpu_memory_used against gpu_memory_total: at 100 % a new allocation on the GPU fails (CUDA out of memory)."),
    _m("gpu", "gpu_temperature", "celsius", "gauge", _GPU, "GPU core temperature (NVML NVML_TEMPERATURE_GPU)."),
    _m("gpu", "gpu_temperature_slowdown", "celsius", "gauge", _GPU, "The GPU's own slowdown temperature (NVML threshold SLOWDOWN): at or over it the GPU lowers its clocks to cool down; no series when the board does not say."),
    _m("gpu", "gpu_power", "W", "gauge", _GPU, "Power the board draws (NVML power usage)."),
    _m("gpu", "gpu_power_limit", "W", "gauge", _GPU, "The power limit the driver enforces on the board (NVML enforced power limit)."),
    _m("gpu", "gpu_ecc_corrected_errors", "count", "delta", _GPU, "GPU memory errors ECC corrected (NVML volatile count, since the driver loaded), per interval; no series on a board without ECC or with it off."),
    _m("gpu", "gpu_ecc_uncorrected_errors", "count", "delta", _GPU, "GPU memory errors ECC could not correct (double-bit), per interval: the application using that memory got wrong data or was stopped (Xid 48), and the GPU needs a reset to retire the page or remap the row."),
)

# Raw counters exposed in /metrics beside the gauges, named as node_exporter users expect
# (`_total`, base units), so a Prometheus user can rate() them.
COUNTERS: tuple[Metric, ...] = (
    _m("cpu", "cpu_seconds_total", "s", "counter", ("mode",), "CPU time spent in each mode, all cores."),
    _m("memory", "oom_kills_total", "count", "counter", (), "OOM kills since boot (vmstat oom_kill)."),
    _m("bandwidth", "net_receive_bytes_total", "bytes", "counter", ("interface",), "Bytes received on an interface (its /proc/net/dev counter); also stored, so the query API answers it."),
    _m("bandwidth", "net_transmit_bytes_total", "bytes", "counter", ("interface",), "Bytes sent on an interface; also stored, so the query API answers it."),
    _m("bandwidth", "net_receive_packets_total", "count", "counter", ("interface",), "Packets received on an interface."),
    _m("bandwidth", "net_transmit_packets_total", "count", "counter", ("interface",), "Packets sent on an interface."),
    _m("bandwidth", "net_receive_drops_total", "count", "counter", ("interface",), "Received packets dropped."),
    _m("bandwidth", "net_transmit_drops_total", "count", "counter", ("interface",), "Packets dropped on send."),
    _m("bandwidth", "net_receive_errors_total", "count", "counter", ("interface",), "Receive errors."),
    _m("bandwidth", "net_transmit_errors_total", "count", "counter", ("interface",), "Send errors."),
    _m("disk", "disk_reads_completed_total", "count", "counter", _DISK, "Reads completed."),
    _m("disk", "disk_writes_completed_total", "count", "counter", _DISK, "Writes completed."),
    _m("disk", "disk_read_bytes_total", "bytes", "counter", _DISK, "Bytes read."),
    _m("disk", "disk_written_bytes_total", "bytes", "counter", _DISK, "Bytes written."),
    _m("disk", "disk_io_time_seconds_total", "s", "counter", _DISK, "Time the device had I/O in flight."),
    _m("kernel", "tcp_listen_overflows_total", "count", "counter", (), "TcpExt.ListenOverflows."),
    _m("kernel", "tcp_listen_drops_total", "count", "counter", (), "TcpExt.ListenDrops."),
    _m("kernel", "udp_rcvbuf_errors_total", "count", "counter", ("proto",), "Udp/Udp6 RcvbufErrors."),
    _m("kernel", "udp_sndbuf_errors_total", "count", "counter", ("proto",), "Udp/Udp6 SndbufErrors."),
    _m("kernel", "softnet_dropped_total", "count", "counter", (), "Sum of the dropped column of /proc/net/softnet_stat."),
    _m("kernel", "kernel_signals_total", "count", "counter", ("kind",), "Kernel-log findings since the service started reading, by kind."),
    _m("kernel", "kernel_log_lost_total", "count", "counter", (), "Kernel-log records overwritten in the ring buffer before the service read them."),
    _m("kernel", "kernel_log_suppressed_total", "count", "counter", (), "Kernel-log lines the kernel's own rate limits dropped (its N callbacks suppressed notices): a fault's line may be among them."),
    _m("containers", "container_oom_kills_total", "count", "counter", _CONT, "OOM kills inside a container since its cgroup was made, for the containers of container_oom_kills."),
    _m("hardware", "cpu_core_throttles_total", "count", "counter", (), "Sum of thermal_throttle/core_throttle_count over the physical cores."),
    _m("hardware", "cpu_package_throttles_total", "count", "counter", (), "Sum of thermal_throttle/package_throttle_count over the packages."),
    _m("hardware", "edac_correctable_errors_total", "count", "counter", ("controller",), "EDAC mc*/ce_count: memory errors corrected since boot."),
    _m("hardware", "edac_uncorrectable_errors_total", "count", "counter", ("controller",), "EDAC mc*/ue_count: memory errors not corrected since boot."),
    _m("gpu", "gpu_ecc_corrected_errors_total", "count", "counter", _GPU, "NVML volatile corrected ECC error count of a GPU: since the driver loaded."),
    _m("gpu", "gpu_ecc_uncorrected_errors_total", "count", "counter", _GPU, "NVML volatile uncorrected ECC error count of a GPU: since the driver loaded."),
    _m("systemd", "systemd_unit_restarts_total", "count", "counter", ("unit",), "NRestarts of a service as systemd counts it (since it was last started by hand), for the units of systemd_unit_restarts."),
)

# -- exposition: the Prometheus names (https://prometheus.io/docs/practices/naming/) ----------

NAMESPACE = "diag"
# catalogue unit -> (the base unit the exposed name ends with, factor from the catalogue unit).
# One rule: every share is a 0-1 `_ratio` (percent would be the only non-base unit left, and
# node_exporter, cAdvisor and the kubelet give ratios too); times in seconds, sizes and
# traffic in bytes; counts and booleans carry no unit.
BASE_UNITS: dict[str, tuple[str, float]] = {
    "percent": ("ratio", 0.01), "ms": ("seconds", 0.001), "s": ("seconds", 1.0), "bytes": ("bytes", 1.0),
    "bit/s": ("bytes_per_second", 0.125), "bytes/s": ("bytes_per_second", 1.0), "1/s": ("per_second", 1.0),
    "celsius": ("celsius", 1.0), "W": ("watts", 1.0), "rpm": ("rpm", 1.0),
    "count": ("", 1.0), "bool": ("", 1.0), "": ("", 1.0),
}
# Where the display name is not the stem of a good Prometheus name (the unit in a short
# form, `in`/`out` where node_exporter says receive/transmit).
STEMS: dict[str, str] = {
    "net_in": "net_receive", "net_out": "net_transmit",
    "net_in_packets": "net_receive_packets", "net_out_packets": "net_transmit_packets",
    "net_in_drops": "net_receive_drops", "net_out_drops": "net_transmit_drops",
    "net_in_errors": "net_receive_errors", "net_out_errors": "net_transmit_errors",
    "disk_read_iops": "disk_reads", "disk_write_iops": "disk_writes",
    "disk_read_bps": "disk_read", "disk_write_bps": "disk_written",
    "container_io_read_bps": "container_io_read", "container_io_write_bps": "container_io_written",
}
# A delta's counter when it is not the delta's name + `_total`.
DELTA_COUNTERS: dict[str, str] = {"net_in_bytes": "net_receive_bytes_total", "net_out_bytes": "net_transmit_bytes_total"}


def _exposed(m: Metric) -> Metric:
    unit, scale = BASE_UNITS[m.unit]
    if m.kind == "delta":
        return replace(m, counter=DELTA_COUNTERS.get(m.name, m.name + "_total"))
    if m.kind == "counter":  # already `<stem>_<unit>_total`
        return replace(m, exposition_name=f"{NAMESPACE}_{m.name}", scale=scale)
    stem = STEMS.get(m.name, m.name)
    if unit and not stem.endswith("_" + unit):
        stem += "_" + unit
    return replace(m, exposition_name=f"{NAMESPACE}_{stem}", scale=scale)


METRICS = tuple(_exposed(m) for m in METRICS)
COUNTERS = tuple(_exposed(m) for m in COUNTERS)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS + COUNTERS}
# /metrics name -> catalogue entry: what policies, rules export, the PromQL API and the
# fleet's PrometheusStore accept beside the display names.
BY_EXPOSED: dict[str, Metric] = {m.exposition_name: m for m in METRICS + COUNTERS if m.exposition_name}
assert all(m.counter in BY_NAME for m in METRICS if m.kind == "delta"), "a delta without its counter"


def resolve(name: str) -> Metric | None:
    """The catalogue entry `name` is the display or the /metrics name of, or None."""
    return BY_NAME.get(name) or BY_EXPOSED.get(name)


def to_exposed(m: Metric, value: float) -> float:
    """A value in `m.unit` in its /metrics unit; exact for the decimal factors (80 % -> 0.8)."""
    return value if m.scale == 1.0 else float(f"{value * m.scale:.12g}")


def from_exposed(m: Metric, value: float) -> float:
    return value if m.scale == 1.0 else float(f"{value / m.scale:.12g}")


def get(name: str) -> Metric:
    """The catalogue entry for `name`; KeyError names the unknown metric."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}") from None
