"""Nagios-compatible plugins: run one, read its exit code, output and performance data.

The plugin API is the Nagios one (https://nagios-plugins.org/doc/guidelines.html), which
node-problem-detector's custom plugin monitor also follows: exit 0 ok, 1 warning,
2 critical, 3 (or anything else) unknown; the first line of output is the message,
`|` starts performance data, `'label'=value[UOM];[warn];[crit];[min];[max]`.

A plugin is an argv list run without a shell, in a session of its own so that a timeout
kills every process it started. Stdlib only: the agent could run plugins too.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from diag.model import Sample

# For the reference table in the README: what a plugin check reads is its own business.
SOURCES = ("the exit code, first line and performance data of each configured plugin (config `plugins`)",)

EXIT_STATUS = {0: "ok", 1: "warning", 2: "critical"}
# A plugin that prints megabytes is wrong, not informative: the message and evidence keep this much.
MAX_OUTPUT = 64 * 1024
MAX_LONG_LINES = 50
# After the kill, how long the pipes may stay open (a grandchild that left the session holds them).
REAP_S = 2.0
POLL_S = 0.05
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_METRIC = 200  # the ingest API's limit on a metric name

# UOM -> (unit, factor to that unit, kind). Bytes multiples are binary, as the
# monitoring-plugins' own check_disk and check_swap print them.
UOMS: dict[str, tuple[str, float, str]] = {
    "": ("", 1.0, "gauge"),
    "s": ("s", 1.0, "gauge"), "ms": ("s", 1e-3, "gauge"), "us": ("s", 1e-6, "gauge"),
    "%": ("percent", 1.0, "gauge"),
    "B": ("bytes", 1.0, "gauge"), "KB": ("bytes", 1024.0, "gauge"), "MB": ("bytes", 1024.0 ** 2, "gauge"),
    "GB": ("bytes", 1024.0 ** 3, "gauge"), "TB": ("bytes", 1024.0 ** 4, "gauge"),
    "c": ("count", 1.0, "counter"),
}

# One perfdata item: a label (quoted, with '' for a quote, or bare) '=' the rest up to a space.
_ITEM = re.compile(r"\s*('(?:[^']|'')*'|[^'=\s][^=\s]*)=(\S*)")
_VALUE = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([a-zA-Z%]*)$")


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """One configured plugin (config `plugins.<name>`), as a plain value."""

    name: str
    command: tuple[str, ...]
    timeout: float = 10.0
    interval: float = 60.0
    user: str | None = None  # None: "nobody" when the service is root, else the service's own user
    run_as_root: bool = False
    severity: str = "critical"
    recommendation: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Perf:
    label: str
    value: float  # in `unit` (ms and KB converted)
    uom: str
    unit: str
    kind: str
    warn: str = ""
    crit: str = ""
    min: float | None = None
    max: float | None = None


@dataclass(slots=True)
class PluginRun:
    """What one run of a plugin gave: the status its exit code means, and what it said."""

    name: str
    status: str  # ok, warning, critical, unknown
    message: str
    exit_code: int | None
    started: float
    duration: float
    user: str
    long_output: list[str] = field(default_factory=list)
    perfdata: list[Perf] = field(default_factory=list)
    timed_out: bool = False
    stderr: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["perfdata"] = [{**asdict(p), "metric": metric_name(self.name, p.label)} for p in self.perfdata]
        return d


def metric_name(plugin: str, label: str) -> str:
    """`plugin_<name>_<label>`, the label reduced to what a metric name may hold."""
    clean = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", label)).strip("_") or "value"
    return f"plugin_{plugin}_{clean}"[:MAX_METRIC]


def parse_output(text: str) -> tuple[str, list[str], list[Perf]]:
    """(message, long output lines, performance data) of a plugin's stdout, by the Nagios
    guidelines: `TEXT | PERF` on the first line, then long text whose first `|` starts
    perfdata that runs to the end of the output."""
    lines = text.splitlines()
    first = lines[0] if lines else ""
    message, _, perf_text = first.partition("|")
    long_lines: list[str] = []
    perf_parts = [perf_text]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
            continue
        before, bar, after = line.partition("|")
        if before.strip() or not bar:
            long_lines.append(before.rstrip())
        if bar:
            in_perf = True
            perf_parts.append(after)
    return message.strip(), long_lines, parse_perfdata(" ".join(perf_parts))


def parse_perfdata(text: str) -> list[Perf]:
    """The items of a perfdata string; an item that breaks the format is skipped, as is a
    value `U` (the plugin could not determine it)."""
    out: list[Perf] = []
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None:
            nxt = text.find(" ", pos + 1)  # a malformed item: on to the next one
            if nxt < 0:
                break
            pos = nxt
            continue
        pos = m.end()
        label = m.group(1)
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        fields = m.group(2).split(";")
        v = _VALUE.match(fields[0])
        if not label or v is None or v.group(2) not in UOMS:
            continue
        value = float(v.group(1))
        unit, factor, kind = UOMS[v.group(2)]
        if not math.isfinite(value):
            continue
        bounds = [_number(f, factor) for f in (fields[3:5] + ["", ""])[:2]]
        out.append(Perf(label, value * factor, v.group(2), unit, kind,
                        fields[1] if len(fields) > 1 else "", fields[2] if len(fields) > 2 else "",
                        bounds[0], bounds[1]))
    return out


def _number(text: str, factor: float) -> float | None:
    try:
        x = float(text) * factor
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def samples(run: PluginRun) -> list[Sample]:
    """The run's performance data as samples of `plugin_<name>_<label>`, one per label."""
    seen: dict[str, Sample] = {}
    for p in run.perfdata:
        name = metric_name(run.name, p.label)
        seen.setdefault(name, Sample(name, {}, p.value, run.started + run.duration))
    return list(seen.values())


