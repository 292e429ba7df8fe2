"""The policy form's data (dashboards/policy_form.py) without a browser: a stored policy
shown in the form and sent back is the same policy; every problem lands beside its input."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from dashboards import policy_form
from diag.alerting.policy import Policy, PolicyError, dump, validate

STORED = dump(Policy.model_validate({
    "name": "disk and kernel", "description": "two kinds", "enabled": False, "match": "all",
    "targets": {"instances": ["web1", "web2"], "labels": {"role": "db"}},
    "conditions": [{"metric": "fs_usage", "labels": {"mountpoint": "/"}, "statistic": "max", "period": "90s",
                    "comparison": ">", "threshold": 95.5, "consecutive": 3, "severity": "critical"}],
    "event_conditions": [{"type": "Kernel.*", "level": "WARN", "severity": None}],
    "silence": "1h", "notify_recovery": False, "missing_data": "keep",
    "effective": {"days": ["mon", "fri"], "start": "08:00", "end": "18:00", "timezone": "Asia/Shanghai"}}))


def _as_browser_sends(values: dict[str, Any]) -> MultiDict:
    """What the form posts when the user changes nothing."""
    out: list[tuple[str, str]] = []
    for f in policy_form.POLICY_FIELDS:
        if f.kind == "checkbox":
            out += [(f.name, "on")] if values[f.name] else []
        else:
            out.append((f.name, str(values[f.name])))
    for key, names in (("conditions", policy_form.COND_FIELDS), ("event_conditions", policy_form.EVENT_FIELDS)):
        out.append((f"{key}_rows", str(len(values[key]))))
        for i, row in enumerate(values[key]):
            out += [(f"{key}[{i}].{n}", str(row.get(n, ""))) for n in names]
    if values["effective.on"]:
        out.append(("effective.on", "on"))
        out += [("effective.days", d) for d in values["effective.days"]]
        out += [(k, values[k]) for k in ("effective.start", "effective.end", "effective.timezone")]
    return MultiDict(out)


def test_a_stored_policy_comes_back_unchanged_through_the_form():
    body, kept, errors = policy_form.to_body(_as_browser_sends(policy_form.to_values(STORED)))
    assert errors == {} and kept == {"conditions": [0], "event_conditions": [0]}
    assert dump(Policy.model_validate(body)) == STORED


def test_every_problem_is_shown_beside_the_input_of_the_row_typed_in():
    form = MultiDict({"name": "", "conditions_rows": "3", "silence": "1m",
                      "conditions[2].metric": "cpu_usage", "conditions[2].threshold": "lots",
                      "conditions[2].labels": "nonsense", "event_conditions_rows": "1",
                      "event_conditions[0].severity": "info", "contact_groups": "g-nope"})
    body, kept, errors = policy_form.to_body(form)
    assert kept["conditions"] == [2]  # the two empty rows are dropped
    assert errors == {"name": "give the policy a name", "conditions[2].labels": "'nonsense' is not name=value"}
    try:
        validate(body, metric_exists=lambda m: m == "cpu_usage", interval=10, group_exists=lambda g: False)
    except PolicyError as e:
        policy_form.merge_errors(errors, e.errors, kept, form)
    assert set(errors) == {"name", "conditions[2].labels", "conditions[2].threshold", "silence",
                           "event_conditions[0]", "contact_groups"}
    assert errors["name"] == "give the policy a name"  # the form's word first
    assert "unknown contact group" in errors["contact_groups"]


def test_metrics_are_grouped_by_area_with_their_units():
    groups = dict(policy_form.metric_groups(["cpu_usage", "my_app_queue"], ["typo_metric", "cpu_usage"]))
    cpu = {m.name: m for m in groups["CPU"]}
    assert cpu["cpu_usage"].unit == "%" and cpu["cpu_usage"].description
    assert [m.name for m in groups["Other stored metrics"]] == ["my_app_queue"]
    assert [m.name for m in groups["Not known"]] == ["typo_metric"]
