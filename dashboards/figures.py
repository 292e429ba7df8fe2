"""Plotly figures for the instance page, as plain figure dicts.

Plain dicts, not `plotly.graph_objects.Figure`: building and validating a graph object
costs milliseconds per trace, and the page has dozens of traces; the unit tests check
every dict against plotly's own validator instead. Times are UNIX milliseconds on a
`date` axis, which plotly shows in UTC, like every other time on the dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd



@dataclass(frozen=True)
class Line:
    """One query of a chart: a metric, its statistic, how its series are named."""

    metric: str
    name: str = ""  # fixed name, or a prefix for the grouped label values
    by: str | None = None  # sum the series over everything but this label (bandwidth by scope)
    label: str | None = None  # one series per value of this label (devices, mountpoints)
    agg: str = "avg"
    # With `label`: only the `top` values with the highest mean over the range get a
    # trace of their own; the others (and the collector's own "other") are folded into
    # one "other" trace: summed, or their highest for shares such as filesystem usage.
    top: int = 0
    fold: str = "sum"


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    lines: tuple[Line, ...]
    axis: str  # the unit shown on the y axis
    kind: str = "line"  # or "bar" for per-interval counts
    percent: bool = False
    help: str = ""
    wide: bool = False  # a row of its own on the page; the others go two to a row
    stacked: bool = False  # areas stacked on each other: parts of one whole (application groups)


_COUNT = "sum"  # a per-interval count summed over a bucket is the count in that bucket
APP_TOP = 8
DEVICE_TOP = 4  # a read and a write trace each
FS_TOP = 5

CHARTS: tuple[Chart, ...] = (
    Chart("cpu", "CPU", (Line("cpu_usage", "total"), Line("cpu_user", "user"), Line("cpu_system", "system"),
                         Line("cpu_iowait", "iowait"), Line("cpu_steal", "steal")),
          "%", percent=True, help="Share of CPU time, all cores."),
    Chart("memory", "Memory", (Line("mem_usage", "memory"), Line("swap_usage", "swap")), "%", percent=True,
          help="Memory in use: (total - available) / total; swap in use."),
    # As many groups as the palette has colours, so no two share one; the rest are grey "other".
    Chart("apps_cpu", "Applications: CPU", (Line("app_cpu_usage", "", label="app", top=APP_TOP),), "%", percent=True,
          stacked=True, help="Share of the machine's CPU time by application (executable, or your app_groups); "
                             "the busiest over the range, the rest as other."),
    Chart("apps_memory", "Applications: memory", (Line("app_memory_rss", "", label="app", top=APP_TOP),), "B",
          stacked=True, help="Resident memory summed by application; the largest over the range, the rest as other."),
    Chart("bandwidth", "Bandwidth", (Line("net_in", "in", by="scope"), Line("net_out", "out", by="scope")),
          "bit/s", help="Bits per second, summed over the interfaces of each scope (public, private)."),
    Chart("disk_iops", "Disk IOPS", (Line("disk_read_iops", "read", label="device", top=DEVICE_TOP),
                                     Line("disk_write_iops", "write", label="device", top=DEVICE_TOP)),
          "operations/s", help="Reads and writes completed per second, per device."),
    Chart("disk_bps", "Disk throughput", (Line("disk_read_bps", "read", label="device", top=DEVICE_TOP),
                                          Line("disk_write_bps", "write", label="device", top=DEVICE_TOP)),
          "B/s", help="Bytes read and written per second, per device."),
    Chart("disk_util", "Disk utilisation", (Line("disk_util", "", label="device", top=DEVICE_TOP, fold="max"),),
          "%", percent=True, help="Share of time each device had I/O in flight; other: the busiest of the rest."),
    Chart("disk_await", "Disk await", (Line("disk_await_read", "read", label="device", top=DEVICE_TOP),
                                       Line("disk_await_write", "write", label="device", top=DEVICE_TOP)),
          "ms", help="Average time an I/O took (queue + service), per device."),
    Chart("fs_usage", "Filesystem usage", (Line("fs_usage", "", label="mountpoint", top=FS_TOP, fold="max"),),
          "%", percent=True,
          help=f"Space used per mountpoint, as df shows it: the {FS_TOP} fullest, and as other the fullest "
               "of the rest."),
    Chart("kernel", "Kernel signals and events", (
        Line("tcp_listen_overflows", "accept queue overflows", agg=_COUNT),
        Line("tcp_listen_drops", "listen drops", agg=_COUNT),
        Line("udp_rcvbuf_errors", "UDP receive buffer full", agg=_COUNT),
        Line("udp_sndbuf_errors", "UDP send buffer full", agg=_COUNT),
        Line("softnet_dropped", "softirq backlog drops", agg=_COUNT),
        Line("oom_kills", "OOM kills", agg=_COUNT),
    ), "count per bucket", kind="bar",
          help="Drops and OOM kills counted in each bucket; the diamonds along the top are this instance's events "
               "(hover or tap one to read it).", wide=True),
)

BY_KEY = {c.key: c for c in CHARTS}
OTHER = "other"
OTHER_COLOUR = "#9e9e9e"

# Health colours (PRODUCT.md), shared with the CSS; a state is never shown by colour alone.
LEVEL_COLOURS = {"CRITICAL": "#c62828", "WARN": "#b26a00", "INFO": "#1565c0"}
# A palette that stays distinguishable for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


# Layout in pixels. The legend is not plotly's: the page draws a table under the plot
# (name, last, min, max) from each trace's `meta`, so every figure has the same height
# and the plots of one row line up however many series each has.
PLOT_HEIGHT = 190
TOP = 36
TICKS = 44  # two lines under the plot: the time, then the date


def _round(v: float) -> float | None:
    """Four significant digits: what a chart can show, and a third of the bytes."""
    if not math.isfinite(v):
        return None
    return float(f"{v:.4g}")


def series_of(line: Line, frame: pd.DataFrame | None) -> list[tuple[str, list[int], list[float | None]]]:
    """(name, x in ms, y) for one query's frame."""
    if frame is None or frame.empty:
        return []
    if line.by is not None:
        if line.by not in frame.columns:
            return []
        summed = frame.groupby([line.by, "ts"], sort=True)["value"].sum().reset_index()
        groups: Iterable[tuple[Any, pd.DataFrame]] = summed.groupby(line.by, sort=True)
        fmt = f"{line.name} {{}}"
    elif line.label is not None and line.label in frame.columns:
        groups = (_top_and_other(frame, line.label, line.top, line.fold) if line.top
                  else frame.groupby(line.label, sort=True))
        fmt = f"{{}} {line.name}".rstrip() if line.name else "{}"
    else:
        groups = [(line.name or line.metric, frame.groupby("ts", sort=True)["value"].sum().reset_index())]
        fmt = "{}"
    out = []
    for key, g in groups:
        key = key[0] if isinstance(key, tuple) else key
        g = g.sort_values("ts")
        xs = [int(t * 1000) for t in g["ts"].tolist()]
        ys = [_round(v) for v in g["value"].tolist()]
        out.append((fmt.format(key), xs, ys))
    return out


