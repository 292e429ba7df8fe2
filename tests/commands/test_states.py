"""The overall state rule: every row of seed 001's 批量执行状态 table, plus Pending."""

import pytest

from diag.commands.states import instance_status, overall

ROWS = [
    # priority 1: some or all Running (Pending counts as Running)
    (["Running", "Finished", "Failed"], "Running"),
    (["Running", "Running"], "Running"),
    (["Pending", "Finished"], "Running"),
    (["Pending", "Stopping"], "Running"),
    (["Pending"], "Running"),
    # 2: some or all Stopping
    (["Stopping", "Finished", "Stopped"], "Stopping"),
    (["Stopping"], "Stopping"),
    # 3: all Stopped
    (["Stopped", "Stopped"], "Stopped"),
    # 4: all Failed, or Failed with the rest Stopped
    (["Failed", "Failed"], "Failed"),
    (["Failed", "Stopped"], "Failed"),
    # 5: all Finished, or Finished with the rest Stopped
    (["Finished", "Finished"], "Finished"),
    (["Finished", "Stopped", "Stopped"], "Finished"),
    # 6: Failed and Finished both
    (["Failed", "Finished"], "PartialFailed"),
    (["Failed", "Finished", "Stopped"], "PartialFailed"),
]


@pytest.mark.parametrize("instances,expected", ROWS)
def test_overall(instances, expected):
    assert overall(instances) == expected


def test_periodic_instance_stays_running_until_stopped():
    assert instance_status(True, False, ["Finished", "Failed", "Running"]) == "Running"
    assert instance_status(True, False, []) == "Running"
    assert instance_status(True, True, ["Finished"]) == "Stopped"
    assert instance_status(True, True, ["Finished", "Stopping"]) == "Stopping"


def test_one_shot_instance_follows_its_record():
    assert instance_status(False, False, []) == "Pending"
    assert instance_status(False, False, ["Failed"]) == "Failed"
    assert instance_status(False, True, ["Finished"]) == "Finished"  # stopping a finished run changes nothing
    assert instance_status(False, True, []) == "Stopped"
