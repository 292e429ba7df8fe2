"""The Diagnosis page: run a diagnosis, read a report by category, its history, and what
changed between two reports."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for

from dashboards.commands_views import offers
from dashboards.blueprint import bp, parts
from diag.units import parse_duration

WINDOWS = ("1h", "6h", "12h", "24h", "7d")
# Worse is higher: a move up this scale got worse, down got better.
RANK = {"not_applicable": 0, "ok": 1, "unknown": 2, "warning": 3, "critical": 4}
CATEGORY_ORDER = ("storage", "performance", "state", "network", "access")
STATUS_ORDER = ("critical", "warning", "unknown", "ok", "not_applicable")
QUIET = ("ok", "not_applicable")  # statuses whose changed message is no new finding


def grouped(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Checks by category (the catalogue's order), the worst first within each."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in report["checks"]:
        groups.setdefault(c["category"], []).append(c)
    for checks in groups.values():
        checks.sort(key=lambda c: (STATUS_ORDER.index(c["status"]) if c["status"] in STATUS_ORDER else 9, c["id"]))
    known = [k for k in CATEGORY_ORDER if k in groups]
    return [(k, groups[k]) for k in known + sorted(set(groups) - set(known))]


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Check by check, from `old` to `new`: worse, better, a new finding at the same bad
    status, a changed message on a check that stayed ok (or n/a), added, gone.

    Passing checks' messages move with every reading ("CPU 12 %" -> "CPU 14 %"), so they are
    kept apart in `changed` rather than mixed with the findings that need a look."""
    a = {c["id"]: c for c in old["checks"]}
    b = {c["id"]: c for c in new["checks"]}
    out: dict[str, list[dict[str, Any]]] = {"worse": [], "better": [], "same_status": [], "changed": [],
                                            "added": [], "removed": []}
    for cid, c in b.items():
        if cid not in a:
            out["added"].append({"id": cid, "name": c["name"], "new": c})
            continue
        before, after = RANK.get(a[cid]["status"], 2), RANK.get(c["status"], 2)
        entry = {"id": cid, "name": c["name"], "old": a[cid], "new": c}
        if after > before:
            out["worse"].append(entry)
        elif after < before:
            out["better"].append(entry)
        elif a[cid]["message"] != c["message"]:
            out["changed" if c["status"] in QUIET else "same_status"].append(entry)
    out["removed"] = [{"id": cid, "name": c["name"], "old": c} for cid, c in a.items() if cid not in b]
    for k in ("worse", "better"):
        out[k].sort(key=lambda e: -RANK.get(e["new" if k == "worse" else "old"]["status"], 0))
    return out


@bp.get("/diagnosis")
def diagnosis() -> Any:
    s = parts()
    instances = s.instances.list()
    instance_id = request.args.get("instance_id") or s.instance_id
    if s.instances.get(instance_id) is None:
        abort(404, f"no instance {instance_id}")
    history = s.reports.list(instance_id, 50)
    report_id = request.args.get("report") or (history[0]["report_id"] if history else None)
    report = s.reports.get(report_id) if report_id else None
    if report_id and report is None:
        abort(404, f"no report {report_id}")
    comparison = None
    a_id, b_id = request.args.get("a"), request.args.get("b")
    if a_id and b_id:
        ra, rb = s.reports.get(a_id), s.reports.get(b_id)
        if ra is None or rb is None:
            abort(404, "no such report to compare")
        old, new = sorted((ra, rb), key=lambda r: r["created_at"])
        comparison = {"old": old, "new": new, "diff": diff(old, new)}
    return render_template("diagnosis.html", instances=instances, instance_id=instance_id, history=history,
                           report=report, groups=grouped(report) if report else [], comparison=comparison,
                           windows=WINDOWS, health=s.diagnoser.health_of(instance_id) or {},
                           error=request.args.get("error"), offers=offers(report))


@bp.post("/diagnosis/run")
def run_diagnosis() -> Any:
    s = parts()
    instance_id = request.form.get("instance_id") or s.instance_id
    window = request.form.get("window", "12h")
    if window not in WINDOWS or s.instances.get(instance_id) is None:
        return redirect(url_for("dash.diagnosis", instance_id=s.instance_id,
                                error=f"cannot diagnose {instance_id!r} over {window!r}"), 303)
    report = s.diagnoser.diagnose(instance_id, parse_duration(window))
    return redirect(url_for("dash.diagnosis", instance_id=instance_id, report=report["report_id"]), 303)
