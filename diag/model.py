"""The values that flow from collectors to the store: samples, signals, batches.

Plain dataclasses with no dependencies, so collectors and the agent stay light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Container


@dataclass(slots=True)
class Sample:
    """One value of one series at one instant.

    Not frozen: a frozen dataclass costs ~3x more to build, and a cycle builds hundreds.
    """

    metric: str
    labels: dict[str, str]
    value: float
    ts: float

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "labels": dict(self.labels), "value": self.value, "ts": self.ts}


@dataclass(slots=True)
class SampleColumns:
    """A batch's samples column by column, as the HTTP ingest builds them: no object per
    sample, and each series key made once. `keys[i]` is `(metric, *labels.items())`."""

    keys: list[tuple]
    values: list[float]
    ts: list[float]

    def samples(self, metrics: Container[str]) -> list[Sample]:
        """The samples of these metrics, as objects."""
        return [Sample(k[0], dict(k[1:]), v, t) for k, v, t in zip(self.keys, self.values, self.ts) if k[0] in metrics]


@dataclass(frozen=True, slots=True)
class Signal:
    """A kernel or system happening: hung task, OOM kill, I/O error, reboot...

    `kind` is a kernel-log pattern id (see collectors/kernel_patterns.py) or a state
    signal such as `reboot`. `count` folds repeats of one fault into one signal.
    """

    ts: float
    kind: str
    message: str
    labels: dict[str, str] = field(default_factory=dict)
    count: int = 1
    lines: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["lines"] = list(self.lines)
        return d


@dataclass(frozen=True, slots=True)
class KernelLine:
    """One kernel-log record as read: every line, not only the ones that make a finding,
    so an instance's system log can be read afterwards (`GET .../kernel-log`).

    `level` is the syslog severity (0 emerg .. 7 debug); `seq` the record's sequence
    number in its boot, which with `ts` names the line (a resent line is stored once).
    """

    ts: float
    level: int
    seq: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "level": self.level, "seq": self.seq, "message": self.message}


@dataclass(slots=True)
class Batch:
    """What one collection cycle (or one collector within it) produced.

    - `samples`: catalogue metrics (gauges, rates, per-interval counts), stored.
    - `totals`: raw monotonic counters (`*_total` in the catalogue), for `/metrics`.
    - `counters`: raw kernel counters by their kernel names (`TcpExt.ListenOverflows`),
      so a user can compare with what another tool reads from the same tree.
    - `signals`: kernel and state happenings.
    - `processes`: top processes by CPU and memory, kept as evidence for reports.
    - `kernel_lines`: the kernel-log records read this cycle (bounded by the collector).
    - `errors`: kinds of failures a collector survived (one mount's statvfs failed),
      counted by the runner beside the failures that stopped a collector.
    """

    ts: float
    samples: list[Sample] = field(default_factory=list)
    totals: list[Sample] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    processes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    kernel_lines: list[KernelLine] = field(default_factory=list)

    def add(self, metric: str, value: float | None, **labels: str) -> None:
        """Append a sample; `None` (no rate yet, missing reading) is skipped."""
        if value is not None:
            self.samples.append(Sample(metric, labels, float(value), self.ts))

    def add_total(self, metric: str, value: float | None, **labels: str) -> None:
        if value is not None:
            self.totals.append(Sample(metric, labels, float(value), self.ts))

    def extend(self, other: "Batch") -> None:
        self.samples.extend(other.samples)
        self.totals.extend(other.totals)
        self.counters.update(other.counters)
        self.signals.extend(other.signals)
        self.processes.update(other.processes)
        self.errors.extend(other.errors)
        self.kernel_lines.extend(other.kernel_lines)

    def to_json(self, instance_id: str) -> dict[str, Any]:
        return {
            "instance_id": instance_id,
            "ts": self.ts,
            "samples": [s.to_json() for s in self.samples],
            "signals": [s.to_json() for s in self.signals],
            "counters": dict(sorted(self.counters.items())),
            "totals": [s.to_json() for s in self.totals],
            "processes": self.processes,
        }
