"""The service's clock takes every interval from the settings, none written in the scheduler."""

from diag import scheduler
from diag.config import load
from diag.service import Service


def test_each_job_runs_at_its_setting_s_interval(tmp_path):
    cfg = load(env={"DIAG_TOKEN": "t"}, data_dir=str(tmp_path / "data"), interval="7s", facts_every="2m",
               diagnose_every="3m", enable_commands=True, store={"maintain_every": "4m"},
               alerting={"deliver_every": "3s", "expire_every": "30m"}, commands={"tick_every": "5s"})
    s = Service(cfg)
    try:
        every = {j.id: j.trigger.interval.total_seconds() for j in scheduler.build(s).get_jobs()}
    finally:
        s.close()
    assert {k: every[k] for k in ("collect", "events", "alerts", "facts", "diagnose", "maintain", "deliver",
                                  "alerts_expire", "commands")} == {
        "collect": 7, "events": 7, "alerts": 7, "facts": 120, "diagnose": 180, "maintain": 240, "deliver": 3,
        "alerts_expire": 1800, "commands": 5}
