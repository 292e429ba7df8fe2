"""`diag rules export`: the metric policies as a rules file promtool accepts."""

from __future__ import annotations

import subprocess
import sys

import yaml
from tests.alerting.alerting_helpers import policy

from diag.alerting import rules_export
from tests.conftest import ROOT, need_tool


def test_export_is_accepted_by_promtool(svc, tmp_path):
    promtool = need_tool("promtool")
    policy(svc, name="disk \"data\" full", match="all", targets={"instances": ["web1", "db.1"], "labels": {"role": "db"}},
           conditions=[{"metric": "fs_usage", "labels": {"mountpoint": "/data"}, "statistic": "last", "period": "5m",
                        "comparison": ">=", "threshold": 95, "consecutive": 2},
                       {"metric": "mem_total", "statistic": "min", "period": "1m", "comparison": "<", "threshold": 1e9}])
    policy(svc, name="events only", conditions=[], event_conditions=[{"level": "CRITICAL"}])
    text = rules_export.export(svc.alerting.policies())
    out = tmp_path / "rules.yml"
    out.write_text(text)
    r = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    (group,) = yaml.safe_load(text)["groups"]
    (rule,) = group["rules"]
    assert rule["expr"] == ('(last_over_time(fs_usage{mountpoint="/data",role="db",instance_id=~"web1|db\\\\.1"}[5m]) '
                            '>= 95) and on(instance) (min_over_time(mem_total_bytes{role="db",instance_id=~"web1|db\\\\.1"}'
                            '[1m]) < 1e+09)')
    assert rule["for"] == "5m" and rule["labels"]["severity"] == "warning"
    assert "events only" in text.splitlines()[1]


def test_cli_writes_the_defaults_of_a_fresh_data_dir(tmp_path):
    promtool = need_tool("promtool")
    out = tmp_path / "rules.yml"
    r = subprocess.run([sys.executable, "-m", "diag.cli", "rules", "export", "--data-dir", str(tmp_path / "d"),
                        "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = [x["alert"] for g in yaml.safe_load(out.read_text())["groups"] for x in g["rules"]]
    assert "CPUUsage" in names and "MemoryUsage" in names
    assert subprocess.run([promtool, "check", "rules", str(out)], capture_output=True).returncode == 0