def account(spec: PluginSpec) -> tuple[str, int | None, int | None]:
    """(user name, uid, gid) to run as; uid None: as the service itself. Only root can
    switch, so only a root service defaults to `nobody`; ValueError says what is wrong."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        if spec.user not in (None, me):
            raise ValueError(f"cannot run as {spec.user}: the service runs as {me}, not root")
        return me, None, None
    if spec.run_as_root:
        return "root", None, None
    try:
        pw = pwd.getpwnam(spec.user or "nobody")
    except KeyError:
        raise ValueError(f"no user {spec.user or 'nobody'!r} on this machine") from None
    if pw.pw_uid == 0:
        raise ValueError(f"{pw.pw_name} is root: set run_as_root: true to mean it")
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def run(spec: PluginSpec, *, started: Callable[[subprocess.Popen], None] | None = None,
        now: Callable[[], float] = time.time) -> PluginRun:
    """Run the plugin once, within its timeout. Never raises for the plugin's faults: a
    plugin that cannot start, dies by a signal or overruns is `unknown` saying so.
    `started` is told the process, so an owner can kill it when it stops."""
    t0, m0 = now(), time.monotonic()
    try:
        user, uid, gid = account(spec)
    except ValueError as e:
        return PluginRun(spec.name, "unknown", str(e), None, t0, 0.0, spec.user or "")
    home = pwd.getpwuid(uid).pw_dir if uid is not None else os.environ.get("HOME", "/")
    try:
        proc = subprocess.Popen(
            list(spec.command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd="/", env={"PATH": SAFE_PATH, "LC_ALL": "C", "HOME": home, "USER": user, "LOGNAME": user},
            start_new_session=True, close_fds=True, user=uid, group=gid,
            extra_groups=[] if uid is not None else None)
    except OSError as e:
        return PluginRun(spec.name, "unknown", f"cannot run {spec.command[0]}: {e.strerror or e}", None, t0,
                         time.monotonic() - m0, user)
    if started is not None:
        started(proc)
    timed_out = False
    deadline = m0 + spec.timeout
    while True:
        # In slices, not to EOF: a child left in the background holds the pipes open after
        # the plugin itself has exited, and its exit is what ends the run.
        try:
            out, err = proc.communicate(timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if proc.poll() is None and time.monotonic() < deadline:
                continue
        timed_out = proc.returncode is None
        kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=REAP_S)
        except subprocess.TimeoutExpired:  # a descendant that left the session holds the pipes
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
            out, err = b"", b""
        break
    # What the plugin left behind in its session dies with it: a run leaves no process.
    kill_group(proc.pid)
    duration = time.monotonic() - m0
    text = (out or b"")[:MAX_OUTPUT].decode("utf-8", "replace")
    stderr = (err or b"")[:4096].decode("utf-8", "replace").strip()
    message, long_lines, perf = parse_output(text)
    code = proc.returncode
    if timed_out:
        return PluginRun(spec.name, "unknown", f"timed out after {spec.timeout:g}s: killed", None, t0, duration,
                         user, long_lines[:MAX_LONG_LINES], perf, True, stderr)
    if code < 0:
        status, message = "unknown", f"killed by signal {-code}" + (f": {message}" if message else "")
    else:
        status = EXIT_STATUS.get(code, "unknown")
        if not message:
            message = f"exit {code} with no output" + (f" ({stderr.splitlines()[0]})" if stderr else "")
    return PluginRun(spec.name, status, message, code, t0, duration, user, long_lines[:MAX_LONG_LINES], perf,
                     False, stderr)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