def _top_and_other(frame: pd.DataFrame, label: str, top: int, fold: str = "sum") -> list[tuple[str, pd.DataFrame]]:
    """The `top` label values by mean over the frame, largest first (the bottom of a
    stack), then "other": every other value per time, summed or their highest (`fold`).
    The collector already folds its own rest into "other"; a group that was in its top
    only part of the range joins it here."""
    means = frame[frame[label] != OTHER].groupby(label, sort=True)["value"].mean()
    kept = list(means.sort_values(ascending=False, kind="stable").index[:top])
    out: list[tuple[str, pd.DataFrame]] = [(k, frame[frame[label] == k]) for k in kept]
    rest = frame[~frame[label].isin(kept)]
    if not rest.empty:
        out.append((OTHER, rest.groupby("ts", sort=True)["value"].agg(fold).reset_index()))
    return out


def _axis_format(chart: Chart) -> dict[str, Any]:
    y: dict[str, Any] = {"title": {"text": chart.axis}, "automargin": True, "rangemode": "tozero",
                         "gridcolor": "#e3e6ea", "zeroline": False}
    if chart.percent:
        y.update(range=[0, 100], ticksuffix=" %")
    elif chart.axis in ("bit/s", "B/s", "B"):
        y["tickformat"] = "~s"  # 1.2M, 350k: SI prefixes, with the unit in the title
    return y


