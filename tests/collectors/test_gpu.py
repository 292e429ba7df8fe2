"""GpuCollector with a fake NVML holding two GPUs (none is here), and on this machine."""

from __future__ import annotations

import threading
import time

import pytest

from collectors import gpu as gpu_mod
from collectors.gpu import RETRY_S, GpuCollector
from collectors.roots import Roots
from collectors.runner import CollectionCycle
from collectors.settings import CollectorSettings
from diag import catalogue
from diag.model import Batch
from tests.collectors.fake_nvml import CONSTANTS, FakeGpu, FakeNvml, two_gpus

A100 = {"gpu": "0", "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-5b1c0e42-8d07-4b1a-9c3e-2f6d7a9e1b04",
        "pci": "0000:3b:00"}
RTX = {"gpu": "1", "name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0d7a4f3e-61b2-4c9a-8e15-7c3b2a9d4e60",
       "pci": "0000:86:00"}


def values(b: Batch, metric: str) -> dict[str, float]:
    return {s.labels["gpu"]: s.value for s in b.samples + b.totals if s.metric == metric}


def test_the_fake_speaks_pynvml():
    pynvml = pytest.importorskip("pynvml")
    assert {k: getattr(pynvml, k) for k in CONSTANTS} == CONSTANTS


def test_two_gpus_every_reading():
    nvml = FakeNvml(two_gpus())
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    first = c.collect(1000.0)
    assert first.errors == []
    assert {tuple(sorted(s.labels.items())) for s in first.samples} == {tuple(sorted(A100.items())),
                                                                         tuple(sorted(RTX.items()))}
    assert values(first, "gpu_utilization") == {"0": 87.0, "1": 3.0}
    assert values(first, "gpu_memory_used") == {"0": 60 * 2**30, "1": 512 * 2**20}
    assert values(first, "gpu_memory_total") == {"0": 80 * 2**30, "1": 24 * 2**30}
    assert values(first, "gpu_memory_usage") == {"0": 75.0, "1": pytest.approx(100 * 0.5 / 24)}
    assert values(first, "gpu_temperature") == {"0": 64.0, "1": 41.0}
    assert values(first, "gpu_temperature_slowdown") == {"0": 92.0}  # the RTX does not say
    assert values(first, "gpu_power") == {"0": 312.456, "1": 21.0}
    assert values(first, "gpu_power_limit") == {"0": 400.0, "1": 450.0}
    # ECC: the counters at once, the per-interval rise from the second reading on; none for the RTX
    assert values(first, "gpu_ecc_corrected_errors_total") == {"0": 5.0}
    assert values(first, "gpu_ecc_corrected_errors") == {}
    nvml.gpus[0].ecc_corrected, nvml.gpus[0].ecc_uncorrected = 8, 1
    nvml.gpus[0].memory_used = 79 << 30
    b = c.collect(1010.0)
    assert b.errors == []
    assert values(b, "gpu_ecc_corrected_errors") == {"0": 3.0}
    assert values(b, "gpu_ecc_uncorrected_errors") == {"0": 1.0}
    assert values(b, "gpu_ecc_uncorrected_errors_total") == {"0": 1.0}
    assert values(b, "gpu_memory_usage")["0"] == pytest.approx(100 * 79 / 80)
    # NOT_SUPPORTED is an answer, not an error: asked once, never again
    assert nvml.gpus[1].calls["ecc_corrected"] == 1 and nvml.gpus[1].calls["ecc_uncorrected"] == 1
    assert nvml.gpus[0].calls["ecc_corrected"] == 2
    assert nvml.inits == 1  # init once, not every cycle
    # every series is a catalogue metric with exactly its labels (the ingest refuses others)
    for s in b.samples + b.totals:
        assert set(s.labels) == set(catalogue.get(s.metric).labels), s.metric
    c.close()
    assert nvml.shutdowns == 1


def test_a_lost_gpu_costs_only_its_own_readings():
    nvml = FakeNvml(two_gpus())
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    c.collect(1000.0)
    nvml.gpus[0].lost = True  # Xid 79: the A100 fell off the bus
    b = c.collect(1010.0)
    assert set(values(b, "gpu_utilization")) == {"1"} and set(values(b, "gpu_temperature")) == {"1"}
    assert "gpu0/utilization:NVMLError" in b.errors and "gpu0/temperature:NVMLError" in b.errors
    assert not [e for e in b.errors if e.startswith("gpu1")]
    nvml.gpus[0].lost = False  # after a reset it answers again (same handle)
    assert set(values(c.collect(1020.0), "gpu_utilization")) == {"0", "1"}


