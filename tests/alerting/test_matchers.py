"""Label matchers with Alertmanager's operators and meanings."""

from __future__ import annotations

import pytest

from diag.alerting.matchers import MatcherError, matches, parse, parse_all

LABELS = {"alertname": "disk full", "instance_id": "web1", "severity": "critical", "mountpoint": "/data"}


@pytest.mark.parametrize("text, hit", [
    ('instance_id="web1"', True), ("instance_id=web1", True), ("instance_id=web", False),
    ("instance_id!=db1", True), ("instance_id!=web1", False),
    ('mountpoint=~"/data|/var"', True), ("mountpoint=~/da", False),  # a regex matches the whole value
    ("severity!~warn.*", True), ("severity!~crit.*", False),
    ("team=", True), ("team!=ops", True), ("team=~.+", False),  # a missing label is the empty string
    ('alertname="disk full"', True),
])
def test_each_operator(text, hit):
    assert parse(text).matches(LABELS) is hit


def test_all_must_match_and_none_match_everything():
    ms = parse_all([{"name": "instance_id", "value": "web1"}, {"name": "severity", "op": "=~", "value": "crit.*"}])
    assert matches(ms, LABELS) and not matches(ms, {**LABELS, "instance_id": "db1"})
    assert matches([], LABELS)


@pytest.mark.parametrize("bad", ["=web1", "1abc=x", "instance_id~web1", 'mountpoint=~"("', 42,
                                 {"name": "a", "op": "==", "value": "b"}, {"name": "a", "value": "b", "x": 1},
                                 {"name": "a" * 101, "value": "b"}])
def test_bad_matchers_say_why(bad):
    with pytest.raises(MatcherError):
        parse(bad)


def test_regexes_are_re2_as_alertmanagers_go_regexps_are():
    # Backreferences and lookarounds exist in Python's re but not in RE2 nor in Go: refused,
    # as Alertmanager refuses them, rather than a silence that Alertmanager would not take.
    for pattern in (r"(a)\1", "(?=disk)disk.*", "(?<!x)y"):
        with pytest.raises(MatcherError, match="does not compile"):
            parse(f'alertname=~"{pattern}"')
    assert parse('alertname=~"(a+)+$"').matches({"alertname": "aaab"}) is False  # linear in RE2
