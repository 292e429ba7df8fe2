"""The full set of collectors, in the order a cycle runs them."""

from __future__ import annotations

from collectors.base import Collector
from collectors.cgroups import CgroupsCollector
from collectors.connections import ConnectionsCollector
from collectors.cpu import CpuCollector
from collectors.disk import DiskCollector
from collectors.filesystem import FilesystemCollector
from collectors.gpu import GpuCollector
from collectors.hardware import HardwareCollector
from collectors.kernel_log import KernelLogCollector
from collectors.log_files import LogFilesCollector
from collectors.memory import MemoryCollector
from collectors.netcounters import NetCountersCollector
from collectors.network import NetworkCollector
from collectors.processes import ProcessesCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from collectors.state import StateCollector
from collectors.systemd import SystemdCollector
from collectors.textfile import TextfileCollector

ALL = (
    CpuCollector,
    MemoryCollector,
    NetworkCollector,
    ConnectionsCollector,
    DiskCollector,
    FilesystemCollector,
    HardwareCollector,
    GpuCollector,
    NetCountersCollector,
    KernelLogCollector,
    LogFilesCollector,
    StateCollector,
    ProcessesCollector,
    CgroupsCollector,
    SystemdCollector,
    TextfileCollector,
)


def build(roots: Roots, settings: CollectorSettings) -> list[Collector]:
    return [cls(roots, settings) for cls in ALL]
