"""State: uptime, boot time and boot id, and reboots seen across restarts of the service."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from collectors.base import read_text
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch, Signal

log = logging.getLogger(__name__)

STATE_FILE = "boot.json"


def read_btime(proc: Path) -> int:
    """Boot time (epoch seconds) from the `btime` line of /proc/stat."""
    text = read_text(proc / "stat")
    at = text.find("\nbtime ")
    if at < 0:
        raise ValueError(f"no btime line in {proc / 'stat'}")
    return int(text[at + 7 : text.find("\n", at + 7)])


class StateCollector:
    name = "state"
    sources = ('/proc/uptime', '/proc/stat (btime)', '/proc/sys/kernel/random/boot_id')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._state_file = Path(settings.state_dir) / STATE_FILE if settings.state_dir else None
        # The boot this collector has recorded (id, start); None until the first cycle looked.
        self._known_boot_id: str | None = None
        self._known_boot_time: int | None = None
        self._write_failed = False
        # Readable by the agent and facts without another file read.
        self.boot_id: str | None = None
        self.boot_time: int | None = None

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        batch.add("uptime", float(read_text(self.roots.proc / "uptime").split()[0]))
        boot_id = read_text(self.roots.proc / "sys" / "kernel" / "random" / "boot_id").strip()
        # btime only changes with the boot id; /proc/stat is long on big machines, so read it once.
        if boot_id != self.boot_id or self.boot_time is None:
            self.boot_time = read_btime(self.roots.proc)
        self.boot_id, btime = boot_id, self.boot_time
        batch.counters["stat.btime"] = btime

        if boot_id == self._known_boot_id:
            return batch
        if self._known_boot_id is not None:
            previous, previous_btime = self._known_boot_id, self._known_boot_time
        else:
            previous, previous_btime = self._load()
        if previous is not None and previous != boot_id:
            when = datetime.fromtimestamp(btime, timezone.utc).isoformat()
            labels = {"boot_id": boot_id, "previous_boot_id": previous}
            if previous_btime is not None:
                # The boot that ended is [previous_boot_time, ts): only its faults made this reboot.
                labels["previous_boot_time"] = str(previous_btime)
            batch.signals.append(
                Signal(
                    ts=float(btime),
                    kind="reboot",
                    message=f"the machine rebooted (booted at {when}; boot id {previous} before, {boot_id} now)",
                    labels=labels,
                )
            )
        self._save(boot_id, btime)
        self._known_boot_id, self._known_boot_time = boot_id, btime
        return batch

    def _load(self) -> tuple[str | None, int | None]:
        """The boot id and boot time a previous run recorded; (None, None) on a first run or
        an unreadable file, a None time when the file has none."""
        if self._state_file is None:
            return None, None
        try:
            data = json.loads(self._state_file.read_text())
            boot_id = str(data["boot_id"])
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError) as e:
            # A damaged file must not invent a reboot: treat it as a first run.
            log.warning("ignoring unreadable %s: %s", self._state_file, e)
            return None, None
        btime = data.get("boot_time")
        return boot_id, btime if isinstance(btime, int) and not isinstance(btime, bool) else None

    def _save(self, boot_id: str, btime: int) -> None:
        if self._state_file is None:
            return
        directory = self._state_file.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".boot.", dir=directory)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"boot_id": boot_id, "boot_time": btime}, f)
                    f.flush()
                    os.fsync(f.fileno())
                # A crash leaves the old or the new file, never half of one.
                os.replace(tmp, self._state_file)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            # Keep collecting: the boot is remembered in memory for this run.
            if not self._write_failed:
                log.warning("cannot record the boot id in %s: %s", self._state_file, e)
            self._write_failed = True
