"""`diag rules export`: alert policies as a Prometheus alerting-rules file over the
/metrics names, for users who move alerting into Prometheus.

What translates: statistic over period -> `<stat>_over_time(metric[period])`;
N consecutive periods -> `for: (N-1) * period` after the first full window;
`all` -> `and on(instance_id)`; severity and policy id as labels. Label targets join the
`diag_instance_info` series (the `*_info` pattern: `and on(instance_id) diag_instance_info{role="db"}`),
since an instance's labels are on that one series, not on every metric. Event conditions
become rules over the counters behind the events: kernel-log events over
`diag_kernel_signals_total{kind=...}`, counter events over their `_total` counters, reboots over
`resets(diag_uptime_seconds[...])`; events with no counter behind them (a full disk found by a check, a
health change, operators' Custom events) are named in the file's header as left out. What does
not translate is said in each rule's annotations: missing-data treatment, effective windows,
silences (these belong to Alertmanager there).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from collectors.kernel_patterns import KINDS
from diag import catalogue
from diag.alerting.labels import alertname
from diag.alerting.notices import describe, fmt_period
from diag.alerting.policy import Condition, EventCondition, Policy
from diag.events import COUNTER_EVENTS, REBOOTS, TYPES

INFO_METRIC = "diag_instance_info"
# An event is counted over this window, and the rule fires while the count rose in it.
EVENT_WINDOW = "5m"

FUNCS = {"avg": "avg_over_time", "min": "min_over_time", "max": "max_over_time", "sum": "sum_over_time",
         "last": "last_over_time"}


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _name(metric: str) -> str:
    """The /metrics name (a per-interval count has none: its counter's)."""
    m = catalogue.BY_NAME.get(metric)
    if m is not None and m.kind == "delta":
        m = catalogue.BY_NAME[m.counter]
    return m.exposition_name if m else metric


def _instance_matchers(p: Policy) -> list[str]:
    if p.targets.instances and "*" not in p.targets.instances:
        return [f"instance_id=~{_quote('|'.join(re.escape(i) for i in p.targets.instances))}"]
    return []


def _selector(name: str, matchers: list[str]) -> str:
    return name + ("{" + ",".join(matchers) + "}" if matchers else "")


def _targeted(e: str, p: Policy) -> str:
    """`e` kept only for the instances whose labels the policy targets."""
    if not p.targets.labels:
        return e
    info = _selector(INFO_METRIC, [f"{k}={_quote(v)}" for k, v in sorted(p.targets.labels.items())])
    return f"({e}) and on(instance_id) {info}"


def expr(c: Condition, p: Policy) -> str:
    """The condition over /metrics' names and units: `cpu_usage > 80` is
    `avg_over_time(diag_cpu_usage_ratio[5m]) > 0.8`; a per-interval count is its counter's
    `increase` over the period by the count's labels, which is its sum (and bounds every other
    statistic of it from above: that rule fires at least when the policy does)."""
    matchers = [f"{k}={_quote(v)}" for k, v in sorted(c.labels.items())] + _instance_matchers(p)
    sel = _selector(_name(c.metric), matchers)
    m = catalogue.BY_NAME.get(c.metric)
    threshold = catalogue.to_exposed(m, c.threshold) if m else c.threshold
    if m is not None and m.kind == "delta":
        series = f"sum by ({', '.join(['instance_id', *m.labels])}) (increase({sel}[{fmt_period(c.period)}]))"
    else:
        series = f"{FUNCS[c.statistic]}({sel}[{fmt_period(c.period)}])"
    return _targeted(f"{series} {c.comparison} {threshold:g}", p)


def event_types(ec: EventCondition) -> list[str]:
    return [t for t, (level, _) in TYPES.items() if ec.matches(t, level)]


def event_expr(ec: EventCondition, p: Policy) -> str | None:
    """A rule over the counters behind the condition's events, or None when no counter counts them."""
    types = set(event_types(ec))
    inst = _instance_matchers(p)
    parts = []
    kinds = sorted(k for k, kind in KINDS.items() if kind.event in types and (ec.level is None or kind.level == ec.level))
    if kinds:
        sel = _selector(_name("kernel_signals_total"), [f"kind=~{_quote('|'.join(kinds))}", *inst])
        parts.append(f"sum by (instance_id) (increase({sel}[{EVENT_WINDOW}]))")
    for metric, etype in sorted(COUNTER_EVENTS.items()):
        if etype in types:
            parts.append(f"sum by (instance_id) (increase({_selector(_name(metric + '_total'), inst)}[{EVENT_WINDOW}]))")
    if types & set(REBOOTS):
        parts.append(f"sum by (instance_id) (resets({_selector(_name('uptime'), inst)}[{EVENT_WINDOW}]))")
    if not parts:
        return None
    return _targeted(" + ".join(parts) + " > 0" if len(parts) == 1 else f"({' or '.join(f'({x} > 0)' for x in parts)})", p)


def untranslated(ec: EventCondition) -> list[str]:
    """The condition's event types that no exported counter counts."""
    counted = {k.event for k in KINDS.values()} | set(COUNTER_EVENTS.values()) | set(REBOOTS)
    return [t for t in event_types(ec) if t not in counted]


def _event_rules(pid: str, p: Policy) -> list[dict[str, Any]]:
    out = []
    for i, ec in enumerate(p.event_conditions):
        e = event_expr(ec, p)
        if e is None:
            continue
        what = ec.type or f"any {ec.level} event"
        left = untranslated(ec)
        note = f" Not translated (no counter counts them): {', '.join(left)}." if left else ""
        out.append({"alert": alertname(p, f"event_conditions[{i}]"), "expr": e,
                    "labels": {"severity": ec.effective_severity(), "policy_id": pid},
                    "annotations": {"summary": f"{p.name}: {what} on {{{{ $labels.instance_id }}}}",
                                    "description": f"{what}: the count rose in the last {EVENT_WINDOW}.{note}"}})
    return out


def rules(policies: list[tuple[str, Policy]]) -> dict[str, Any]:
    groups = []
    for pid, p in policies:
        events = _event_rules(pid, p)
        if not p.conditions:
            if events:
                groups.append({"name": f"diag-{pid}", "rules": events})
            continue
        caveats = [f"missing data: {p.missing_data} (Prometheus: no series, no alert)"]
        if p.effective is not None:
            caveats.append(f"effective {','.join(p.effective.days)} {p.effective.start}-{p.effective.end} "
                           f"{p.effective.timezone} (route it with Alertmanager time intervals)")
        parts = [(c, expr(c, p)) for c in p.conditions]
        if p.match == "all":
            combos = [("all", p.conditions, " and on(instance_id) ".join(f"({e})" for _, e in parts))]
        else:
            combos = [(f"conditions[{i}]", [c], e) for i, (c, e) in enumerate(parts)]
        out = []
        for cond, conds, e in combos:
            longest = max(conds, key=lambda c: (c.consecutive - 1) * c.period)
            # The same alertname as the service's own alert; the series' labels (mountpoint...)
            # stay on the rule's result, so each series is an alert there too.
            rule: dict[str, Any] = {"alert": alertname(p, cond), "expr": e}
            hold = (longest.consecutive - 1) * longest.period
            if hold > 0:
                rule["for"] = fmt_period(hold)
            sev = min((c.severity for c in conds), key=("critical", "warning", "info").index)
            rule["labels"] = {"severity": sev, "policy_id": pid}
            rule["annotations"] = {
                "summary": f"{p.name}: {{{{ $labels.instance_id }}}} at {{{{ $value }}}}",
                "description": "; ".join(describe(c) for c in conds) + ". Not translated: " + "; ".join(caveats),
            }
            out.append(rule)
        groups.append({"name": f"diag-{pid}", "rules": out + events})
    return {"groups": groups}


def export(policies: list[tuple[str, Policy]], enabled_only: bool = True) -> str:
    chosen = [(pid, p) for pid, p in policies if p.enabled or not enabled_only]
    header = "# Prometheus alerting rules exported by `diag rules export` from the alert policies.\n"
    skipped = sorted({f"{p.name}: {t}" for _, p in chosen for ec in p.event_conditions for t in untranslated(ec)})
    if skipped:
        header += "# Left out (events no exported counter counts): " + "; ".join(skipped) + "\n"
    return header + yaml.safe_dump(rules(chosen), sort_keys=False, allow_unicode=True, width=1000)
