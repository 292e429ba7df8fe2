"""NVIDIA GPUs through NVML (the `pynvml` module of the nvidia-ml-py package): per GPU its
utilisation, memory used and total, temperature (and the GPU's own slowdown limit), power
draw and limit, and ECC errors corrected and uncorrected.

No NVML here (the package, the driver's libnvidia-ml.so.1, or a loaded driver missing) or
no GPU: no series, nothing counted as an error, and NVML is asked again only every
RETRY_S, so a machine without a GPU pays nothing per cycle. Every NVML call runs on a
DeadlineWorker: a GPU that fell off the bus can leave the driver hanging in an ioctl, and
that must cost this collector's readings, not the cycle.

NVML is the running machine's: a fixture tree (Roots.under) describes another one, so
there the default lookup finds no NVML; tests hand the collector a fake module instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from collectors.base import DeadlineWorker, Parts, Rates, Stalled
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

# nvmlInit loads the library and opens the driver; the readings of 8 GPUs are ~7 calls
# each, a few ms in all. Both well within a collector's budget (40 % of the interval).
DEADLINE_S = 2.0
# After NVML said "not here" (no library, no driver, no GPU), or init failed: a driver
# installed or loaded later is seen within this.
RETRY_S = 600.0

# The readings of one GPU, each one NVML call; a GPU that answers NOT_SUPPORTED for one
# (ECC on a GeForce, power on some boards) is not asked for it again.
FIELDS = ("utilization", "memory", "temperature", "power", "power_limit", "ecc_corrected", "ecc_uncorrected")


def load_nvml() -> Any | None:
    """The pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    return pynvml


@dataclass(slots=True)
class Gpu:
    index: int
    handle: Any
    labels: dict[str, str]  # gpu, name, uuid, pci
    slowdown: float | None = None  # °C at which the GPU slows its clocks, when NVML knows it
    unsupported: set[str] = field(default_factory=set)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def pci_address(info: Any) -> str:
    """domain:bus:device as the driver's Xid lines print it (`%04x:%02x:%02x`), so an
    Xid event names the GPU whose series carry the same `pci` label."""
    return f"{int(info.domain) & 0xFFFF:04x}:{int(info.bus):02x}:{int(info.device):02x}"


def _code(nvml: Any, name: str) -> int | None:
    return getattr(nvml, name, None)


def _is(nvml: Any, e: BaseException, *names: str) -> bool:
    value = getattr(e, "value", None)
    return value is not None and any(value == _code(nvml, n) for n in names)


def discover(nvml: Any, missing: dict[int, BaseException]) -> list[Gpu]:
    """On the worker: init NVML and describe every GPU; a GPU NVML cannot open (lost, no
    permission) goes into `missing` and the others are kept. Raises nvml.NVMLError from init."""
    nvml.nvmlInit()
    n = nvml.nvmlDeviceGetCount()
    gpus = []
    for i in range(n):
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(i)
        except nvml.NVMLError as e:
            missing[i] = e
            continue
        labels = {"gpu": str(i), "name": "", "uuid": "", "pci": ""}
        for key, read in (("name", lambda: _text(nvml.nvmlDeviceGetName(h))),
                          ("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(h))),
                          ("pci", lambda: pci_address(nvml.nvmlDeviceGetPciInfo(h)))):
            try:
                labels[key] = read()
            except nvml.NVMLError:
                pass  # a label left empty rather than a GPU left out
        g = Gpu(i, h, labels)
        try:
            g.slowdown = float(nvml.nvmlDeviceGetTemperatureThreshold(h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))
        except nvml.NVMLError:
            g.slowdown = None
        gpus.append(g)
    if not gpus and not missing:
        nvml.nvmlShutdown()
    return gpus


def _readers(nvml: Any) -> dict[str, Callable[[Any], Any]]:
    corrected, uncorrected = nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    # Volatile: since the driver loaded (as EDAC counts since boot); a reload starts the
    # counter again, which Rates takes as a new baseline rather than a negative rise.
    volatile = nvml.NVML_VOLATILE_ECC
    return {
        "utilization": lambda h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu),
        "memory": lambda h: (lambda m: (float(m.used), float(m.total)))(nvml.nvmlDeviceGetMemoryInfo(h)),
        "temperature": lambda h: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
        "power": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,  # mW
        "power_limit": lambda h: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "ecc_corrected": lambda h: float(nvml.nvmlDeviceGetTotalEccErrors(h, corrected, volatile)),
        "ecc_uncorrected": lambda h: float(nvml.nvmlDeviceGetTotalEccErrors(h, uncorrected, volatile)),
    }


def read_all(nvml: Any, gpus: list[Gpu], done: list[dict[str, Any]]) -> None:
    """On the worker: each GPU's readings (a value, or the error its call raised) appended
    to `done` as soon as read, so the GPUs read before one that hangs still count."""
    readers = _readers(nvml)
    for g in gpus:
        out: dict[str, Any] = {}
        for name in FIELDS:
            if name in g.unsupported:
                continue
            try:
                out[name] = readers[name](g.handle)
            except nvml.NVMLError as e:
                out[name] = e
        done.append(out)


