"""alerting.notify_webhook: one URL that makes the one-click default policies notify someone."""

from __future__ import annotations

import pytest
from tests.alerting.alerting_helpers import make_service

from diag.alerting import defaults
from diag.config import ConfigError, load

HOOK = "http://127.0.0.1:9/hook"


def test_the_webhook_contact_and_group_are_upserted_once_and_given_to_group_less_defaults(tmp_path):
    s = make_service(tmp_path / "d", defaults=True, notify_webhook=HOOK)
    try:
        ids = list(defaults.policies(s.config.interval, s.checks))
        repo = s.alerting.repo
        assert [repo.get("policy", pid)["contact_groups"] for pid in ids] == [[defaults.NOTIFY_GROUP]] * len(ids)
        # The user gives one default a group of their own: a restart must leave it alone.
        mine = s.alerting.save_contact({"name": "me", "channels": [{"type": "email", "address": "me@example.com"}]})
        s.alerting.save_group({"name": "mine", "contacts": [mine["contact_id"]]}, "mine")
        s.alerting.patch_policy("default-cpu", {"contact_groups": ["mine"]})
        s.alerting.patch_policy("default-disk", {"contact_groups": []})
    finally:
        s.close()
    s = make_service(tmp_path / "d", defaults=True, notify_webhook=HOOK.replace("/hook", "/moved"))
    try:
        repo = s.alerting.repo
        assert [c["contact_id"] for c in repo.list("contact")].count(defaults.NOTIFY_CONTACT) == 1
        assert len(repo.list("contact")) == 2 and len(repo.list("contact_group")) == 2
        assert repo.get("contact", defaults.NOTIFY_CONTACT)["channels"][0]["url"] == "http://127.0.0.1:9/moved"
        assert repo.get("contact_group", defaults.NOTIFY_GROUP)["contacts"] == [defaults.NOTIFY_CONTACT]
        assert repo.get("policy", "default-cpu")["contact_groups"] == ["mine"]
        assert repo.get("policy", "default-disk")["contact_groups"] == [defaults.NOTIFY_GROUP]
    finally:
        s.close()


def test_without_the_setting_the_defaults_stay_without_a_group(tmp_path):
    s = make_service(tmp_path / "d", defaults=True)
    try:
        assert s.alerting.repo.list("contact") == []
        assert s.alerting.repo.get("policy", "default-disk")["contact_groups"] == []
    finally:
        s.close()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "127.0.0.1:9000/hook", "http:///hook",
                                 "http://127.0.0.1:99999/hook"])
def test_a_url_that_is_not_http_is_refused_with_file_line_and_field(tmp_path, url):
    f = tmp_path / "diag.yaml"
    f.write_text(f"interval: 10s\nalerting:\n  notify_webhook: {url!r}\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 3, "alerting.notify_webhook")
    assert str(e.value).startswith(f"{f}:3: alerting.notify_webhook: ")


def test_the_environment_and_the_flag_set_it_and_a_bad_flag_names_the_field(tmp_path):
    assert load(env={"DIAG_NOTIFY_WEBHOOK": HOOK}).alerting.notify_webhook == HOOK
    f = tmp_path / "diag.yaml"
    f.write_text("alerting:\n  timezone: UTC\n")  # the file's other alerting settings stay
    cfg = load(f, env={}, **{"alerting.notify_webhook": HOOK})
    assert (cfg.alerting.notify_webhook, cfg.alerting.timezone) == (HOOK, "UTC")
    with pytest.raises(ConfigError) as e:
        load(f, env={}, **{"alerting.notify_webhook": "file:///etc/passwd"})
    assert (e.value.path, e.value.line, e.value.field) == (None, None, "alerting.notify_webhook")
