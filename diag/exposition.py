"""What `/metrics` shows: the latest collection as Prometheus gauges and counters, under the
catalogue's exposition names and base units (diag.catalogue), per-interval counts as their counters.

A custom prometheus-client collector reads the service's last batch at scrape time, so
a scrape costs no extra reading of /proc, and the exposition always matches the catalogue.
"""

from __future__ import annotations

import re

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

from collectors.runner import CollectionCycle
from diag import catalogue
from diag.model import Batch, Sample

if TYPE_CHECKING:  # the agent renders batches too, and must not load the server's parts
    from diag.collection import Collection
    from diag.instances import Instances
    from diag.job_stats import JobStats
    from diag.store import ReadStore


def _help(m: catalogue.Metric) -> str:
    if m.scale != 1.0:  # the description speaks in the catalogue's unit
        return f"{m.description} Exposed in {m.base_unit}: the catalogue's {m.unit} (metric {m.name}) times {m.scale:g}."
    return f"{m.description} Unit: {m.base_unit or m.unit}." if m.unit else m.description


class BatchCollector(Collector):
    """Exposes the catalogue gauges and raw `_total` counters of the latest batch.

    Every series carries `instance_id` (when `instance_id` is given), so an engine that
    scrapes many agents with `honor_labels: true` keeps them apart without relabelling,
    and PrometheusStore finds each instance by that label.
    """

    def __init__(self, latest: Callable[[], Batch | None], instance_labels: Callable[[], dict[str, str]] | None = None,
                 instance_id: Callable[[], str] | None = None):
        self._latest = latest
        self._instance = instance_labels or (lambda: {})
        self._instance_id = instance_id

    def collect(self) -> Iterator[Metric]:
        batch = self._latest()
        if batch is None:
            return
        extra = dict(self._instance())
        if self._instance_id is not None:
            extra = {"instance_id": self._instance_id(), **extra}
        # Deltas are left out: their counters say the same without a repeated scrape counting twice.
        yield from _families(batch.samples, [m for m in catalogue.METRICS if m.exposition_name], GaugeMetricFamily, extra)
        yield from _families(batch.totals, catalogue.COUNTERS, CounterMetricFamily, extra)
        yield from _user_families(batch.samples, extra)

    def describe(self) -> Iterable[Metric]:
        return []


def _families(samples: list[Sample], entries: Iterable[catalogue.Metric], family, extra: dict[str, str]) -> Iterator[Metric]:
    by_metric: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_metric[s.metric].append(s)
    for m in entries:
        got = by_metric.get(m.name)
        if not got:
            continue
        name = m.exposition_name.removesuffix("_total") if family is CounterMetricFamily else m.exposition_name
        names = list(extra) + list(m.labels)
        fam = family(name, _help(m), labels=names, unit=m.base_unit)
        seen: set[tuple[str, ...]] = set()
        for s in got:
            values = tuple(list(extra.values()) + [s.labels.get(k, "") for k in m.labels])
            if values in seen:  # one value per label set, as the exposition format requires
                continue
            seen.add(values)
            fam.add_metric(list(values), catalogue.to_exposed(m, s.value))
        yield fam


def _user_families(samples: list[Sample], extra: dict[str, str]) -> Iterator[Metric]:
    """Series outside the catalogue (the files of textfile_dir), untyped as their type is
    not kept: an engine that scrapes this endpoint (a fleet with store_url) must see them
    too, as node_exporter serves its textfiles."""
    by_metric: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.metric not in catalogue.BY_NAME:
            by_metric[s.metric].append(s)
    for name in sorted(by_metric):
        got = by_metric[name]
        own = sorted({k for s in got for k in s.labels if k not in extra})  # the instance's labels win
        fam = UnknownMetricFamily(name, "A series of the instance's own, outside the catalogue (textfile_dir).",
                                  labels=[*extra, *own])
        for s in got:
            fam.add_metric([*extra.values(), *(s.labels.get(k, "") for k in own)], s.value)
        yield fam


