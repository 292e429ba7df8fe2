"""`diag rules export`: metric policies as a Prometheus alerting-rules file over the
/metrics names, for users who move alerting into Prometheus.

What translates: statistic over period -> `<stat>_over_time(metric[period])`;
N consecutive periods -> `for: (N-1) * period` after the first full window;
`all` -> `and on(instance)`; severity and policy id as labels. What does not, and is said
in each rule's annotations: missing-data treatment, effective windows, silences (these
belong to Alertmanager there). Event conditions have no series and are left out.
Instance lists and label targets become matchers on `instance_id` and target labels,
which assumes the scrape attaches them.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from diag import catalogue
from diag.alerting.notices import describe, fmt_period
from diag.alerting.policy import Condition, Policy

FUNCS = {"avg": "avg_over_time", "min": "min_over_time", "max": "max_over_time", "sum": "sum_over_time",
         "last": "last_over_time"}


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _name(metric: str) -> str:
    m = catalogue.BY_NAME.get(metric)
    return m.exposition_name if m else metric


def expr(c: Condition, p: Policy) -> str:
    matchers = [f"{k}={_quote(v)}" for k, v in sorted({**p.targets.labels, **c.labels}.items())]
    if p.targets.instances and "*" not in p.targets.instances:
        matchers.append(f"instance_id=~{_quote('|'.join(re.escape(i) for i in p.targets.instances))}")
    sel = _name(c.metric) + ("{" + ",".join(matchers) + "}" if matchers else "")
    return f"{FUNCS[c.statistic]}({sel}[{fmt_period(c.period)}]) {c.comparison} {c.threshold:g}"


def _alert_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words) or "DiagAlert"


def rules(policies: list[tuple[str, Policy]]) -> dict[str, Any]:
    groups = []
    for pid, p in policies:
        if not p.conditions:
            continue
        caveats = [f"missing data: {p.missing_data} (Prometheus: no series, no alert)"]
        if p.effective is not None:
            caveats.append(f"effective {','.join(p.effective.days)} {p.effective.start}-{p.effective.end} "
                           f"{p.effective.timezone} (route it with Alertmanager time intervals)")
        parts = [(c, expr(c, p)) for c in p.conditions]
        if p.match == "all":
            combos = [(p.conditions, " and on(instance) ".join(f"({e})" for _, e in parts))]
        else:
            combos = [([c], e) for c, e in parts]
        out = []
        for i, (conds, e) in enumerate(combos):
            longest = max(conds, key=lambda c: (c.consecutive - 1) * c.period)
            rule: dict[str, Any] = {"alert": _alert_name(p.name) + (f"_{i}" if len(combos) > 1 else ""), "expr": e}
            hold = (longest.consecutive - 1) * longest.period
            if hold > 0:
                rule["for"] = fmt_period(hold)
            sev = min((c.severity for c in conds), key=("critical", "warning", "info").index)
            rule["labels"] = {"severity": sev, "policy_id": pid}
            rule["annotations"] = {
                "summary": f"{p.name}: {{{{ $labels.instance }}}} at {{{{ $value }}}}",
                "description": "; ".join(describe(c) for c in conds) + ". Not translated: " + "; ".join(caveats),
            }
            out.append(rule)
        groups.append({"name": f"diag-{pid}", "rules": out})
    return {"groups": groups}


def export(policies: list[tuple[str, Policy]], enabled_only: bool = True) -> str:
    chosen = [(pid, p) for pid, p in policies if p.enabled or not enabled_only]
    header = "# Prometheus alerting rules exported by `diag rules export` from the metric alert policies.\n"
    skipped = [p.name for _, p in chosen if not p.conditions]
    if skipped:
        header += "# Left out (event conditions only, no series): " + ", ".join(skipped) + "\n"
    return header + yaml.safe_dump(rules(chosen), sort_keys=False, allow_unicode=True, width=1000)
