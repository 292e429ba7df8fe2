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
    # trace of their own; the others (and the collector's own "other") are summed as "other".
    top: int = 0


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
    Chart("disk_iops", "Disk IOPS", (Line("disk_read_iops", "read", label="device"),
                                     Line("disk_write_iops", "write", label="device")),
          "operations/s", help="Reads and writes completed per second, per device."),
    Chart("disk_bps", "Disk throughput", (Line("disk_read_bps", "read", label="device"),
                                          Line("disk_write_bps", "write", label="device")),
          "B/s", help="Bytes read and written per second, per device."),
    Chart("disk_util", "Disk utilisation", (Line("disk_util", "", label="device"),), "%", percent=True,
          help="Share of time each device had I/O in flight."),
    Chart("disk_await", "Disk await", (Line("disk_await_read", "read", label="device"),
                                       Line("disk_await_write", "write", label="device")),
          "ms", help="Average time an I/O took (queue + service), per device."),
    Chart("fs_usage", "Filesystem usage", (Line("fs_usage", "", label="mountpoint"),), "%", percent=True,
          help="Space used per mountpoint, as df shows it."),
    Chart("kernel", "Kernel signals", (
        Line("tcp_listen_overflows", "accept queue overflows", agg=_COUNT),
        Line("tcp_listen_drops", "listen drops", agg=_COUNT),
        Line("udp_rcvbuf_errors", "UDP receive buffer full", agg=_COUNT),
        Line("udp_sndbuf_errors", "UDP send buffer full", agg=_COUNT),
        Line("softnet_dropped", "softirq backlog drops", agg=_COUNT),
        Line("oom_kills", "OOM kills", agg=_COUNT),
    ), "count per bucket", kind="bar",
          help="Drops and OOM kills counted in each bucket; events are the markers along the top.", wide=True),
)

BY_KEY = {c.key: c for c in CHARTS}
OTHER = "other"
OTHER_COLOUR = "#9e9e9e"

# Health colours (PRODUCT.md), shared with the CSS; a state is never shown by colour alone.
LEVEL_COLOURS = {"CRITICAL": "#c62828", "WARN": "#b26a00", "INFO": "#1565c0"}
# A palette that stays distinguishable for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


# Layout in pixels. The legend sits in the bottom margin under the date ticks (two lines:
# time, then the date), so a long legend grows the figure instead of covering the axis.
PLOT_HEIGHT = 190
TOP = 36
TICKS = 44
LEGEND_ROW = 20
COLUMNS = 2


def legend_rows(names: Sequence[str], width: float) -> int:
    """How many rows a horizontal legend of these names takes in `width` pixels (an
    estimate on the safe side: symbol and gap about 40 px, 7 px a character)."""
    rows, used = 1, 0.0
    for n in names:
        w = 40 + 7 * len(n)
        if used and used + w > width:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def even_rows(figs: dict[str, dict[str, Any]], charts: Sequence[Chart] | None = None) -> None:
    """Give the charts that share a row of the page the same height and bottom margin, so
    their plot areas line up whatever their legends need."""
    row: list[dict[str, Any]] = []
    rows: list[list[dict[str, Any]]] = []
    for c in charts if charts is not None else CHARTS:
        if c.key not in figs:
            continue
        if c.wide:
            rows += [row, [figs[c.key]]] if row else [[figs[c.key]]]
            row = []
            continue
        row.append(figs[c.key])
        if len(row) == COLUMNS:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    for r in rows:
        height = max(f["layout"]["height"] for f in r)
        bottom = max(f["layout"]["margin"]["b"] for f in r)
        for f in r:
            f["layout"]["height"], f["layout"]["margin"]["b"] = height, bottom


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
    elif line.label is not None and line.label in frame.columns and line.top:
        groups = _top_and_other(frame, line.label, line.top)
        fmt = "{}"
    elif line.label is not None and line.label in frame.columns:
        groups = frame.groupby(line.label, sort=True)
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