def cycle_families(cycle: CollectionCycle) -> Iterator[Metric]:
    """The collection cycle's own health, served alike by `diag serve` and `diag agent`."""
    if cycle.last_duration is not None:
        last = GaugeMetricFamily("diag_collection_cycle_seconds",
                                 "Wall time of the last whole collection cycle (compare with the interval).")
        last.add_metric([], cycle.last_duration)
        yield last
    over = CounterMetricFamily("diag_collection_overruns",
                               "Collection cycles that took longer than the collection interval.")
    over.add_metric([], cycle.overruns)
    yield over
    # Every collector, 0 for those never stalled, so a rate() needs no absent() beside it.
    stalls = CounterMetricFamily("diag_collector_stalls",
                                 "Collection cycles that went on without a collector: its call had not "
                                 "returned within its budget, or was still stuck from an earlier cycle.",
                                 labels=["collector"])
    counts = dict(cycle.stalls)
    for c in cycle.collectors:
        stalls.add_metric([c.name], counts.get(c.name, 0))
    yield stalls
    errs = CounterMetricFamily("diag_collector_errors", "Collector failures by collector and error kind.", labels=["collector", "kind"])
    for (name, kind), n in list(cycle.errors.items()):
        errs.add_metric([name, kind], n)
    yield errs


class ServiceCollector(Collector):
    """The service's own health: collection cost, collector errors, jobs, store size."""

    def __init__(self, collection: Collection, jobs: JobStats, store: ReadStore) -> None:
        self._collection = collection
        self._jobs = jobs
        self._store = store

    def collect(self) -> Iterator[Metric]:
        from diag import __version__

        info = GaugeMetricFamily("diag_build_info", "Version of the diag service.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        runs = CounterMetricFamily("diag_collections", "Collection cycles completed.")
        runs.add_metric([], self._collection.collections)
        yield runs
        cycle = self._collection.cycle
        dur = GaugeMetricFamily("diag_collection_duration_seconds", "Wall time of the last collection cycle, by collector.", labels=["collector"])
        for name, seconds in list(cycle.durations.items()):
            dur.add_metric([name], seconds)
        yield dur
        yield from cycle_families(cycle)
        # `task`, not `job`: a scrape's own `job` label would clash with it.
        jobs = CounterMetricFamily("diag_job_runs", "Scheduled job runs by task and outcome.", labels=["task", "outcome"])
        for (job, outcome), n in list(self._jobs.outcomes.items()):
            jobs.add_metric([job, outcome], n)
        yield jobs
        try:
            size = self._store.size_bytes()
        except Exception:  # noqa: BLE001 - a size we cannot read is simply not exported
            size = None
        if size is not None:
            g = GaugeMetricFamily("diag_store_size_bytes", "Size of the embedded store on disk.")
            g.add_metric([], size)
            yield g

    def describe(self) -> Iterable[Metric]:
        return []


class HealthCollector(Collector):
    """Every known instance's health state as stored with its latest diagnosis (or change
    of monitoring): `diag_health_status{instance_id,state}` is 1 for the current state and
    0 for the other six, the enum convention, so `diag_health_status{state="Impaired"} == 1`
    is an alert expression and a state that went away reads 0, not absent.

    One query per render; no diagnosis runs on a scrape.
    """

    def __init__(self, instances: Instances) -> None:
        self._instances = instances

    def collect(self) -> Iterator[Metric]:
        from diag.health import STATES

        fam = GaugeMetricFamily("diag_health_status",
                                "Health state of an instance (1 for the current state, 0 for the others), as of its "
                                "latest diagnosis: Ok, Warning, Impaired, Maintaining, Initializing, "
                                "InsufficientData or NotApplicable.", labels=["instance_id", "state"])
        for instance_id, current in self._instances.health_states():
            for state in STATES:
                fam.add_metric([instance_id, state], 1.0 if state == current else 0.0)
        yield fam

    def describe(self) -> Iterable[Metric]:
        return []


# Labels Prometheus or this service already give a meaning: an instance label of that name
# would clash with them on the info series, so it is left off (the API still shows it).
RESERVED_LABELS = frozenset({"instance_id", "hostname", "instance", "job"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class InstanceInfoCollector(Collector):
    """`diag_instance_info{instance_id, hostname, <its labels>} 1` for every known instance:
    the `*_info` pattern, so a rule joins an instance's labels (`and on(instance_id)
    diag_instance_info{role="db"}`) instead of every series carrying them."""

    def __init__(self, instances: Instances) -> None:
        self._instances = instances

    def collect(self) -> Iterator[Metric]:
        known = self._instances.list()
        keys = sorted({k for i in known for k in i["labels"]
                       if k not in RESERVED_LABELS and _LABEL_NAME.match(k) and not k.startswith("__")})
        fam = GaugeMetricFamily("diag_instance_info", "An instance this service knows, with its hostname and labels "
                                "(always 1): join it on instance_id to select instances by label.",
                                labels=["instance_id", "hostname", *keys])
        for i in known:
            fam.add_metric([i["instance_id"], i["hostname"] or "", *(str(i["labels"].get(k, "")) for k in keys)], 1.0)
        yield fam

    def describe(self) -> Iterable[Metric]:
        return []
