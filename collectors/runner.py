"""Runs every collector once per cycle; one that fails does not stop the others."""

from __future__ import annotations

import logging
import time
from collections import Counter

from collectors.base import Collector
from diag.model import Batch

log = logging.getLogger(__name__)


class CollectionCycle:
    """Runs collectors in order and merges their batches into one.

    Errors are counted per (collector, error kind) for `/metrics` and logged once per
    kind, not every cycle, so a missing file does not flood the log.
    """

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self.errors: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, float] = {}

    def run(self, now: float | None = None) -> Batch:
        now = time.time() if now is None else now
        batch = Batch(ts=now)
        for c in self.collectors:
            t0 = time.perf_counter()
            try:
                got = c.collect(now)
            except Exception as e:  # noqa: BLE001 - any collector failure is contained
                key = (c.name, type(e).__name__)
                if key not in self.errors:
                    log.warning("collector %s failed: %s: %s (logged once per kind)", c.name, key[1], e)
                self.errors[key] += 1
            else:
                # Failures the collector survived (one mount of many): it logs them itself,
                # with the detail (which mount) that the kind label leaves out.
                for kind in got.errors:
                    self.errors[(c.name, kind)] += 1
                batch.extend(got)
            finally:
                self.durations[c.name] = time.perf_counter() - t0
        return batch