class GpuCollector:
    name = "gpu"
    sources = ("NVML through nvidia-ml-py (each call with a deadline), when a driver and a GPU are present",)

    def __init__(self, roots: Roots, settings: CollectorSettings, nvml: Any | None = None) -> None:
        self.roots = roots
        self.settings = settings
        self._nvml = nvml
        self.parts = Parts(log)
        self.rates = Rates()
        self.calls = DeadlineWorker("nvml", DEADLINE_S, log)
        self.gpus: list[Gpu] | None = None  # None: NVML not (yet) initialised
        self.absent: str | None = None  # why there is nothing to read, once NVML said so
        self._retry_at: float | None = None
        self._started = False
        self._stuck_part = "nvml"  # the GPU whose reading missed its deadline
        self._reopen_at: float | None = None

    def _module(self) -> Any | None:
        if self._nvml is not None:
            return self._nvml
        return load_nvml() if self.roots.is_live else None

    def _not_here(self, why: str, now: float) -> None:
        if why != self.absent:
            log.info("no GPU metrics: %s (asked again every %.0f s)", why, RETRY_S)
        self.absent = why
        self._retry_at = now + RETRY_S
        self.calls.close()  # no thread waits idle for 10 minutes; the next try starts one

    def _start(self, batch: Batch, now: float) -> None:
        nvml = self._module()
        if nvml is None:
            self._not_here("the nvidia-ml-py package (pynvml) is not installed" if self.roots.is_live
                           else "a fixture tree: NVML would read this machine's GPUs", now)
            return
        missing: dict[int, BaseException] = {}
        try:
            gpus = self.calls.call("init", discover, nvml, missing)
        except Stalled as e:
            self.parts.failed(batch, "nvml_init", "nvmlInit", e)
            return  # asked again next cycle; the worker refuses at once while init is stuck
        except Exception as e:  # noqa: BLE001 - NVMLError, or a ctypes error of a broken library
            if _is(nvml, e, "NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED"):
                self._not_here(f"no NVIDIA driver: {e}", now)
            else:
                self.parts.failed(batch, "nvml_init", "nvmlInit", e)
                self._retry_at = now + RETRY_S
            return
        for i, e in sorted(missing.items()):
            self.parts.failed(batch, f"gpu{i}", f"GPU {i}", e)
        if not gpus and not missing:
            self._not_here("NVML reports no GPU", now)
            return
        self.gpus, self.absent, self._retry_at = gpus, None, None
        self._started = True
        # A GPU NVML could not open (lost after an Xid 79, until a reset) is looked for
        # again with a new init, not every cycle.
        self._reopen_at = now + RETRY_S if missing else None
        log.info("GPU metrics from NVML: %s", ", ".join(f"{g.index} {g.labels['name']}" for g in gpus))

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        if self._reopen_at is not None and now >= self._reopen_at and not self.calls.stuck():
            self._shutdown()
        if self.gpus is None:
            if self._retry_at is not None and now < self._retry_at:
                return batch
            self._start(batch, now)
            if self.gpus is None:
                return batch
        nvml = self._module()
        if "read" in self.calls.stuck():
            # One worker reads every GPU, and a driver stuck on one GPU may hold the others
            # too: nothing is asked until the stuck call returns, and the stuck GPU is named.
            self.parts.failed(batch, self._stuck_part, "NVML", Stalled(f"{self._stuck_part}: still blocked"))
            return batch
        done: list[dict[str, Any]] = []
        try:
            self.calls.call("read", read_all, nvml, self.gpus, done)
        except Stalled as e:
            n = len(done)
            self._stuck_part = f"gpu{self.gpus[n].index}" if n < len(self.gpus) else "nvml"
            self.parts.failed(batch, self._stuck_part, "NVML", e)
        for g, readings in zip(self.gpus, list(done)):
            self._emit(batch, nvml, g, readings, now)
        return batch

    def _emit(self, batch: Batch, nvml: Any, g: Gpu, r: dict[str, Any], now: float) -> None:
        lab = g.labels
        for name, v in list(r.items()):
            if isinstance(v, BaseException):
                del r[name]
                if _is(nvml, v, "NVML_ERROR_NOT_SUPPORTED"):
                    g.unsupported.add(name)  # this board has no such reading: not an error
                else:  # GPU_IS_LOST after an Xid 79, NO_PERMISSION...: counted, named in the log
                    self.parts.failed(batch, f"gpu{g.index}/{name}", f"GPU {g.index} ({lab['pci']})", v)
        if "utilization" in r:
            batch.add("gpu_utilization", r["utilization"], **lab)
        if "memory" in r:
            used, total = r["memory"]
            batch.add("gpu_memory_used", used, **lab)
            batch.add("gpu_memory_total", total, **lab)
            if total > 0:
                batch.add("gpu_memory_usage", used / total * 100.0, **lab)
        if "temperature" in r:
            batch.add("gpu_temperature", r["temperature"], **lab)
            if g.slowdown is not None:
                batch.add("gpu_temperature_slowdown", g.slowdown, **lab)
        if "power" in r:
            batch.add("gpu_power", r["power"], **lab)
        if "power_limit" in r:
            batch.add("gpu_power_limit", r["power_limit"], **lab)
        for name, metric in (("ecc_corrected", "gpu_ecc_corrected_errors"),
                             ("ecc_uncorrected", "gpu_ecc_uncorrected_errors")):
            if name in r:
                batch.add_total(f"{metric}_total", r[name], **lab)
                # keyed by the board, not the index: a new init may number the GPUs anew
                batch.add(metric, self.rates.delta((lab["uuid"] or g.index, name), r[name], now), **lab)

    def _shutdown(self) -> None:
        nvml = self._module() if self._started else None
        if nvml is not None:
            try:
                self.calls.call("shutdown", nvml.nvmlShutdown)
            except Exception:  # noqa: BLE001 - NVML is let go either way; init starts it anew
                pass
        self._started = False
        self.gpus = None
        self._retry_at = self._reopen_at = None

    def close(self) -> None:
        self._shutdown()
        self.calls.close()
