"""Time-series store: the `ReadStore`/`WriteStore` protocols and the embedded `SqliteStore`.

Layout (see each module): schema (tables, pragmas), encoding (chunk codecs), head
(in-memory recent points), series (catalogue), writer (the one write thread),
compaction (head -> chunks + roll-ups), rollups (bucket aggregates), retention
(per-level horizons, size cap), query (read path), sqlite_store (the class).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from diag.model import Sample

from .sqlite_store import SqliteStore
from .types import (
    AGGS,
    LEVELS,
    Deletion,
    MaintenanceReport,
    Retention,
    StoreClosedError,
    StoreError,
    StoreFullError,
)

LabelFilters = Mapping[str, "str | re.Pattern[str]"]


@runtime_checkable
class ReadStore(Protocol):
    """What the service, the checks, alerting and the query API read through, and the hooks
    the service calls on any store: the embedded SqliteStore, or PrometheusStore over an
    engine behind --store-url (which implements this side only)."""

    def query(
        self,
        metric: str,
        *,
        instance_id: str | None = None,
        labels: LabelFilters | None = None,
        start: float,
        end: float,
        step: float,
        agg: str = "avg",
    ) -> pd.DataFrame: ...

    def series(
        self, metric: str | None = None, *, instance_id: str | None = None, labels: LabelFilters | None = None
    ) -> list[dict]: ...

    def latest(
        self,
        metric: str,
        *,
        instance_id: str | None = None,
        labels: LabelFilters | None = None,
        max_age: float | None = None,
    ) -> pd.DataFrame: ...

    def metric_names(self, instance_id: str | None = None) -> list[str]: ...

    def maintain(self, now: float) -> MaintenanceReport:
        """Compaction and retention; an engine does its own and reports nothing."""
        ...

    def size_bytes(self) -> int | None:
        """On disk, or None when the store cannot say (an engine elsewhere)."""
        ...

    def keeps(self) -> dict:
        """What it keeps and for how long, as /api/v1/status shows it (`kind`, `head_span_seconds`,
        `levels`, `size_cap_bytes`); an engine elsewhere keeps its own and says only `remote`."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class WriteStore(Protocol):
    """What collection, plugins and ingest write through: only a store that keeps the samples
    itself (with --store-url the engine scrapes our /metrics instead)."""

    def write(self, instance_id: str, samples: Iterable[Sample], *, batch_id: str | None = None) -> bool: ...

    def write_columns(self, instance_id: str, keys: list[tuple], ts: np.ndarray, vals: np.ndarray, *,
                      batch_id: str | None = None) -> bool:
        """`write` for a batch already in columns; `keys[i]` is `(metric, *labels.items())`."""
        ...

    def unknown_series(self, instance_id: str, keys: list[tuple]) -> list[int]:
        """Indexes of the keys this instance has never written: the ingest route checks a
        series' names only the first time it comes."""
        ...

    def series_count(self, instance_id: str) -> int:
        """Series of the instance: the ingest route's budget per instance."""
        ...

    @property
    def full(self) -> str | None:
        """Why the last write was refused for want of room, None once one succeeds (/healthz)."""
        ...


@runtime_checkable
class PointStore(Protocol):
    """Series by id and their raw points: what the PromQL engine reads, the embedded store only."""

    def series_infos(self, metric: str | None = None, *, instance_id: str | None = None) -> list: ...

    def points(self, series: list, *, start: float, end: float, now: float | None = None) -> tuple: ...


@runtime_checkable
class InstanceSource(Protocol):
    """An engine that knows instances the service was never told of (their `instance_id`
    label values): the service lists them (Service.sync_instances)."""

    def instance_ids(self) -> list[str]: ...

    def last_seen(self) -> dict[str, float]: ...


@runtime_checkable
class Store(ReadStore, WriteStore, Protocol):
    """Both sides: the embedded SqliteStore."""


class StoreSides(NamedTuple):
    """A store's sides, told apart once when the service is wired, not probed at each use."""

    read: ReadStore
    write: WriteStore | None
    instances: InstanceSource | None
    points: PointStore | None


def sides(store: ReadStore) -> StoreSides:
    """The sides `store` implements, by its declared protocols: PrometheusStore has no write side."""
    return StoreSides(store, store if isinstance(store, WriteStore) else None,
                      store if isinstance(store, InstanceSource) else None,
                      store if isinstance(store, PointStore) else None)


__all__ = [
    "AGGS",
    "LEVELS",
    "Deletion",
    "InstanceSource",
    "MaintenanceReport",
    "PointStore",
    "ReadStore",
    "Retention",
    "SqliteStore",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "StoreSides",
    "WriteStore",
    "sides",
]
