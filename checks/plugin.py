"""Plugin checks: one check per configured plugin (config `plugins`), id `plugin.<name>`.

The plugin runs on its own schedule (diag/plugins.py); the check reads its last run
from the context and says what the plugin said. A run older than the check's
`stale_after` threshold is no evidence of now: `unknown`.
"""

from __future__ import annotations

from typing import Any, Iterable

from checks.base import Check, CheckContext, CheckResult, Severity

CATEGORY = "plugin"
# A plugin should say what to do; when its config does not, this does.
DEFAULT_RECOMMENDATION = ("Read the plugin's message and output in the evidence, then fix what it reports or "
                          "the plugin itself (run its command by hand as its user).")


def elsewhere(name: str) -> dict[str, Any]:
    """The context's answer for an instance the plugin does not run on (an agent's)."""
    return {"status": "not_applicable", "message": f"plugin {name} runs on the server's own host only"}


def evaluate(ctx: CheckContext, check: Check) -> CheckResult:
    name = check.id.split(".", 1)[1]
    last = ctx.plugin_result(name)
    if last is None:
        return CheckResult("unknown", f"plugin {name} has not run yet", {"plugin": name})
    if last["status"] == "not_applicable":
        return CheckResult("not_applicable", last["message"], {"plugin": name})
    evidence: dict[str, Any] = {
        "plugin": name, "exit_code": last["exit_code"], "ran_at": last["started"],
        "duration_s": round(last["duration"], 3), "user": last["user"], "output": last["long_output"],
        "perfdata": last["perfdata"]}
    if last.get("stderr"):
        evidence["stderr"] = last["stderr"]
    age = ctx.now - last["started"]
    if age > check.thresholds["stale_after"]:
        return CheckResult("unknown", f"plugin {name} last ran {age:.0f}s ago: {last['message']}", evidence)
    status = last["status"]
    if status == "critical" and check.severity != "critical":
        status = "warning"  # PRODUCT.md: a non-critical check is at most a warning
    return CheckResult(status, last["message"], evidence)


def make(specs: Iterable[Any]) -> tuple[Check, ...]:
    """The checks of these plugins (collectors.plugins.PluginSpec), in config order."""
    out = []
    for s in specs:
        severity: Severity = "critical" if s.severity == "critical" else "non_critical"
        out.append(Check(
            id=f"plugin.{s.name}", category=CATEGORY, name=s.description or f"Plugin {s.name}", severity=severity,
            description=s.description or f"Runs {' '.join(s.command)} every {s.interval:g}s (a Nagios plugin).",
            recommendation=s.recommendation or DEFAULT_RECOMMENDATION, evaluate=evaluate,
            # Two missed runs and the timeout: a plugin that stopped running is not taken as passing.
            thresholds={"stale_after": 2 * s.interval + s.timeout + 30}))
    return tuple(out)
