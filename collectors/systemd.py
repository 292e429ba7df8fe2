"""systemd units: failed units and units restarting in a loop, through `systemctl`.

systemctl, not D-Bus: it works wherever systemd runs (an agent in a minimal image has no
D-Bus library, and `jeepney` is not a dependency), and its plain listing and `show`
output have not changed since systemd 2xx, unlike `--output=json` (250+ only).

A listing spawns processes and waits on PID 1, which can hang (a PID 1 busy reloading, a
broken D-Bus), so it is never made on the collection thread: a background thread
refreshes it at most every REFRESH_S, each command killed at its deadline, one refresh
at a time, and every cycle reports the last answer. Without `/run/systemd/system` (the
test systemd's own sd_booted() makes) there is no systemd: no series, no process spawned.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch

log = logging.getLogger(__name__)

REFRESH_S = 60.0
# Per command; a listing is two commands. systemctl answers in milliseconds when PID 1 is well.
DEADLINE_S = 5.0
# Per-unit series are bounded: a host with hundreds of broken units stays cheap, and the
# count gauge still says how many there are.
MAX_UNITS = 20
# A unit whose NRestarts rose is "restarting" for this long: a loop with a long RestartSec
# rises only once per period.
LOOP_WINDOW_S = 3600.0
# A unit that left the failed state keeps a 0 series this long, so a chart shows it recover.
RECOVERED_KEEP_S = 600.0
SHOW_PROPERTIES = "Id,ActiveState,SubState,Result,NRestarts,InactiveEnterTimestamp"
JOURNAL_LINES = 10


def booted(roots: Roots) -> bool:
    """True when systemd is PID 1 of the machine `roots` describes (sd_booted()'s test)."""
    return os.path.isdir(roots.root / "run" / "systemd" / "system")


def run(argv: list[str], timeout: float) -> str:
    """stdout of a command; raises TimeoutError past `timeout` (the child killed),
    CalledProcessError on a failing exit, OSError when it cannot start.

    Output goes to memory files, not pipes: communicate() wakes for every chunk a child
    writes (50 units shown one by one cost 3 ms of our CPU), a memfd is read once. And not
    subprocess.run: after killing a timed-out child it waits for it without a deadline,
    and a child stuck in D state would hold the caller with it.
    """
    with open(os.memfd_create("diag-systemctl-out", os.MFD_CLOEXEC), "w+b") as out, \
            open(os.memfd_create("diag-systemctl-err", os.MFD_CLOEXEC), "w+b") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                # no colours, no pager, untranslated words: the output is parsed
                                env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C"})
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass  # unkillable for now (D state): Popen reaps it later, nobody waits on it
            raise TimeoutError(f"{argv[0]} {argv[1]} did not answer within {timeout:g} s (killed)") from None
        text = os.pread(out.fileno(), 1 << 24, 0).decode("utf-8", "replace")
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, argv, text, os.pread(err.fileno(), 4096, 0))
    return text


@dataclass(slots=True)
class Unit:
    name: str
    active: str
    sub: str
    result: str = ""
    restarts: int | None = None
    since: str = ""

    @property
    def failed(self) -> bool:
        return self.active == "failed"

    @property
    def auto_restart(self) -> bool:
        # "auto-restart", and "auto-restart-queued" since systemd 254
        return self.sub.startswith("auto-restart")

    def to_json(self) -> dict:
        return {"unit": self.name, "active_state": self.active, "sub_state": self.sub, "result": self.result,
                "restarts": self.restarts, "since": self.since}


@dataclass(slots=True)
class Listing:
    units: dict[str, Unit] = field(default_factory=dict)

    @property
    def failed(self) -> list[Unit]:
        return sorted((u for u in self.units.values() if u.failed), key=lambda u: u.name)


def parse_list_units(text: str) -> dict[str, Unit]:
    """`systemctl list-units --all --plain --no-legend`: UNIT LOAD ACTIVE SUB DESCRIPTION."""
    units = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if parts and parts[0] in ("●", "*"):  # a failed unit's marker, when --plain is not honoured
            parts = parts[1:]
        if len(parts) >= 4:
            units[parts[0]] = Unit(parts[0], parts[2], parts[3])
    return units


