"""A report as plain text and Markdown (for `diag diagnose` and `?format=md`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

ICON = {"ok": "OK", "warning": "WARN", "critical": "CRIT", "unknown": "UNKN", "not_applicable": "N/A"}
ORDER = ("critical", "warning", "unknown", "ok", "not_applicable")


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sorted(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(checks, key=lambda c: (ORDER.index(c["status"]), c["category"], c["id"]))


def text(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"{report['instance_id']}: {report['health_status']}  "
             f"({when(report['window']['start'])} .. {when(report['window']['end'])})",
             "  ".join(f"{k}={v}" for k, v in s.items()), ""]
    for c in _sorted(report["checks"]):
        lines.append(f"[{ICON[c['status']]:>4}] {c['id']:<28} {c['message']}")
        if c["status"] in ("warning", "critical") and c.get("recommendation"):
            lines.append(f"{'':7}-> " + c["recommendation"].replace("\n", "\n" + " " * 10))
    return "\n".join(lines) + "\n"


def _md_cell(value: str, breaks: str = " ") -> str:
    return value.replace("|", "\\|").replace("\n", breaks)


def markdown(report: dict[str, Any]) -> str:
    out = [f"# Diagnosis of {report['instance_id']}: {report['health_status']}", "",
           f"Report `{report['report_id']}`, window {when(report['window']['start'])} to "
           f"{when(report['window']['end'])}.", "",
           "| ok | warning | critical | unknown | not applicable |", "|---|---|---|---|---|",
           "| {ok} | {warning} | {critical} | {unknown} | {not_applicable} |".format(**report["summary"]), ""]
    for category in dict.fromkeys(c["category"] for c in report["checks"]):
        out += [f"## {category.capitalize()}", "", "| status | check | finding | recommendation |",
                "|---|---|---|---|"]
        for c in _sorted([c for c in report["checks"] if c["category"] == category]):
            rec = c.get("recommendation") if c["status"] in ("warning", "critical") else ""
            out.append(f"| {c['status']} | `{c['id']}` {_md_cell(c['name'])} | {_md_cell(c['message'])} "
                       f"| {_md_cell(rec or '', '<br>')} |")
        out.append("")
    bad = [c for c in report["checks"] if c["status"] in ("warning", "critical") and c.get("evidence")]
    if bad:
        out += ["## Evidence", ""]
        for c in bad:
            out += [f"### `{c['id']}`", "", "```json", json.dumps(c["evidence"], indent=1, default=str), "```", ""]
    return "\n".join(out)
