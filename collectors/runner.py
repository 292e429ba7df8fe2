"""Runs every collector once per cycle; one that fails or hangs does not stop the others."""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import Counter

from collectors.base import Collector
from diag.model import Batch, KernelLine, Signal

log = logging.getLogger(__name__)

# What a collector may take before the cycle goes on without it, as a share of the
# interval. Generous: a slow but working collector (tens of thousands of processes) must
# not lose every reading, and two collectors stuck at once must still fit one interval.
BUDGET_SHARE = 0.4
MIN_BUDGET = 0.5
DEFAULT_BUDGET = 5.0


class _Job:
    """One cycle's collectors, worked through in order by one runner thread at a time."""

    __slots__ = ("now", "todo", "cursor", "current", "results", "done", "lock")

    def __init__(self, now: float, todo: list[Collector], lock: threading.Lock) -> None:
        self.now = now
        self.todo = todo
        self.cursor = 0
        self.current: tuple[int, float] | None = None  # (index in todo, monotonic start)
        self.results: dict[int, tuple[Batch | BaseException, float]] = {}
        self.done = threading.Event()
        self.lock = lock


class _Runner:
    """A daemon thread that runs the collectors of the jobs it is handed, in order.

    Daemon, and never joined: a runner stuck in a read of a hung mount must not keep the
    process from exiting on SIGTERM. When the cycle abandons it, it finishes only the call
    it is stuck in (reporting it late to the cycle), then ends; a new runner takes the rest.
    """

    # How often an idle runner looks whether its cycle is gone.
    IDLE_CHECK_S = 5.0

    def __init__(self, cycle: "CollectionCycle") -> None:
        # Weak: a runner waiting for work must not keep a dropped cycle, and with it every
        # collector and the files they hold open, alive for the life of the process.
        self.cycle = weakref.ref(cycle)
        self.abandoned = False
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="collector-runner", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.IDLE_CHECK_S)
            except queue.Empty:
                if self.cycle() is None:
                    return
                continue
            if not self._work(job):
                return
            del job  # the finished job holds the collectors: keep nothing while idle

    def _work(self, job: _Job) -> bool:
        """Runs `job` from its cursor on; False once this runner was abandoned."""
        while True:
            with job.lock:
                if self.abandoned:
                    return False
                if job.cursor >= len(job.todo):
                    job.current = None
                    job.done.set()
                    return True
                i = job.cursor
                job.cursor += 1
                t0 = time.perf_counter()
                job.current = (i, t0)
            c = job.todo[i]
            try:
                got: Batch | BaseException = c.collect(job.now)
            except Exception as e:  # noqa: BLE001 - any collector failure is contained
                got = e
            took = time.perf_counter() - t0
            with job.lock:
                if self.abandoned:
                    cycle = self.cycle()
                    if cycle is not None:
                        cycle._returned_late(c, got, took)
                    return False
                job.results[i] = (got, took)
                # Cleared with the result, under one lock: else the cycle could take this
                # finished call for a stuck one and skip the collector for good.
                job.current = None


