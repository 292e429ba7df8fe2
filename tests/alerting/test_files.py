"""Policies, contacts and groups from the config file named by alerting.policies_file."""

from __future__ import annotations

import pytest
from tests.alerting.alerting_helpers import make_service

from diag.config import ConfigError

GOOD = """
contacts:
  - id: ops
    name: Ops
    channels: [{type: email, address: ops@example.com}]
contact_groups:
  - id: oncall
    name: On call
    contacts: [ops]
policies:
  - id: backup-disk
    name: Backup disk
    contact_groups: [oncall]
    conditions:
      - {metric: fs_usage, labels: {mountpoint: /backup}, period: 5m, comparison: ">=", threshold: 80}
"""


def test_file_objects_are_upserted_by_id(tmp_path):
    f = tmp_path / "alerts.yml"
    f.write_text(GOOD)
    s = make_service(tmp_path / "d", policies_file=str(f))
    try:
        p = s.alerting.repo.get("policy", "backup-disk")
        assert p["source"] == "file" and p["contact_groups"] == ["oncall"]
        assert p["conditions"][0]["period"] == 300
    finally:
        s.close()
    f.write_text(GOOD.replace("threshold: 80", "threshold: 85"))
    s = make_service(tmp_path / "d", policies_file=str(f))  # a restart applies the edited file
    try:
        assert s.alerting.repo.get("policy", "backup-disk")["conditions"][0]["threshold"] == 85
        assert len(s.alerting.repo.list("policy")) == 1
    finally:
        s.close()


@pytest.mark.parametrize("edit, field", [
    (("threshold: 80", "threshold: lots"), "policies[0].conditions[0].threshold"),
    (("contacts: [ops]", "contacts: [nobody]"), "contact_groups[0].contacts[0]"),
    (("metric: fs_usage", "metric: fs_usge"), "policies[0].conditions[0].metric"),
])
def test_a_bad_file_names_the_entry_and_field(tmp_path, edit, field):
    f = tmp_path / "alerts.yml"
    f.write_text(GOOD.replace(*edit))
    with pytest.raises(ConfigError) as e:
        make_service(tmp_path / "d", policies_file=str(f))
    assert e.value.field == field and e.value.path == str(f)
