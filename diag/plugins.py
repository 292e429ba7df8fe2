"""Plugin checks' runner: each plugin on its own interval, in a small pool of its own.

Off the collection thread and off the scheduler's own pool, so a plugin that hangs
holds only its pool slot until its timeout kills it, never a collection. A plugin
still running is not started again (APScheduler's max_instances=1, and a lock per
plugin for runs asked for by hand).

The last run of each plugin is kept in memory and in diag.db (a restart still has it
for the next diagnosis); its performance data go to the store as samples of
`plugin_<name>_<label>`, like any pushed custom metric.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from collectors import plugins as runner
from collectors.plugins import PluginRun, PluginSpec
from diag.store import WriteStore

log = logging.getLogger(__name__)

EXECUTOR = "plugins"
MAX_WORKERS = 4


class Plugins:
    def __init__(self, specs: Mapping[str, PluginSpec], *, instance_id: str, store: WriteStore | None,
                 db: Any) -> None:
        """`store` None: the samples go nowhere (an engine behind --store-url scrapes our /metrics)."""
        self.specs = dict(specs)
        self.instance_id, self._store, self._db = instance_id, store, db
        self._last: dict[str, dict[str, Any]] = {}
        self._locks = {name: threading.Lock() for name in self.specs}
        self._running: dict[str, subprocess.Popen] = {}
        self._guard = threading.Lock()
        self._closed = False

    def run(self, name: str) -> PluginRun | None:
        """Run one plugin now and keep its result; None when it is still running."""
        lock = self._locks[name]
        if self._closed or not lock.acquire(blocking=False):
            return None
        try:
            result = runner.run(self.specs[name], started=lambda p: self._track(name, p))
        finally:
            with self._guard:
                self._running.pop(name, None)
            lock.release()
        if result.timed_out:
            log.warning("plugin %s timed out after %gs and was killed", name, self.specs[name].timeout)
        self._keep(result)
        return result

    def run_all(self) -> list[PluginRun | None]:
        return [self.run(name) for name in self.specs]

    def _track(self, name: str, proc: subprocess.Popen) -> None:
        with self._guard:
            self._running[name] = proc
        if self._closed:
            runner.kill_group(proc.pid)

    def _keep(self, result: PluginRun) -> None:
        record = result.to_json()
        self._last[result.name] = record
        try:
            self._db.set_kv(f"plugin:{self.instance_id}:{result.name}", record)
        except Exception as e:  # noqa: BLE001 - a full disk loses the copy, not the result in memory
            log.warning("plugin %s: result not saved: %s", result.name, e)
        batch = runner.samples(result)
        if batch and self._store is not None:
            try:
                self._store.write(self.instance_id, batch)
            except Exception as e:  # noqa: BLE001 - the check still has its result
                log.warning("plugin %s: performance data not stored: %s", result.name, e)

    def result(self, name: str) -> dict[str, Any] | None:
        """The last run of the plugin, as a dict (PluginRun.to_json), or None before the first."""
        if name not in self.specs:
            return None
        if name not in self._last:
            stored = self._db.get_kv(f"plugin:{self.instance_id}:{name}")
            if stored is None:
                return None
            self._last[name] = stored
        return self._last[name]

    def unit(self, metric: str) -> str:
        """The unit of a plugin's perfdata series (from its UOM), "" when not one of theirs."""
        for name in self.specs:
            last = self.result(name) if metric.startswith(f"plugin_{name}_") else None
            for p in (last or {}).get("perfdata", ()):
                if p["metric"] == metric:
                    return p["unit"]
        return ""

    def schedule(self, sched: Any) -> None:
        """A job per plugin on the scheduler, in an executor of their own."""
        if not self.specs:
            return
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.triggers.interval import IntervalTrigger

        sched.add_executor(ThreadPoolExecutor(min(MAX_WORKERS, len(self.specs))), EXECUTOR)
        now = datetime.now(timezone.utc)
        for i, (name, spec) in enumerate(self.specs.items()):
            # Staggered by a second each, so ten plugins do not all start in one instant.
            sched.add_job(self.run, IntervalTrigger(seconds=spec.interval), args=[name], id=f"plugin.{name}",
                          executor=EXECUTOR, max_instances=1, coalesce=True,
                          misfire_grace_time=max(1, int(spec.interval)), next_run_time=now + timedelta(seconds=1 + i))

    def close(self) -> None:
        """Kill what is running: a stopping service leaves no plugin behind."""
        self._closed = True
        with self._guard:
            running = list(self._running.values())
        for proc in running:
            runner.kill_group(proc.pid)


def specs(plugins: Mapping[str, Any]) -> dict[str, PluginSpec]:
    """The config's `plugins` (diag.config.Plugin by name) as plain values."""
    return {name: PluginSpec(name, tuple(p.command), p.timeout, p.interval, p.user, p.run_as_root, p.severity,
                             p.recommendation, p.description) for name, p in plugins.items()}
