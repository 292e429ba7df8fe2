"""Time-series store: the `Store` protocol and the embedded `SqliteStore`.

Layout (see each module): schema (tables, pragmas), encoding (chunk codecs), head
(in-memory recent points), series (catalogue), writer (the one write thread),
compaction (head -> chunks + roll-ups), rollups (bucket aggregates), retention
(per-level horizons, size cap), query (read path), sqlite_store (the class).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

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
class Store(Protocol):
    """What the rest of the service reads and writes through (SqliteStore, PrometheusStore)."""

    def write(self, instance_id: str, samples: Iterable[Sample], *, batch_id: str | None = None) -> bool: ...

    def write_columns(self, instance_id: str, keys: list[tuple], ts: np.ndarray, vals: np.ndarray, *,
                      batch_id: str | None = None) -> bool:
        """`write` for a batch already in columns; `keys[i]` is `(metric, *labels.items())`."""
        ...

    def unknown_series(self, instance_id: str, keys: list[tuple]) -> list[int]:
        """Indexes of the keys this instance has never written: the ingest route checks a
        series' names only the first time it comes."""
        ...

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


__all__ = [
    "AGGS",
    "LEVELS",
    "Deletion",
    "MaintenanceReport",
    "Retention",
    "SqliteStore",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
]
