"""GPU checks on a table context: what GpuCollector read from a fake NVML of two GPUs, the
Xid events of the kernel-log fixture, constructed series; and on this machine (no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.catalogue import get
from collectors.gpu import GpuCollector
from collectors.kernel_log import KernelLogCollector
from collectors.kernel_patterns import event_of
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.checks.context import TableContext, evaluate, kernel_log_read
from tests.collectors.fake_nvml import FakeNvml, two_gpus

GPU_CHECKS = ("hardware.gpu_memory", "hardware.gpu_temperature", "hardware.gpu_ecc", "hardware.gpu_xid")
KMSG = Path(__file__).resolve().parent.parent / "fixtures" / "kmsg"
BTIME = 1795600000  # tests/fixtures/kmsg/proc/stat
XID_END = BTIME + 7500.0  # the last Xid line of handwritten-gpu-xid.kmsg
A100 = {"gpu": "0", "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-a", "pci": "0000:3b:00"}


def collected(now: float, nvml: FakeNvml | None = None, minutes: int = 30, change=None) -> TableContext:
    """A context holding what GpuCollector read from the fake NVML every 10 s up to `now`;
    `change(nvml, ts)` alters the GPUs before each reading."""
    nvml = nvml or FakeNvml(two_gpus())
    ctx = TableContext(now)
    c = GpuCollector(Roots(), CollectorSettings(), nvml=nvml)
    points: dict[tuple, tuple[list[float], list[float]]] = {}
    for ts in ctx.times(minutes * 60):
        if change:
            change(nvml, float(ts))
        b = c.collect(float(ts))
        assert b.errors == []
        for s in b.samples:
            got = points.setdefault((s.metric, *sorted(s.labels.items())), ([], []))
            got[0].append(float(ts))
            got[1].append(s.value)
    for (metric, *labels), (ts_, vs) in points.items():  # one frame per series: the context stays fast
        ctx.add(metric, ts_, vs, **dict(labels))
    kernel_log_read(ctx, now - minutes * 60, now)
    return ctx


def xid_events(ctx: TableContext, kmsg: Path = KMSG / "handwritten-gpu-xid.kmsg", tmp: Path | None = None) -> None:
    """The fixture's Xid signals as the event log records them (type and level of their kind)."""
    b = KernelLogCollector(Roots(proc=KMSG / "proc", kmsg=kmsg, pstore=Path("/nonexistent")),
                           CollectorSettings()).collect(XID_END)
    for s in b.signals:
        etype, level = event_of(s.kind)
        ctx.event(etype, s.ts, level=level, message=s.message, labels=s.labels, count=s.count, kind=s.kind)


# -- no GPU ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("check_id", GPU_CHECKS)
def test_no_gpu_is_not_applicable_with_the_reason(check_id):
    ctx = TableContext(1_800_000_000.0)
    kernel_log_read(ctx, ctx.now - 3600, ctx.now)
    r = evaluate(check_id, ctx)
    assert r.status == "not_applicable"
    assert r.message.startswith("no GPU metrics in the lookback: NVML reports no NVIDIA GPU on this machine")


def test_this_machine_without_gpu(tmp_path):
    """Live: the real collector on this machine (no NVIDIA driver) yields nothing, and a real
    diagnosis over what the service stored says not_applicable for every GPU check."""
    from diag.config import load
    from diag.service import Service

    svc = Service(load(env={}, data_dir=str(tmp_path / "data"), interval=10))
    try:
        import time

        t0 = time.time() - 20
        svc.collect(t0)
        svc.collect(t0 + 10)
        assert not [m for m in svc.store.metric_names() if m.startswith("gpu_")]
        assert not [k for k in svc.cycle.errors if k[0] == "gpu"]
        assert svc.cycle.durations["gpu"] < 0.5
        report = svc.diagnose(check_ids=list(GPU_CHECKS), now=t0 + 15)
        got = {c["id"]: (c["status"], c["message"]) for c in report["checks"]}
        assert set(got) == set(GPU_CHECKS)
        for status, message in got.values():
            assert status == "not_applicable" and "no NVIDIA GPU on this machine" in message
    finally:
        svc.close()


# -- from the fake NVML ----------------------------------------------------------------------------

def test_healthy_gpus_pass():
    ctx = collected(1_800_000_000.0)
    got = {c: evaluate(c, ctx) for c in GPU_CHECKS}
    assert {c: r.status for c, r in got.items()} == dict.fromkeys(GPU_CHECKS, "ok")
    assert got["hardware.gpu_memory"].message == ("2 GPU(s), memory below 90 % (peak 75.0 % on GPU 0 NVIDIA "
                                                  "A100-SXM4-80GB at 0000:3b:00)")
    assert "hottest GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00 at 64 °C" in got["hardware.gpu_temperature"].message
    assert got["hardware.gpu_ecc"].message == "no uncorrected ECC error in the lookback on 1 GPU(s)"
    assert got["hardware.gpu_xid"].message == "no NVIDIA Xid error in the kernel log in the lookback (2 GPU(s))"


