"""What each built-in check reads: metrics of the catalogue, event types of the event log,
and parts of the facts snapshot (`facts:<part>`). For the README's reference table, so a
user can trace a finding back to the kernel file it came from; tests/checks/test_reads.py
evaluates every check and fails on a read not listed here.
"""

from __future__ import annotations

READS: dict[str, tuple[str, ...]] = {
    "storage.io_hang": ("disk_inflight", "disk_read_iops", "disk_write_iops", "fs_stuck", "event:Kernel.HungTask"),
    "storage.disk_usage": ("fs_usage",),
    "storage.inode_usage": ("fs_inode_usage",),
    "storage.readonly": ("fs_readonly", "fs_forced_readonly", "event:Disk.ReadOnly", "event:Disk.IOError"),
    "storage.io_util": ("disk_util",),
    "storage.latency": ("disk_await_read", "disk_await_write", "disk_read_iops", "disk_write_iops"),
    "storage.io_errors": ("kernel_signals", "event:Disk.IOError"),
    "performance.cpu": ("cpu_usage",),
    "performance.cpu_steal": ("cpu_steal",),
    "performance.memory": ("mem_usage",),
    "performance.oom": ("oom_kills", "kernel_signals", "event:Kernel.OOMKill"),
    "performance.container_memory": ("containers", "container_memory_usage", "container_memory_used", "container_memory_limit",
                                     "container_oom_kills", "event:Kernel.OOMKill"),
    "state.kernel_fault": ("kernel_signals", "event:Kernel.HungTask", "event:Kernel.SoftLockup", "event:Kernel.HardLockup",
                           "event:Kernel.Panic"),
    "state.reboot": ("uptime", "event:Instance.Reboot", "event:InstanceFailure.Reboot"),
    "state.stopped": ("cpu_usage", "uptime", "collector_stalled"),
    "state.failed_units": ("systemd_units_failed", "systemd_unit_failed", "systemd_unit_restarts", "facts:systemd"),
    "network.public_ip": ("net_in", "facts:interfaces"),
    "network.ddos_blackhole": (),
    "network.public_ip_arrears": (),
    "network.bandwidth": ("net_in", "net_out", "bandwidth_usage_in", "bandwidth_usage_out"),
    "network.kernel_drops": ("udp_rcvbuf_errors", "udp_sndbuf_errors", "tcp_listen_overflows", "tcp_listen_drops",
                             "softnet_dropped"),
    "network.connection_limit": ("conntrack_usage", "file_handles_usage", "event:Network.ConntrackFull"),
    "network.nic_errors": ("net_in_errors", "net_out_errors", "net_in_drops", "net_out_drops"),
    "access.sshd": ("facts:sshd",),
    "access.ssh_files": ("facts:sshd",),
    "access.root_login": ("facts:sshd",),
    "access.nic_config": ("facts:interfaces", "facts:dhcp_clients"),
    "access.default_route": ("facts:routes",),
    "access.firewall": ("facts:firewall", "facts:sshd"),
    "access.port_listening": ("facts:listening", "facts:sshd"),
    "access.cpu_load_now": ("cpu_usage",),
    "access.bandwidth_now": ("bandwidth_usage_in", "bandwidth_usage_out"),
    "hardware.raid": ("md_degraded", "md_disks", "md_disks_active", "md_disks_failed", "md_sync_progress"),
    "hardware.memory_errors": ("edac_correctable_errors", "edac_uncorrectable_errors"),
    "hardware.throttling": ("cpu_core_throttles", "cpu_package_throttles"),
    "hardware.temperature": ("hw_temperature", "hw_temperature_crit", "hw_temperature_max"),
}
