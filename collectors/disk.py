"""Block-device I/O from /proc/diskstats, per whole device.

Formulas follow iostat -x (sysstat) so a user comparing sees the same numbers:
r/s and w/s from completed I/Os, rkB/s from sectors (always 512 bytes in diskstats,
whatever the device's block size), r_await = delta(ms reading) / delta(reads), 0 when
nothing completed, and %util = delta(io_ticks) / interval, capped at 100. Raw totals are
node_exporter's (node_disk_read_bytes_total = sectors * 512, io_time in seconds).
"""

from __future__ import annotations

import os

from collectors.base import CounterNames, Rates, read_text
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

SECTOR = 512
# Whether a name is a whole device does not change while the name exists; look again
# now and then in case a device appeared in diskstats before sysfs caught up.
WHOLE_REFRESH_S = 60.0
# Kernels create these by the dozen; one that never did I/O is noise. One with I/O in
# flight is not, even before its first completion: a loop device over a file on a hung
# FUSE or NFS mount may never complete one, and storage.io_hang must see it.
_IDLE_PREFIXES = ("ram", "loop", "zram")
# The statistics after major, minor and name, by Documentation/admin-guide/iostats.rst
# ("Field 1 -- # of reads completed", ...), for `batch.counters` as `diskstats.<dev>.<name>`.
# Older kernels print 11 or 15 of them; zip stops at what the line has.
DISKSTATS_FIELDS = (
    "reads_completed", "reads_merged", "sectors_read", "ms_reading",
    "writes_completed", "writes_merged", "sectors_written", "ms_writing",
    "ios_in_progress", "ms_doing_io", "weighted_ms_doing_io",
    "discards_completed", "discards_merged", "sectors_discarded", "ms_discarding",
    "flush_requests_completed", "ms_flushing",
)
diskstats_keys = CounterNames("diskstats", DISKSTATS_FIELDS)


class DiskCollector:
    name = "disk"
    sources = ('/proc/diskstats',)

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self.settings = settings
        self.rates = Rates()
        self._whole: dict[str, bool] = {}
        self._whole_at: float | None = None
        self._seen: dict[str, float] = {}  # device -> time of its last reading

    def is_whole(self, dev: str) -> bool:
        """A device listed in /sys/block (partitions are not; cciss/c0d0 is cciss!c0d0)."""
        known = self._whole.get(dev)
        if known is None:
            known = self._whole[dev] = os.path.exists(self.roots.sys / "block" / dev.replace("/", "!"))
        return known

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        text = read_text(self.roots.proc / "diskstats")
        if self._whole_at is None or now - self._whole_at >= WHOLE_REFRESH_S or now < self._whole_at:
            self._whole.clear()
            self._whole_at = now
        delta = self.rates.delta
        counters = batch.counters if self.settings.raw_counters else None
        read = 0  # devices given a reading this cycle
        for line in text.splitlines():
            f = line.split()
            if len(f) < 14:
                continue
            dev = f[2]
            reads, rsect, rms = int(f[3]), int(f[5]), int(f[6])
            writes, wsect, wms = int(f[7]), int(f[9]), int(f[10])
            inflight, io_ms = int(f[11]), int(f[12])
            if dev.startswith(_IDLE_PREFIXES) and reads == 0 and writes == 0 and inflight == 0:
                continue
            if not self.is_whole(dev):
                continue
            if counters is not None:
                counters.update(zip(diskstats_keys(dev), map(int, f[3:])))
            batch.add_total("disk_reads_completed_total", reads, device=dev)
            batch.add_total("disk_writes_completed_total", writes, device=dev)
            batch.add_total("disk_read_bytes_total", rsect * SECTOR, device=dev)
            batch.add_total("disk_written_bytes_total", wsect * SECTOR, device=dev)
            batch.add_total("disk_io_time_seconds_total", io_ms / 1000.0, device=dev)
            batch.add("disk_inflight", inflight, device=dev)

            prev = self._seen.get(dev)
            self._seen[dev] = now
            read += 1
            elapsed = None if prev is None else now - prev
            d = [delta((dev, i), v, now) for i, v in enumerate((reads, rsect, rms, writes, wsect, wms, io_ms))]
            if elapsed is None or elapsed <= 0:
                continue
            d_reads, d_rsect, d_rms, d_writes, d_wsect, d_wms, d_io = d
            if d_reads is not None:
                batch.add("disk_read_iops", d_reads / elapsed, device=dev)
                if d_rms is not None:
                    batch.add("disk_await_read", d_rms / d_reads if d_reads else 0.0, device=dev)
            if d_writes is not None:
                batch.add("disk_write_iops", d_writes / elapsed, device=dev)
                if d_wms is not None:
                    batch.add("disk_await_write", d_wms / d_writes if d_writes else 0.0, device=dev)
            if d_rsect is not None:
                batch.add("disk_read_bps", d_rsect * SECTOR / elapsed, device=dev)
            if d_wsect is not None:
                batch.add("disk_write_bps", d_wsect * SECTOR / elapsed, device=dev)
            if d_io is not None:
                batch.add("disk_util", min(100.0, d_io / (elapsed * 1000.0) * 100.0), device=dev)
        # A device that went away (loop detached, disk unplugged) would keep its baselines
        # for ever; a count, not a walk, tells whether one did.
        if len(self._seen) > read:
            self._seen = {d: t for d, t in self._seen.items() if t == now}
            self.rates.sweep(now)
        return batch
