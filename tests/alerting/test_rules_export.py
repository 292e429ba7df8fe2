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
    metric_group, event_group = yaml.safe_load(text)["groups"]
    (rule,) = metric_group["rules"]
    # The instance's labels are on diag_instance_info only: the targets join it.
    # /metrics' names and units (issue 17): fs_usage >= 95 (percent) is diag_fs_usage_ratio >= 0.95
    assert rule["expr"] == ('((last_over_time(diag_fs_usage_ratio{mountpoint="/data",instance_id=~"web1|db\\\\.1"}[5m]) >= 0.95) '
                            'and on(instance_id) diag_instance_info{role="db"}) and on(instance_id) '
                            '((min_over_time(diag_mem_total_bytes{instance_id=~"web1|db\\\\.1"}[1m]) < 1e+09) '
                            'and on(instance_id) diag_instance_info{role="db"})')
    assert rule["for"] == "5m" and rule["labels"]["severity"] == "warning"
    # Every CRITICAL event a counter counts becomes one rule; the rest are named as left out.
    (events,) = event_group["rules"]
    assert 'diag_kernel_signals_total{kind=~"' in events["expr"] and "resets(diag_uptime_seconds{" in events["expr"]
    assert events["labels"]["severity"] == "critical"
    assert "events only: Disk.Full" in text.splitlines()[1] and "events only: Kernel.OOMKill" not in text