_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def value_text(v: float | None, chart: Chart) -> str:
    """A legend's number: SI prefixes for bytes and bits (1.2 M), else four digits."""
    if v is None:
        return "–"
    if chart.axis in ("bit/s", "B/s", "B"):
        for scale, prefix in _SI:
            if abs(v) >= scale:
                return f"{v / scale:.3g} {prefix}{chart.axis}"
        return f"{v:.3g} {chart.axis}"
    return f"{v:.4g}{' %' if chart.percent else ''}"


def legend_stats(chart: Chart, ys: Sequence[float | None]) -> dict[str, str]:
    """Last, lowest and highest value of a trace over the range, as its legend row shows them."""
    vals = [y for y in ys if y is not None]
    if not vals:
        return {"last": "–", "min": "–", "max": "–"}
    return {"last": value_text(vals[-1], chart), "min": value_text(min(vals), chart),
            "max": value_text(max(vals), chart)}


def figure(chart: Chart, traces: Sequence[tuple[str, list[int], list[float | None]]], start: float, end: float,
           events: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One chart's figure. Each trace's `meta` holds its legend row (last, min, max); on the
    kernel chart `events` become markers with their text on hover, and on no other chart:
    dotted lines on every chart said nothing without hovering and hid the data."""
    data: list[dict[str, Any]] = []
    for i, (name, xs, ys) in enumerate(traces):
        colour = OTHER_COLOUR if name == OTHER or name.startswith(OTHER + " ") else PALETTE[i % len(PALETTE)]
        hover = "%{y:.3~s}" if chart.axis in ("bit/s", "B/s", "B") else "%{y:.4~g}"
        trace: dict[str, Any] = {"type": "bar" if chart.kind == "bar" else "scatter", "name": name, "x": xs, "y": ys,
                                 "hovertemplate": f"{name}: {hover} {chart.axis}<extra></extra>",
                                 "meta": legend_stats(chart, ys)}
        if chart.kind == "bar":
            trace["marker"] = {"color": colour}
        else:
            # Isolated points (a new machine, gaps in the data) vanish in a lines-only trace.
            sparse = sum(y is not None for y in ys) < 60
            trace.update(mode="lines+markers" if sparse else "lines", line={"width": 1.5, "color": colour},
                         marker={"size": 4, "color": colour}, connectgaps=False)
            if chart.stacked:
                # A group missing at a time (out of the collector's top then) adds nothing there.
                trace.update(stackgroup="one", stackgaps="infer zero", line={"width": 0.5, "color": colour})
        data.append(trace)
    if chart.key == "kernel" and events:
        data.append({
            "type": "scatter", "mode": "markers", "name": "events", "yaxis": "y2",
            "x": [int(e["publish_time"] * 1000) for e in events], "y": [1] * len(events),
            "marker": {"symbol": "diamond", "size": 11, "color": [LEVEL_COLOURS.get(e["level"], "#616161")
                                                                  for e in events]},
            "text": [f"{e['type']} ({e['level']}): {str(e['details'].get('message', ''))[:120]}" for e in events],
            "hovertemplate": "%{text}<extra></extra>", "meta": {"count": str(len(events))}})
    layout: dict[str, Any] = {
        "title": {"text": chart.title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        "margin": {"l": 60, "r": 16, "t": TOP, "b": TICKS}, "height": TOP + PLOT_HEIGHT + TICKS,
        "xaxis": {"type": "date", "range": [int(start * 1000), int(end * 1000)], "gridcolor": "#e3e6ea"},
        "yaxis": _axis_format(chart), "showlegend": False,
        "hovermode": "x unified", "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "barmode": "stack",
    }
    if chart.key == "kernel":
        layout["yaxis2"] = {"overlaying": "y", "range": [0, 1.1], "visible": False, "fixedrange": True}
    if not traces:
        layout["annotations"] = [{"text": "no data in this range", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#616161"}}]
    return {"data": data, "layout": layout}