class CollectionCycle:
    """Runs collectors in order and merges their batches into one.

    Errors are counted per (collector, error kind) for `/metrics` and logged once per
    kind, not every cycle, so a missing file does not flood the log.

    The collectors run on a runner thread while the caller waits at most `budget`
    seconds for each. One that takes longer is abandoned where it is stuck (a statvfs of a
    dead NFS server, a read of a hung FUSE file): its readings of this cycle are lost, the
    collectors after it run on a fresh runner, and until its call returns it is skipped
    and counted as stalled, never called a second time on top of the stuck call. Its
    signals (kernel lines) still reach the next cycle when it does return, since they are
    happenings with their own times, unlike samples that belong to the cycle's instant.

    `interval` is what the cycle is scheduled at: a cycle longer than that is an overrun.
    Stalls and overruns are logged once when they start and once when they end.
    """

    def __init__(self, collectors: list[Collector], interval: float | None = None,
                 budget: float | None = None) -> None:
        self.collectors = collectors
        self.interval = interval
        if budget is None:
            budget = max(MIN_BUDGET, BUDGET_SHARE * interval) if interval else DEFAULT_BUDGET
        self.budget = budget
        self.errors: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, float] = {}
        # name -> (wall-clock start, monotonic start) of a call still running past its budget
        self.stalled: dict[str, tuple[float, float]] = {}
        self.stalls: Counter[str] = Counter()  # cycles that went on without each collector
        self.overruns = 0
        self.last_duration: float | None = None
        self._overrunning = False
        self._late_signals: list[Signal] = []
        self._late_lines: list[KernelLine] = []
        self._lock = threading.Lock()
        self._runner: _Runner | None = None

    def run(self, now: float | None = None) -> Batch:
        t_start = time.perf_counter()
        now = time.time() if now is None else now
        batch = Batch(ts=now)
        with self._lock:
            stuck = dict(self.stalled)
            late, self._late_signals = self._late_signals, []
            late_lines, self._late_lines = self._late_lines, []
        todo = [c for c in self.collectors if c.name not in stuck]
        for name, (_, mono) in stuck.items():
            self.stalls[name] += 1
            self.durations[name] = t_start - mono
        job = _Job(now, todo, self._lock)
        if todo:
            self._wait(job)
        for i, c in enumerate(todo):
            got = job.results.get(i)
            if got is None:  # abandoned this cycle
                continue
            self._merge(batch, c, *got)
        batch.signals.extend(late)
        batch.kernel_lines.extend(late_lines)
        with self._lock:
            stalled_now = set(self.stalled)
        for c in self.collectors:
            batch.add("collector_stalled", 1.0 if c.name in stalled_now else 0.0, collector=c.name)
        self._judge_overrun(time.perf_counter() - t_start, stalled_now)
        return batch

    def _wait(self, job: _Job) -> None:
        runner = self._runner
        if runner is None or runner.abandoned:
            runner = self._runner = _Runner(self)
        runner.jobs.put(job)
        while not job.done.is_set():
            with job.lock:
                if job.done.is_set():
                    break
                cur = job.current
                left = self.budget if cur is None else cur[1] + self.budget - time.perf_counter()
                if cur is not None and left <= 0:
                    self._abandon(job, cur)
                    # The rest of this cycle's collectors go on without the stuck one.
                    runner = self._runner = _Runner(self)
                    runner.jobs.put(job)
                    continue
            job.done.wait(max(left, 0.001))

    def _abandon(self, job: _Job, cur: tuple[int, float]) -> None:
        """Called with the job's lock held: the runner stuck in `job.todo[cur[0]]` is let go."""
        assert self._runner is not None
        self._runner.abandoned = True
        c = job.todo[cur[0]]
        waited = time.perf_counter() - cur[1]
        self.stalled[c.name] = (time.time() - waited, cur[1])
        self.stalls[c.name] += 1
        self.durations[c.name] = waited
        job.current = None
        log.warning("collector %s has not returned after %.1f s: its readings are dropped and it is skipped "
                    "until its call returns", c.name, waited)

    def _returned_late(self, c: Collector, got: Batch | BaseException, took: float) -> None:
        """Called with the lock held, on the abandoned runner, when the stuck call ends."""
        self.stalled.pop(c.name, None)
        self.durations[c.name] = took
        if isinstance(got, BaseException):
            self.errors[(c.name, type(got).__name__)] += 1
        else:
            self._late_signals.extend(got.signals)
            self._late_lines.extend(got.kernel_lines)
        log.warning("collector %s returned after %.1f s: collecting it again", c.name, took)

    def _merge(self, batch: Batch, c: Collector, got: Batch | BaseException, took: float) -> None:
        self.durations[c.name] = took
        if isinstance(got, BaseException):
            key = (c.name, type(got).__name__)
            if key not in self.errors:
                log.warning("collector %s failed: %s: %s (logged once per kind)", c.name, key[1], got)
            self.errors[key] += 1
            return
        # Failures the collector survived (one mount of many): it logs them itself,
        # with the detail (which mount) that the kind label leaves out.
        for kind in got.errors:
            self.errors[(c.name, kind)] += 1
        batch.extend(got)

    def _judge_overrun(self, took: float, stalled: set[str]) -> None:
        self.last_duration = took
        if self.interval is None:
            return
        if took > self.interval:
            self.overruns += 1
            if not self._overrunning:
                self._overrunning = True
                slowest = max(self.durations, key=self.durations.__getitem__, default="?")
                cause = (f"stalled: {', '.join(sorted(stalled))}" if stalled
                         else f"slowest collector: {slowest}, {self.durations.get(slowest, 0):.1f} s")
                log.warning("collection cycle took %.1f s, longer than its %g s interval (%s); logged again "
                            "when cycles fit the interval", took, self.interval, cause)
        elif self._overrunning:
            self._overrunning = False
            log.warning("collection cycles fit the %g s interval again (last: %.2f s)", self.interval, took)