def test_memory_full_now_then_earlier():
    now = 1_800_000_000.0

    def fill(nvml, ts):  # the A100 fills up 15 minutes before now
        nvml.gpus[0].memory_used = (78 << 30) if ts >= now - 900 else (40 << 30)

    r = evaluate("hardware.gpu_memory", collected(now, change=fill))
    assert r.status == "warning"  # non-critical: at most a warning
    assert r.message == "GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00: memory 97.5 % used (5-min average)"
    assert "nvidia-smi --query-compute-apps" in get("hardware.gpu_memory").recommendation
    row = next(g for g in r.evidence["gpus"] if g["gpu"] == "0")
    assert row["windows_over"] >= 3

    def burst(nvml, ts):  # full for a while an hour ago, not now
        nvml.gpus[0].memory_used = (78 << 30) if now - 3600 <= ts < now - 3000 else (40 << 30)

    r = evaluate("hardware.gpu_memory", collected(now, minutes=120, change=burst))
    assert r.status == "warning" and "memory peaked at 97.5 %" in r.message and "50.0 % now" in r.message


def test_temperature_over_the_gpus_own_slowdown_limit():
    now = 1_800_000_000.0

    def heat(nvml, ts):
        nvml.gpus[0].temperature = 93 if now - 120 <= ts <= now else 70
        nvml.gpus[1].temperature = 88 if now - 1200 <= ts < now - 1100 else 50  # no limit of its own

    r = evaluate("hardware.gpu_temperature", collected(now, change=heat))
    assert r.status == "critical"
    assert r.message.startswith("GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00 at or over its slowdown temperature "
                                "92 °C (now, 93 °C last)")
    assert "GPU 1 NVIDIA GeForce RTX 4090 at 0000:86:00 reached 88 °C" in r.message
    # cooled since: the slowdown run is history, a warning
    ctx = collected(now + 600, change=heat, minutes=40)
    r = evaluate("hardware.gpu_temperature", ctx)
    assert r.status == "warning" and "peak 93 °C at" in r.message


def test_uncorrected_ecc_errors_now_and_earlier():
    now = 1_800_000_000.0

    def dbe_at(when):
        def change(nvml, ts):
            nvml.gpus[0].ecc_uncorrected = 2 if ts >= when else 0
            nvml.gpus[0].ecc_corrected = 5 + int(ts >= now - 1500)
        return change

    r = evaluate("hardware.gpu_ecc", collected(now, change=dbe_at(now - 300)))
    assert r.status == "critical"
    assert r.message.startswith("GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00: 2 uncorrected ECC error(s), last at ")
    assert r.evidence["gpus"][0]["corrected"] == 1
    r = evaluate("hardware.gpu_ecc", collected(now, minutes=120, change=dbe_at(now - 3600)))
    assert r.status == "warning"
    ok = evaluate("hardware.gpu_ecc", collected(now, change=lambda nvml, ts: setattr(nvml.gpus[0], "ecc_corrected", int(ts) % 7)))
    assert ok.status == "ok" and "corrected, which ECC handled" in ok.message


def test_a_gpu_without_ecc_is_not_applicable_for_ecc():
    nvml = FakeNvml(two_gpus()[1:])  # only the GeForce
    r = evaluate("hardware.gpu_ecc", collected(1_800_000_000.0, nvml=nvml))
    assert r.status == "not_applicable" and "no GPU here reports ECC errors" in r.message


# -- Xid events from the kernel-log fixture --------------------------------------------------------

def test_xid_79_in_the_last_15_minutes_is_critical_and_names_the_gpu():
    ctx = collected(XID_END + 60, minutes=10)  # the fake's A100 sits at 0000:3b:00 like the fixture's GPU
    xid_events(ctx)
    r = evaluate("hardware.gpu_xid", ctx)
    assert r.status == "critical"
    first = r.message.split("; ")[0]
    assert first.startswith("Xid 79 on GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00 x1, last at ")
    assert first.endswith(": GPU has fallen off the bus.")
    assert "Xid 13 on GPU 0 NVIDIA A100-SXM4-80GB at 0000:3b:00, python3 (pid 4711) x2" in r.message
    assert "Xid 31 on GPU at 0000:01:00" in r.message  # no GPU of NVML has that address
    assert "fell off the bus" in r.recommendation and "double-bit ECC error" in r.recommendation
    assert {e["labels"]["xid"] for e in r.evidence["events"]} == {"13", "48", "63", "79", "31"}


def test_xid_hours_ago_or_from_an_application_is_a_warning():
    ctx = collected(XID_END + 3 * 3600, minutes=10)
    xid_events(ctx)
    assert evaluate("hardware.gpu_xid", ctx).status == "warning"
    ctx = collected(XID_END + 60, minutes=10)
    ctx.event("GPU.XidError", XID_END, level="WARN", message="NVRM: Xid (PCI:0000:3b:00): 13, ...",
              labels={"pci": "0000:3b:00", "xid": "13", "detail": "Graphics SM Warp Exception"})
    r = evaluate("hardware.gpu_xid", ctx)
    assert r.status == "warning" and "Xid Errors" in r.recommendation


def test_xid_of_a_gpu_gone_from_nvml_still_counts():
    ctx = TableContext(XID_END + 60)
    kernel_log_read(ctx, ctx.now - 600, ctx.now)
    xid_events(ctx)
    r = evaluate("hardware.gpu_xid", ctx)
    assert r.status == "critical" and "Xid 79 on GPU at 0000:3b:00" in r.message


def test_xid_unknown_when_the_kernel_log_was_not_read():
    ctx = TableContext(1_800_000_000.0)  # a GPU reports, but no kernel_signals point: /dev/kmsg unread
    for metric in ("gpu_memory_total", "gpu_memory_usage"):
        ctx.add(metric, ctx.times(600), 1.0, **A100)
    r = evaluate("hardware.gpu_xid", ctx)
    assert r.status == "unknown" and "NVIDIA Xid errors" in r.message