def test_cli_writes_the_defaults_of_a_fresh_data_dir(tmp_path):
    promtool = need_tool("promtool")
    out = tmp_path / "rules.yml"
    r = subprocess.run([sys.executable, "-m", "diag.cli", "rules", "export", "--data-dir", str(tmp_path / "d"),
                        "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = [x["alert"] for g in yaml.safe_load(out.read_text())["groups"] for x in g["rules"]]
    assert "CPUUsage" in names and "MemoryUsage" in names
    assert subprocess.run([promtool, "check", "rules", str(out)], capture_output=True).returncode == 0


def test_promtool_runs_the_exported_event_and_label_rules_on_series(svc, tmp_path):
    """`promtool test rules`: a kernel-event policy fires when the OOM-kill counter rises, and a
    policy on instances labelled role=db fires for db1 (joined through diag_instance_info), not web1."""
    promtool = need_tool("promtool")
    oom = policy(svc, name="oom kills", targets={"instances": ["*"]}, conditions=[],
                 event_conditions=[{"type": "Kernel.OOMKill"}])
    cpu = policy(svc, name="cpu on db", targets={"instances": ["*"], "labels": {"role": "db"}},
                 conditions=[{"metric": "cpu_usage", "statistic": "avg", "period": "5m", "comparison": ">=",
                              "threshold": 90, "consecutive": 1, "severity": "critical"}])
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_export.export(svc.alerting.policies()))
    annotations = {r["alert"]: r["annotations"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}

    def alert(name: str, pid: str, severity: str, instance: str) -> dict:
        summary = annotations[name]["summary"].replace("{{ $labels.instance_id }}", instance)
        return {"exp_labels": {"instance_id": instance, "severity": severity, "policy_id": pid},
                "exp_annotations": {**annotations[name], "summary": summary}}

    test = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'diag_instance_info{instance_id="db1",hostname="db1",role="db"}', "values": "1x30"},
            {"series": 'diag_instance_info{instance_id="web1",hostname="web1",role="web"}', "values": "1x30"},
            # the series as a Prometheus scraping /metrics has them (issue 17: names and base units)
            {"series": 'diag_cpu_usage_ratio{instance_id="db1"}', "values": "0.95x30"},
            {"series": 'diag_cpu_usage_ratio{instance_id="web1"}', "values": "0.95x30"},
            {"series": 'diag_kernel_signals_total{instance_id="db1",kind="oom_kill"}', "values": "0 0 0 1 1 1 1 1 1 1 1 1 1 1"},
            {"series": 'diag_kernel_signals_total{instance_id="web1",kind="oom_kill"}', "values": "0x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "OomKills_event0", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "OomKills_event0",
             "exp_alerts": [alert("OomKills_event0", oom, "warning", "db1")]},  # as the service: no severity, no level
            {"eval_time": "12m", "alertname": "OomKills_event0", "exp_alerts": []},  # the count stopped rising
            {"eval_time": "10m", "alertname": "CpuOnDb",
             "exp_alerts": [{**alert("CpuOnDb", cpu, "critical", "db1"),
                             "exp_annotations": {**annotations["CpuOnDb"],
                                                 "summary": "cpu on db: db1 at 0.95"}}]},
        ],
    }]}
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump(test, sort_keys=False))
    r = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_exported_rule_alerts_per_filesystem_under_the_services_alertname(svc, tmp_path):
    """Two full filesystems are two alerts in Prometheus too, with their mountpoints, named as
    the service names its own alert (labels.alertname)."""
    from diag import catalogue
    from diag.alerting.labels import alertname

    promtool = need_tool("promtool")
    pid = policy(svc, name="disk full", targets={"instances": ["*"]},
                 conditions=[{"metric": "fs_usage", "statistic": "avg", "period": "1m", "comparison": ">=",
                              "threshold": 90, "consecutive": 1, "severity": "critical"}])
    (p,) = [p for i, p in svc.alerting.policies() if i == pid]
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_export.export(svc.alerting.policies()))
    (rule,) = yaml.safe_load(rules.read_text())["groups"][0]["rules"]
    assert rule["alert"] == alertname(p, "conditions[0]") == "DiskFull"
    fs = catalogue.BY_NAME["fs_usage"].exposition_name  # a 0-1 ratio on /metrics: 97 % is 0.97

    def alert(mountpoint: str, device: str, value: float) -> dict:
        return {"exp_labels": {"instance_id": "web1", "mountpoint": mountpoint, "device": device,
                               "severity": "critical", "policy_id": pid},
                "exp_annotations": {**rule["annotations"], "summary": f"disk full: web1 at {value}"}}

    test = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f'{fs}{{instance_id="web1",mountpoint="/",device="vda1"}}', "values": "0.97x10"},
            {"series": f'{fs}{{instance_id="web1",mountpoint="/data",device="vdb"}}', "values": "0.98x10"},
            {"series": f'{fs}{{instance_id="web1",mountpoint="/boot",device="vda2"}}', "values": "0.1x10"},
        ],
        "alert_rule_test": [{"eval_time": "5m", "alertname": "DiskFull",
                             "exp_alerts": [alert("/", "vda1", 0.97), alert("/data", "vdb", 0.98)]}],
    }]}
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump(test, sort_keys=False))
    r = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_policy_takes_either_name_and_exports_in_metrics_units(svc, tmp_path):
    """Issue 17: a policy written on the /metrics name and unit is the policy on the display
    name (one policy whichever was used), and exports in /metrics' names and units; a
    per-interval count exports as its counter's increase."""
    promtool = need_tool("promtool")
    exposed = policy(svc, name="cpu hot", targets={"instances": ["*"]}, conditions=[{"metric": "diag_cpu_usage_ratio", "statistic": "avg",
                                                        "period": "5m", "comparison": ">", "threshold": 0.8}])
    policy(svc, name="await", targets={"instances": ["*"]}, conditions=[{"metric": "disk_await_read", "labels": {"device": "sda"},
                                           "statistic": "max", "period": "5m", "comparison": ">=", "threshold": 250}])
    policy(svc, name="drops", targets={"instances": ["*"]}, conditions=[{"metric": "udp_rcvbuf_errors", "statistic": "sum", "period": "10m",
                                           "comparison": ">", "threshold": 100}])
    stored = dict(svc.alerting.policies())[exposed].conditions[0]
    assert (stored.metric, stored.threshold) == ("cpu_usage", 80.0)
    text = rules_export.export(svc.alerting.policies())
    exprs = {r["alert"]: r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert exprs["CpuHot"] == "avg_over_time(diag_cpu_usage_ratio[5m]) > 0.8"
    assert exprs["Await"] == 'max_over_time(diag_disk_await_read_seconds{device="sda"}[5m]) >= 0.25'
    assert exprs["Drops"] == "sum by (instance_id) (increase(diag_udp_rcvbuf_errors_total[10m])) > 100"
    out = tmp_path / "rules.yml"
    out.write_text(text)
    r = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
