"""TableContext: a CheckContext over in-memory tables, for check tests.

Test data, not a mock: series are pandas frames (ts, value, labels) queried the way the
store answers (the window clipped to [start, end], raw points or step buckets aligned to
multiples of the step, long frames with one column per label key), events are dicts in
the event log's shape, facts a dict. The clock is settable: `at(now)` moves the window.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from checks.base import DEFAULT_LOOKBACK
from collectors.settings import BandwidthCap

_AGGS = {"avg": "mean", "min": "min", "max": "max", "sum": "sum", "count": "count", "last": "last"}


class TableContext:
    def __init__(self, now: float = 1_800_000_000.0, *, window: float = DEFAULT_LOOKBACK, interval: float = 10.0,
                 monitoring_since: float | None = None, instance_id: str = "i-test",
                 bandwidth_caps: Mapping[str, BandwidthCap] | None = None,
                 service_ports: Sequence[int] = (22,)) -> None:
        self.window = window
        self.interval = interval
        self.monitoring_since = monitoring_since
        self.instance_id = instance_id
        self.bandwidth_caps = dict(bandwidth_caps or {})
        self.service_ports = list(service_ports)
        self._parts: dict[str, list[pd.DataFrame]] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._events: list[dict[str, Any]] = []
        self._facts: dict[str, Any] | None = None
        self._facts_at: float | None = None
        self.processes: dict[str, list[dict[str, Any]]] = {"by_cpu": [], "by_memory": []}
        self.at(now)

    # -- building the data ----------------------------------------------------------------------

    def at(self, now: float) -> "TableContext":
        """Move the clock: the window becomes [now - window, now]."""
        self.now = float(now)
        self.end = self.now
        self.start = self.now - self.window
        return self

    def add(self, metric: str, ts: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray | float,
            **labels: str) -> "TableContext":
        """Points of one series; `values` may be a scalar for a constant series."""
        ts = np.asarray(ts, dtype=float)
        vals = np.broadcast_to(np.asarray(values, dtype=float), ts.shape).copy()
        cols: dict[str, Any] = {"ts": ts, "value": vals}
        cols.update({k: np.full(ts.size, v, dtype=object) for k, v in labels.items()})
        self._parts.setdefault(metric, []).append(pd.DataFrame(cols))
        self._frames.pop(metric, None)
        return self

    def times(self, seconds: float, *, end: float | None = None, step: float | None = None) -> np.ndarray:
        """Timestamps every `step` (default: the interval) over the `seconds` before `end` (default: now)."""
        end = self.now if end is None else end
        step = self.interval if step is None else step
        n = int(round(seconds / step))
        return end - step * np.arange(n - 1, -1, -1, dtype=float)

    def event(self, etype: str, ts: float, *, level: str = "CRITICAL", message: str = "", last_time: float | None = None,
              labels: Mapping[str, str] | None = None, lines: Sequence[str] = (), count: int = 1,
              status: str = "Executed", kind: str = "") -> dict[str, Any]:
        e = {"event_id": f"e-{len(self._events):04d}", "instance_id": self.instance_id, "type": etype, "level": level,
             "status": status, "publish_time": float(ts), "last_time": float(last_time if last_time is not None else ts),
             "details": {"message": message or etype, "labels": dict(labels or {}), "count": count, "lines": list(lines)}}
        if kind:
            e["details"]["kind"] = kind
        self._events.append(e)
        return e

    def set_facts(self, facts: dict[str, Any] | None, taken_at: float | None = None) -> "TableContext":
        self._facts = facts
        self._facts_at = None if facts is None else (self.now if taken_at is None else taken_at)
        return self

    def _frame(self, metric: str) -> pd.DataFrame | None:
        f = self._frames.get(metric)
        if f is None and metric in self._parts:
            f = pd.concat(self._parts[metric], ignore_index=True)
            keys = sorted(c for c in f.columns if c not in ("ts", "value"))
            f = f[["ts", "value", *keys]].sort_values([*keys, "ts"], kind="stable").reset_index(drop=True)
            self._frames[metric] = f
        return f

    # -- CheckContext -----------------------------------------------------------------------------

    def series(self, metric: str, lookback: float | None = None, *, step: float | None = None,
               agg: str = "avg", labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        f = self._frame(metric)
        if f is None:
            return pd.DataFrame({"ts": np.empty(0), "value": np.empty(0)})
        start = self.start if lookback is None else max(self.start, self.end - lookback)
        ts = f["ts"].to_numpy()
        if step:
            # The store reads whole buckets that touch the window.
            lo, hi = math.floor(start / step) * step, math.ceil(self.end / step) * step
            sel = (ts >= lo) & (ts < hi)
        else:
            sel = (ts >= start) & (ts <= self.end)
        for k, v in (labels or {}).items():
            sel &= (f[k] == v).to_numpy() if k in f else False
        out = f[sel]
        if not step:
            return out.reset_index(drop=True)
        keys = [c for c in out.columns if c not in ("ts", "value")]
        out = out.assign(ts=np.floor(out["ts"].to_numpy() / step) * step)
        grouped = out.groupby([*keys, "ts"], sort=True, dropna=False)["value"].agg(_AGGS[agg]).reset_index()
        return grouped[["ts", "value", *keys]]

    def latest(self, metric: str, labels: Mapping[str, str] | None = None,
               max_age: float | None = None) -> pd.DataFrame:
        f = self._frame(metric)
        if f is None:
            return pd.DataFrame({"ts": np.empty(0), "value": np.empty(0)})
        sel = f["ts"].to_numpy() <= self.end
        if max_age is not None:
            sel &= f["ts"].to_numpy() >= self.now - max_age
        for k, v in (labels or {}).items():
            sel &= (f[k] == v).to_numpy() if k in f else False
        out = f[sel]
        keys = [c for c in out.columns if c not in ("ts", "value")]
        if keys:
            # Rows are sorted by labels then time: the last row of each series is its latest.
            out = out.groupby(keys, sort=True, dropna=False).tail(1)
        else:
            out = out.tail(1)
        return out.reset_index(drop=True)

    def events(self, types: Sequence[str] | None = None, lookback: float | None = None) -> list[dict[str, Any]]:
        since = self.start if lookback is None else max(self.start, self.end - lookback)
        got = [e for e in self._events if (not types or e["type"] in types) and e["status"] == "Executed"
               and e["last_time"] >= since and e["publish_time"] <= self.end]
        return sorted(got, key=lambda e: e["publish_time"])

    def facts(self) -> dict[str, Any] | None:
        return self._facts

    def facts_age(self) -> float | None:
        return None if self._facts_at is None else self.now - self._facts_at

    def top_processes(self, at: float | None = None) -> dict[str, Any]:
        return self.processes


# -- ready-made test data --------------------------------------------------------------------------

def facts_snapshot(taken_at: float, **parts: Any) -> dict[str, Any]:
    """A healthy facts snapshot in the shape of collectors.facts.snapshot; override parts by name."""
    f: dict[str, Any] = {
        "taken_at": taken_at,
        "sshd": {"installed": True, "binary": "/usr/sbin/sshd", "running": True, "pids": [812], "ports": [22],
                 "socket_activated": False, "config_path": "/etc/ssh/sshd_config", "config_exists": True,
                 "config_files": ["/etc/ssh/sshd_config"],
                 "settings": {"port": [22], "permitrootlogin": "prohibit-password", "listenaddress": [], "hostkey": []},
                 "host_keys": [{"path": f"/etc/ssh/ssh_host_{k}_key", "exists": True} for k in ("rsa", "ecdsa", "ed25519")],
                 "privsep_dir": {"path": "/run/sshd", "exists": True}},
        "interfaces": [
            {"name": "lo", "up": True, "loopback": True, "mtu": 65536,
             "addresses": [{"family": "inet", "address": "127.0.0.1", "prefixlen": 8, "netmask": "255.0.0.0", "dynamic": False}]},
            {"name": "eth0", "up": True, "loopback": False, "mtu": 1500,
             "addresses": [{"family": "inet", "address": "10.0.0.5", "prefixlen": 24, "netmask": "255.255.255.0", "dynamic": True}]}],
        "dhcp_clients": [{"pid": 455, "name": "dhclient", "cmdline": "dhclient -v eth0"}],
        "routes": {"default_v4": [{"gateway": "10.0.0.1", "interface": "eth0"}], "default_v6": []},
        "firewall": {"tool": "iptables", "rules_checked": 12, "drops": [], "error": None},
        "listening": [{"proto": "tcp", "family": "inet", "address": "0.0.0.0", "port": 22, "pids": [812], "process": "sshd"}],
    }
    f.update(parts)
    return f


def fill_healthy(ctx: TableContext, seconds: float = DEFAULT_LOOKBACK, *, seed: int = 1) -> TableContext:
    """Every metric the checks read, `seconds` of points every interval up to now, all well inside limits."""
    rng = np.random.default_rng(seed)
    ts = ctx.times(seconds)
    n = ts.size

    def noise(mid: float, spread: float) -> np.ndarray:
        return np.clip(mid + rng.normal(0, spread, n), 0, 100)

    ctx.add("uptime", ts, ts - (ctx.now - seconds - 3600))
    ctx.add("cpu_usage", ts, noise(30, 10))
    ctx.add("cpu_steal", ts, noise(0.5, 0.3))
    ctx.add("mem_usage", ts, noise(50, 2))
    ctx.add("oom_kills", ts, 0.0)
    for dev in ("sda", "sdb"):
        ctx.add("disk_inflight", ts, rng.integers(0, 3, n), device=dev)
        ctx.add("disk_read_iops", ts, noise(50, 10), device=dev)
        ctx.add("disk_write_iops", ts, noise(80, 10), device=dev)
        ctx.add("disk_util", ts, noise(20, 5), device=dev)
        ctx.add("disk_await_read", ts, noise(2, 0.5), device=dev)
        ctx.add("disk_await_write", ts, noise(3, 0.5), device=dev)
    for mp, dev, fstype in (("/", "/dev/sda1", "ext4"), ("/data", "/dev/sdb1", "xfs"), ("/boot", "/dev/sda2", "ext4")):
        ctx.add("fs_usage", ts, noise(40, 0.1), mountpoint=mp, device=dev, fstype=fstype)
        ctx.add("fs_inode_usage", ts, noise(10, 0.1), mountpoint=mp, device=dev, fstype=fstype)
        ctx.add("fs_readonly", ts, 0.0, mountpoint=mp, device=dev, fstype=fstype)
    for iface, scope in (("eth0", "public"), ("eth1", "private")):
        for m in ("net_in", "net_out"):
            ctx.add(m, ts, noise(50, 5) * 1e6, interface=iface, scope=scope)
        for m in ("net_in_errors", "net_out_errors", "net_in_drops", "net_out_drops"):
            ctx.add(m, ts, 0.0, interface=iface, scope=scope)
    for scope in ("public", "private"):
        ctx.add("bandwidth_usage_in", ts, noise(20, 5), scope=scope)
        ctx.add("bandwidth_usage_out", ts, noise(20, 5), scope=scope)
    for m in ("tcp_listen_overflows", "tcp_listen_drops", "udp_rcvbuf_errors", "udp_sndbuf_errors", "softnet_dropped"):
        ctx.add(m, ts, 0.0)
    ctx.add("conntrack_usage", ts, noise(5, 1))
    ctx.add("file_handles_usage", ts, noise(2, 0.5))
    ctx.add("systemd_units_failed", ts, 0.0)  # systemd runs, no unit failed
    # a server with a mirrored boot disk, ECC memory and sensors with limits, all calm
    ctx.add("md_disks", ts, 2.0, array="md0")
    ctx.add("md_disks_active", ts, 2.0, array="md0")
    ctx.add("md_disks_failed", ts, 0.0, array="md0")
    ctx.add("md_degraded", ts, 0.0, array="md0")
    for mc in ("mc0", "mc1"):
        ctx.add("edac_correctable_errors", ts, 0.0, controller=mc)
        ctx.add("edac_uncorrectable_errors", ts, 0.0, controller=mc)
    ctx.add("cpu_core_throttles", ts, 0.0)
    ctx.add("cpu_package_throttles", ts, 0.0)
    for sensor in ("Package id 0", "Core 0"):
        ctx.add("hw_temperature", ts, noise(50, 3), chip="coretemp", sensor=sensor)
        ctx.add("hw_temperature_max", ts, 84.0, chip="coretemp", sensor=sensor)
        ctx.add("hw_temperature_crit", ts, 100.0, chip="coretemp", sensor=sensor)
    # two containers well inside their memory limits, never OOM-killed
    ctx.add("containers", ts, 12.0)
    for name, runtime, path in (("web", "docker", "/docker/a1"), ("nginx.service", "systemd", "/system.slice/nginx.service")):
        ctx.add("container_memory_usage", ts, noise(40, 3), container=name, runtime=runtime, cgroup=path)
        ctx.add("container_oom_kills", ts, 0.0, container=name, runtime=runtime, cgroup=path)
    # two calm GPUs (issue 20): memory half used, cool, no ECC error; no Xid in the log
    for g, name, pci in (("0", "NVIDIA A100-SXM4-80GB", "0000:3b:00"), ("1", "NVIDIA A100-SXM4-80GB", "0000:86:00")):
        lab = {"gpu": g, "name": name, "uuid": f"GPU-{g}", "pci": pci}
        ctx.add("gpu_memory_total", ts, 80.0 * 2**30, **lab)
        ctx.add("gpu_memory_usage", ts, noise(50, 3), **lab)
        ctx.add("gpu_temperature", ts, noise(55, 2), **lab)
        ctx.add("gpu_temperature_slowdown", ts, 92.0, **lab)
        ctx.add("gpu_ecc_corrected_errors", ts, 0.0, **lab)
        ctx.add("gpu_ecc_uncorrected_errors", ts, 0.0, **lab)
    kernel_log_read(ctx, float(ts[0]), float(ts[-1]))
    ctx.set_facts(facts_snapshot(ctx.now - 60), taken_at=ctx.now - 60)
    ctx.processes = {"by_cpu": [{"pid": 4242, "name": "java", "cpu_percent": 88.0, "rss_bytes": 2 << 30}],
                     "by_memory": [{"pid": 4242, "name": "java", "cpu_percent": 88.0, "rss_bytes": 2 << 30}]}
    return ctx


def kernel_log_read(ctx: TableContext, start: float, end: float, *, step: float | None = None) -> TableContext:
    """The kernel-log collector's per-cycle points from `start` to `end`: the kernel log was
    read then (found nothing; findings are events). Points after the clock stay unseen
    until `at()` moves past them, as in the store."""
    step = ctx.interval if step is None else step
    ts = np.arange(start, end + step / 2, step, dtype=float)
    for kind in ("hung_task", "oom_kill", "io_error"):
        ctx.add("kernel_signals", ts, 0.0, kind=kind)
    return ctx


def evaluate(check_id: str, ctx: TableContext):
    """Run one catalogue check; its evidence must survive JSON (reports store it)."""
    import json

    from checks.catalogue import get

    check = get(check_id)
    result = check.evaluate(ctx, check)
    json.dumps(result.evidence, allow_nan=False)
    return result