def test_a_gpu_lost_before_the_first_reading_is_looked_for_again_later():
    nvml = FakeNvml(two_gpus())
    nvml.gpus[0].lost = True
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    b = c.collect(1000.0)
    assert set(values(b, "gpu_utilization")) == {"1"} and b.errors == ["gpu0:NVMLError"]
    assert values(b, "gpu_utilization") == {"1": 3.0} and [g.labels["pci"] for g in c.gpus] == ["0000:86:00"]
    nvml.gpus[0].lost = False  # reset: it answers again
    assert set(values(c.collect(1010.0), "gpu_utilization")) == {"1"}  # not re-initialised every cycle
    b = c.collect(1000.0 + RETRY_S)
    assert set(values(b, "gpu_utilization")) == {"0", "1"} and nvml.inits == 2 and nvml.shutdowns == 1
    # each GPU keeps its own identity
    assert {s.labels["gpu"]: s.labels["pci"] for s in b.samples if s.metric == "gpu_temperature"} == {
        "0": "0000:3b:00", "1": "0000:86:00"}


@pytest.mark.parametrize("code, why", [(12, "no NVIDIA driver: NVML Shared Library Not Found"),
                                       (9, "no NVIDIA driver: Driver Not Loaded")])
def test_no_driver_no_series_no_error_and_asked_again_only_after_a_while(code, why):
    nvml = FakeNvml(two_gpus(), init_error=code)
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    for k in range(5):
        b = c.collect(1000.0 + 10 * k)
        assert (b.samples, b.totals, b.errors) == ([], [], [])
    assert c.absent == why and nvml.inits == 1
    nvml.init_error = None  # the driver got installed
    assert c.collect(1000.0 + RETRY_S - 1).samples == []
    b = c.collect(1000.0 + RETRY_S)
    assert nvml.inits == 2 and set(values(b, "gpu_temperature")) == {"0", "1"} and c.absent is None


def test_no_gpu_no_series():
    nvml = FakeNvml([])
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    b = c.collect(1000.0)
    assert (b.samples, b.totals, b.errors) == ([], [], [])
    assert c.absent == "NVML reports no GPU" and nvml.shutdowns == 1


def test_no_pynvml_no_series(monkeypatch):
    monkeypatch.setattr(gpu_mod, "load_nvml", lambda: None)
    c = GpuCollector(Roots(), CollectorSettings())
    b = c.collect(1000.0)
    assert (b.samples, b.totals, b.errors) == ([], [], [])
    assert c.absent == "the nvidia-ml-py package (pynvml) is not installed"


def test_the_default_lookup_is_where_the_fake_goes_in(monkeypatch):
    nvml = FakeNvml(two_gpus())
    monkeypatch.setattr(gpu_mod, "load_nvml", lambda: nvml)
    assert set(values(GpuCollector(Roots(), CollectorSettings()).collect(1000.0), "gpu_utilization")) == {"0", "1"}
    # a fixture tree is another machine: this one's NVML is not asked
    c = GpuCollector(Roots.under("/nonexistent"), CollectorSettings())
    assert c.collect(1000.0).samples == [] and nvml.inits == 1


def test_a_hung_driver_costs_one_deadline_then_nothing():
    hang = threading.Event()
    nvml = FakeNvml(two_gpus(), init_hang=hang)
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    c.calls.deadline = 0.3
    t0 = time.monotonic()
    b = c.collect(1000.0)
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert b.errors == ["nvml_init:Stalled"] and b.samples == []
    t0 = time.monotonic()
    assert c.collect(1010.0).errors == ["nvml_init:Stalled"]  # skipped while stuck, not waited for again
    assert time.monotonic() - t0 < 0.1
    hang.set()  # the driver answers at last
    deadline = time.monotonic() + 5
    while c.calls.stuck() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(values(c.collect(1020.0), "gpu_utilization")) == {"0", "1"}

    # a reading that hangs: the GPUs read before it still count
    nvml.gpus[1].hang = threading.Event()
    b = c.collect(1030.0)
    assert set(values(b, "gpu_temperature")) == {"0"} and b.errors == ["gpu1:Stalled"]
    t0 = time.monotonic()
    b = c.collect(1040.0)  # while it is stuck: nothing asked, the stuck GPU named, no wait
    assert time.monotonic() - t0 < 0.1 and b.errors == ["gpu1:Stalled"] and b.samples == []
    nvml.gpus[1].hang.set()
    deadline = time.monotonic() + 5
    while c.calls.stuck() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(values(c.collect(1050.0), "gpu_temperature")) == {"0", "1"}


def test_in_the_cycle_a_machine_without_gpu_costs_nothing():
    # This machine: no NVIDIA driver (nvidia-ml-py is installed; libnvidia-ml.so.1 is not).
    c = GpuCollector(Roots(), CollectorSettings())
    cycle = CollectionCycle([c], interval=10)
    for k in range(3):
        b = cycle.run(1000.0 + 10 * k)
        assert [s for s in b.samples if s.metric != "collector_stalled"] == [] and b.totals == []
    assert cycle.errors == {} and cycle.stalls == {}
    assert cycle.durations["gpu"] < 0.5
    assert c.absent is not None and c.gpus is None