def parse_show(text: str) -> list[dict[str, str]]:
    """`systemctl show -p ... a b`: one KEY=value block per unit, blocks split by blank lines."""
    blocks, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            cur[key] = value
    if cur:
        blocks.append(cur)
    return blocks


def list_units(timeout: float | None = None) -> Listing:
    """Every loaded unit's state, with the result, restart count and failure time of
    the services and of every failed or restarting unit."""
    timeout = DEADLINE_S if timeout is None else timeout
    units = parse_list_units(run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager",
                                  "--full"], timeout))
    # NRestarts exists for services only; a failed mount or socket still has a Result.
    ask = [u.name for u in units.values() if u.name.endswith(".service") or u.failed or u.auto_restart]
    if ask:
        text = run(["systemctl", "show", f"--property={SHOW_PROPERTIES}", "--no-pager", "--", *ask], timeout)
        for block in parse_show(text):
            u = units.get(block.get("Id", ""))
            if u is None:
                continue
            u.result = block.get("Result", "")
            u.since = block.get("InactiveEnterTimestamp", "")
            try:
                u.restarts = int(block["NRestarts"])
            except (KeyError, ValueError):
                pass
            # show is the later look: a unit that changed between the two commands
            u.active = block.get("ActiveState", u.active) or u.active
            u.sub = block.get("SubState", u.sub) or u.sub
    return Listing(units)


def journal_tail(unit: str, timeout: float, lines: int = JOURNAL_LINES) -> list[str]:
    text = run(["journalctl", "-u", unit, "-n", str(lines), "-o", "cat", "--no-pager", "-q"], timeout)
    return text.splitlines()[-lines:]


class SystemdCollector:
    name = "systemd"
    sources = ('`systemctl list-units` and `systemctl show`',)

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._marker = str(roots.root / "run" / "systemd" / "system")
        self._lock = threading.Lock()
        self._listing: Listing | None = None
        self._fresh: Listing | None = None  # handed over by the refresh thread
        self._error: BaseException | None = None
        self._refresh: tuple[threading.Thread, float] | None = None  # (thread, monotonic start)
        self._due = 0.0  # monotonic time of the next refresh
        self._stall_logged = False
        self._error_logged: set[str] = set()
        # unit -> (NRestarts at the last listing)
        self._restarts: dict[str, int] = {}
        # unit -> restarts seen since the last cycle reported them
        self._pending: dict[str, int] = {}
        # unit -> time its NRestarts last rose or it was seen waiting to restart
        self._looping: dict[str, float] = {}
        # unit -> (its last result, when it left the failed state)
        self._recovered: dict[str, tuple[str, float]] = {}

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        try:
            os.stat(self._marker)  # booted(), without a Path built every cycle
        except OSError:
            return batch
        self._poll(now, batch)
        listing = self._listing
        if listing is None:
            return batch
        failed = listing.failed
        batch.add("systemd_units_failed", len(failed))
        for u in failed[:MAX_UNITS]:
            batch.add("systemd_unit_failed", 1, unit=u.name, result=u.result or "unknown")
        if self._recovered:
            for name, (result, since) in list(self._recovered.items()):
                if now - since > RECOVERED_KEEP_S:
                    del self._recovered[name]
                else:
                    batch.add("systemd_unit_failed", 0, unit=name, result=result or "unknown")
        if self._looping:
            for name in sorted(self._looping, key=self._looping.__getitem__, reverse=True)[:MAX_UNITS]:
                if now - self._looping[name] > LOOP_WINDOW_S:
                    continue
                batch.add("systemd_unit_restarts", self._pending.pop(name, 0), unit=name)
                u = listing.units.get(name)
                if u is not None and u.restarts is not None:
                    batch.add_total("systemd_unit_restarts_total", u.restarts, unit=name)
            self._looping = {k: t for k, t in self._looping.items() if now - t <= LOOP_WINDOW_S}
            self._pending.clear()
        return batch

    def _poll(self, now: float, batch: Batch) -> None:
        """Takes a finished refresh, starts one when due and none is running."""
        mono = time.monotonic()
        with self._lock:
            fresh, self._fresh = self._fresh, None
            error, self._error = self._error, None
        if fresh is not None:
            self._take(fresh, now)
        if error is not None:
            kind = f"systemctl:{type(error).__name__}"
            batch.errors.append(kind)
            if kind not in self._error_logged:
                self._error_logged.add(kind)
                log.warning("listing systemd units failed (%s): the last listing stays; logged once per kind", error)
        running = self._refresh
        if running is not None:
            thread, started = running
            if thread.is_alive():
                # Each command is killed at its deadline; a refresh alive past both is held
                # by an unkillable child. It is not stacked on: the next one waits for it.
                if mono - started > 2 * DEADLINE_S + 2:
                    batch.errors.append("systemctl:Stalled")
                    if not self._stall_logged:
                        self._stall_logged = True
                        log.warning("systemctl has not returned for %.0f s: no new listing is started until it "
                                    "does, the last one stays", mono - started)
                return
            self._refresh = None
            self._stall_logged = False
        if mono >= self._due:
            self._due = mono + REFRESH_S
            t = threading.Thread(target=self._refresh_now, name="diag-systemd", daemon=True)
            self._refresh = (t, mono)
            t.start()

    def _refresh_now(self) -> None:
        try:
            listing = list_units()
        except Exception as e:  # noqa: BLE001 - handed to the next cycle, which counts it
            with self._lock:
                self._error = e
            return
        with self._lock:
            self._fresh = listing

    def _take(self, listing: Listing, now: float) -> None:
        old = self._listing
        for u in listing.units.values():
            if u.restarts is not None:
                before = self._restarts.get(u.name)
                if before is not None and u.restarts > before:
                    self._pending[u.name] = self._pending.get(u.name, 0) + u.restarts - before
                    self._looping[u.name] = now
                self._restarts[u.name] = u.restarts
            if u.auto_restart:
                self._looping[u.name] = now
        if len(self._restarts) > len(listing.units):  # units removed since: forget their counts
            self._restarts = {k: v for k, v in self._restarts.items() if k in listing.units}
        if old is not None:
            for u in old.failed:
                later = listing.units.get(u.name)
                if later is None or not later.failed:  # unloaded after reset-failed counts as recovered
                    self._recovered[u.name] = (u.result, now)
        for u in listing.failed:
            self._recovered.pop(u.name, None)
        self._listing = listing

    def wait_refreshed(self, timeout: float) -> bool:
        """Waits for the refresh in flight (tests, `diag collect --once`); True when none is left."""
        running = self._refresh
        if running is not None:
            running[0].join(timeout)
            return not running[0].is_alive()
        return True