def _top_and_other(frame: pd.DataFrame, label: str, top: int) -> list[tuple[str, pd.DataFrame]]:
    """The `top` label values by mean over the frame, largest first (the bottom of a
    stack), then "other": every other value summed per time. The collector already folds
    its own rest into "other"; a group that was in its top only part of the range joins it here."""
    means = frame[frame[label] != OTHER].groupby(label, sort=True)["value"].mean()
    kept = list(means.sort_values(ascending=False, kind="stable").index[:top])
    out: list[tuple[str, pd.DataFrame]] = [(k, frame[frame[label] == k]) for k in kept]
    rest = frame[~frame[label].isin(kept)]
    if not rest.empty:
        out.append((OTHER, rest.groupby("ts", sort=True)["value"].sum().reset_index()))
    return out


def _axis_format(chart: Chart) -> dict[str, Any]:
    y: dict[str, Any] = {"title": {"text": chart.axis}, "automargin": True, "rangemode": "tozero",
                         "gridcolor": "#e3e6ea", "zeroline": False}
    if chart.percent:
        y.update(range=[0, 100], ticksuffix=" %")
    elif chart.axis in ("bit/s", "B/s", "B"):
        y["tickformat"] = "~s"  # 1.2M, 350k: SI prefixes, with the unit in the title
    return y


def figure(chart: Chart, traces: Sequence[tuple[str, list[int], list[float | None]]], start: float, end: float,
           events: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One chart's figure; `events` become dotted lines, and markers on the kernel chart."""
    data: list[dict[str, Any]] = []
    for i, (name, xs, ys) in enumerate(traces):
        colour = OTHER_COLOUR if chart.stacked and name == OTHER else PALETTE[i % len(PALETTE)]
        hover = "%{y:.3~s}" if chart.axis in ("bit/s", "B/s", "B") else "%{y:.4~g}"
        trace: dict[str, Any] = {"type": "bar" if chart.kind == "bar" else "scatter", "name": name, "x": xs, "y": ys,
                                 "hovertemplate": f"{name}: {hover} {chart.axis}<extra></extra>"}
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
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": int(e["publish_time"] * 1000),
               "x1": int(e["publish_time"] * 1000), "y0": 0, "y1": 1,
               "line": {"color": LEVEL_COLOURS.get(e["level"], "#616161"), "width": 1, "dash": "dot"}}
              for e in events]
    if chart.key == "kernel" and events:
        data.append({
            "type": "scatter", "mode": "markers", "name": "events", "yaxis": "y2",
            "x": [int(e["publish_time"] * 1000) for e in events], "y": [1] * len(events),
            "marker": {"symbol": "diamond", "size": 10, "color": [LEVEL_COLOURS.get(e["level"], "#616161")
                                                                  for e in events]},
            "text": [f"{e['type']} ({e['level']}): {str(e['details'].get('message', ''))[:120]}" for e in events],
            "hovertemplate": "%{text}<extra></extra>"})
    names = [t["name"] for t in data]
    # a wide chart spans the page (about 1300 px at 1366), the others half of it
    bottom = TICKS + LEGEND_ROW * legend_rows(names, 1200 if chart.wide else 560) if names else TICKS
    layout: dict[str, Any] = {
        "title": {"text": chart.title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        "margin": {"l": 60, "r": 16, "t": TOP, "b": bottom}, "height": TOP + PLOT_HEIGHT + bottom,
        "xaxis": {"type": "date", "range": [int(start * 1000), int(end * 1000)], "gridcolor": "#e3e6ea"},
        "yaxis": _axis_format(chart),
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container"},
        "hovermode": "x unified", "shapes": shapes, "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "barmode": "stack",
    }
    if chart.key == "kernel":
        layout["yaxis2"] = {"overlaying": "y", "range": [0, 1.1], "visible": False, "fixedrange": True}
    if not traces:
        layout["annotations"] = [{"text": "no data in this range", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#616161"}}]
    return {"data": data, "layout": layout}
