"""A fake `pynvml` module for the GPU collector's tests: no GPU is here to read.

Only the calls collectors/gpu.py makes, with pynvml's names, constants and error shape
(`NVMLError(value)` carrying `.value`). Each GPU is a `FakeGpu` whose readings a test sets;
a reading left None answers NOT_SUPPORTED, as NVML does for ECC on a GeForce. The
constants are checked against the real pynvml in test_gpu.py, so the fake cannot drift.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
CONSTANTS = {k: v for k, v in dict(globals()).items() if k.startswith("NVML_")}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found",
                15: "GPU is lost", 4: "Insufficient Permissions"}.get(self.value, f"NVML error {self.value}")


@dataclass
class FakeGpu:
    name: str
    uuid: str
    domain: int
    bus: int
    device: int
    utilization: float | None = 0.0
    memory_used: int = 0
    memory_total: int = 0
    temperature: float | None = 40.0
    slowdown: float | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    lost: bool = False  # after an Xid 79: every call answers GPU_IS_LOST
    hang: threading.Event | None = None  # reading utilization waits on it (a driver stuck in an ioctl)
    calls: dict[str, int] = field(default_factory=dict)


class FakeNvml:
    """Use an instance where the collector takes the pynvml module."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None,
                 init_hang: threading.Event | None = None) -> None:
        for k, v in CONSTANTS.items():
            setattr(self, k, v)
        self.gpus = gpus
        self.init_error = init_error
        self.init_hang = init_hang
        self.inits = 0
        self.shutdowns = 0
        self.initialised = False

    # -- library ------------------------------------------------------------------------------

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.inits += 1
        if self.init_hang is not None:
            self.init_hang.wait()
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._ready()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:  # noqa: N802
        self._ready()
        if self.gpus[i].lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return self.gpus[i]

    def _ready(self) -> None:
        if not self.initialised:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED

    @staticmethod
    def _call(g: FakeGpu, what: str, value):
        g.calls[what] = g.calls.get(what, 0) + 1
        if g.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    # -- per device ---------------------------------------------------------------------------

    def nvmlDeviceGetName(self, g: FakeGpu) -> str:  # noqa: N802
        return self._call(g, "name", g.name)

    def nvmlDeviceGetUUID(self, g: FakeGpu) -> str:  # noqa: N802
        return self._call(g, "uuid", g.uuid)

    def nvmlDeviceGetPciInfo(self, g: FakeGpu) -> SimpleNamespace:  # noqa: N802
        # busId as NVML gives it; the collector builds the Xid form from domain, bus, device
        bus_id = f"{g.domain:08X}:{g.bus:02X}:{g.device:02X}.0"
        return self._call(g, "pci", SimpleNamespace(domain=g.domain, bus=g.bus, device=g.device, busId=bus_id))

    def nvmlDeviceGetTemperatureThreshold(self, g: FakeGpu, which: int) -> float:  # noqa: N802
        assert which == NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        return self._call(g, "slowdown", g.slowdown)

    def nvmlDeviceGetUtilizationRates(self, g: FakeGpu) -> SimpleNamespace:  # noqa: N802
        if g.hang is not None:
            g.hang.wait()
        u = self._call(g, "utilization", g.utilization)
        return SimpleNamespace(gpu=int(u), memory=0)

    def nvmlDeviceGetMemoryInfo(self, g: FakeGpu) -> SimpleNamespace:  # noqa: N802
        used, total = self._call(g, "memory", (g.memory_used, g.memory_total))
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetTemperature(self, g: FakeGpu, sensor: int) -> int:  # noqa: N802
        assert sensor == NVML_TEMPERATURE_GPU
        return self._call(g, "temperature", g.temperature)

    def nvmlDeviceGetPowerUsage(self, g: FakeGpu) -> int:  # noqa: N802
        return self._call(g, "power", g.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, g: FakeGpu) -> int:  # noqa: N802
        return self._call(g, "power_limit", g.power_limit_mw)

    def nvmlDeviceGetTotalEccErrors(self, g: FakeGpu, error_type: int, counter: int) -> int:  # noqa: N802
        assert counter == NVML_VOLATILE_ECC
        if error_type == NVML_MEMORY_ERROR_TYPE_CORRECTED:
            return self._call(g, "ecc_corrected", g.ecc_corrected)
        return self._call(g, "ecc_uncorrected", g.ecc_uncorrected)


def two_gpus() -> list[FakeGpu]:
    """A data-centre board with ECC and limits, and a desktop one without ECC: the PCI
    addresses are those of tests/fixtures/kmsg/handwritten-gpu-xid.kmsg."""
    return [
        FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-5b1c0e42-8d07-4b1a-9c3e-2f6d7a9e1b04", 0, 0x3B, 0,
                utilization=87, memory_used=60 << 30, memory_total=80 << 30, temperature=64, slowdown=92,
                power_mw=312_456, power_limit_mw=400_000, ecc_corrected=5, ecc_uncorrected=0),
        FakeGpu("NVIDIA GeForce RTX 4090", "GPU-0d7a4f3e-61b2-4c9a-8e15-7c3b2a9d4e60", 0, 0x86, 0,
                utilization=3, memory_used=512 << 20, memory_total=24 << 30, temperature=41,
                power_mw=21_000, power_limit_mw=450_000),
    ]