# -- the facts snapshot's part --------------------------------------------------------------------

FACTS_BUDGET_S = 4.0  # of the facts snapshot's 10 s; the other parts need theirs
FACTS_UNITS = 5


def facts(roots: Roots, budget: float = FACTS_BUDGET_S) -> dict:
    """The failed and restarting units with their result and last journal lines, for
    state.failed_units' evidence. Taken with the facts (every few minutes, and at a
    diagnosis someone asked for), not every cycle: journalctl reads files on disk."""
    if not booted(roots):
        return {"present": False, "reason": f"systemd is not running ({roots.root / 'run/systemd/system'} is absent)"}
    end = time.monotonic() + budget
    try:
        listing = list_units(min(DEADLINE_S, budget))
    except Exception as e:  # noqa: BLE001 - the reason is the evidence
        return {"present": True, "error": f"systemctl: {type(e).__name__}: {e}", "failed": [], "restarting": []}
    failed = listing.failed
    restarting = sorted((u for u in listing.units.values() if not u.failed and (u.auto_restart or (u.restarts or 0) > 0)),
                        key=lambda u: -(u.restarts or 0))
    out: dict = {"present": True, "failed_total": len(failed), "failed": [], "restarting": []}
    for key, units in (("failed", failed[:FACTS_UNITS]), ("restarting", restarting[:FACTS_UNITS])):
        for u in units:
            entry = u.to_json()
            left = end - time.monotonic()
            if left <= 0.05:
                entry["lines_error"] = "the facts budget for journal lines ran out"
            else:
                try:
                    entry["lines"] = journal_tail(u.name, min(DEADLINE_S, left))
                except Exception as e:  # noqa: BLE001
                    entry["lines_error"] = f"journalctl: {type(e).__name__}: {e}"
            out[key].append(entry)
    return out
