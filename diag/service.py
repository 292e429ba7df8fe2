"""The running service: collectors, store and schedule, wired for one host."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from collectors import registry
from collectors.runner import CollectionCycle
from diag.config import Config
from diag.model import Batch, Signal

log = logging.getLogger(__name__)

RECENT_SIGNALS = 500


class Service:
    """Owns what a collection cycle needs and what the web app reads.

    `store` is anything with the Store protocol's `write`, `maintain`, `size_bytes` and
    `close`; the embedded SqliteStore by default.
    """

    def __init__(self, config: Config, store: Any | None = None) -> None:
        self.config = config
        self.instance_id = config.resolved_instance_id()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        settings = config.collector_settings()
        if settings.state_dir is not None:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.cycle = CollectionCycle(registry.build(config.roots, settings))
        self.store = store if store is not None else _open_store(config)
        self.last_batch: Batch | None = None
        self.recent_signals: list[Signal] = []
        self.collections = 0
        self.started_at = time.time()
        self.job_outcomes: Counter[tuple[str, str]] = Counter()
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def collect(self, now: float | None = None) -> Batch:
        """One cycle: read every source, store the samples durably, keep it for /metrics."""
        with self._lock:
            batch = self.cycle.run(now)
            self.store.write(self.instance_id, batch.samples)
            self.last_batch = batch
            self.recent_signals = (self.recent_signals + batch.signals)[-RECENT_SIGNALS:]
            self.collections += 1
            return batch

    def maintain(self, now: float | None = None) -> Any:
        return self.store.maintain(time.time() if now is None else now)

    def store_size(self) -> int | None:
        try:
            return self.store.size_bytes()
        except Exception:  # noqa: BLE001 - a size we cannot read is simply not exported
            return None

    def close(self) -> None:
        with self._lock:
            self.store.close()


def _open_store(config: Config):
    from diag.store import Retention, SqliteStore

    r = config.store.retention
    return SqliteStore(
        config.data_dir / "metrics.db",
        head_span=config.store.head_span,
        retention=Retention(raw=r.raw, m1=r.m1, m5=r.m5, h1=r.h1, d1=r.d1),
        size_cap_bytes=config.store.size_cap,
    )
