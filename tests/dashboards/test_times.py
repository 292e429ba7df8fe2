"""Times a person reads on the dashboard: one 24-hour format, in UTC or the zone chosen in
the header (the diag_tz cookie), read back from the inputs in that zone; no UNIX time in
the health messages."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from dashboards import data, timefmt
from diag.health import compute
from diag.web.app import create_app
from tests.conftest import collected_service, own_kmsg

T = datetime(2026, 12, 5, 3, 4, 5, tzinfo=timezone.utc).timestamp()
PARIS, KOLKATA = ZoneInfo("Europe/Paris"), ZoneInfo("Asia/Kolkata")


def test_one_format_in_utc_or_the_chosen_zone():
    assert timefmt.when(T) == "2026-12-05 03:04:05 UTC"  # outside a request: UTC
    assert timefmt.when(T, PARIS) == "2026-12-05 04:04:05 CET"
    assert timefmt.when(T + 180 * 86400, PARIS) == "2027-06-03 05:04:05 CEST"  # summer time
    assert timefmt.when(T, KOLKATA) == "2026-12-05 08:34:05 IST"
    assert timefmt.when(None) == "-"
    assert timefmt.input_value(T) == "2026-12-05 03:04"
    assert timefmt.input_value(T, KOLKATA) == "2026-12-05 08:34"


def test_inputs_are_read_in_the_zone_they_were_written_in():
    for tz in (timezone.utc, PARIS, KOLKATA):
        typed = timefmt.input_value(T, tz)
        assert timefmt.parse_input(typed, T, tz) == T - 5  # to the minute
        assert timefmt.parse_input(typed.replace(" ", "T"), T, tz) == T - 5
    assert timefmt.parse_input("2026-12-05 08:34:05", T, KOLKATA) == T
    # an explicit offset or a relative time means what it says, whatever the zone
    assert timefmt.parse_input("2026-12-05T03:04:05+00:00", T, KOLKATA) == T
    assert timefmt.parse_input("-1h", T, KOLKATA) == T - 3600
    with pytest.raises(ValueError):
        timefmt.parse_input("12/04/2026, 08:52 PM", T, KOLKATA)
    rng = data.pick_range({"range": "custom", "start": "2026-12-05 08:00", "end": "2026-12-05 09:00"}, T, KOLKATA)
    assert (rng.start, rng.end, rng.error) == (T - 2045, T + 1555, None)  # 02:30 and 03:30 UTC


def test_utc_times_in_messages_are_shown_in_the_chosen_zone():
    from flask import Flask

    flask_app = Flask("t")
    with flask_app.test_request_context(headers={"Cookie": "diag_tz=Asia/Kolkata"}):
        assert timefmt.zone_name() == "Asia/Kolkata"
        assert timefmt.localize("no sample for 400s (since 2026-12-05 03:04:05 UTC)") == \
            "no sample for 400s (since 2026-12-05 08:34:05 IST)"
        assert timefmt.localize("at 2026-12-05T03:04:05Z and 2026-12-05T03:04:05.25+00:00") == \
            "at 2026-12-05 08:34:05 IST and 2026-12-05 08:34:05 IST"
        assert timefmt.localize("2026-12-05 03:04:05 local") == "2026-12-05 03:04:05 local"  # no zone: not ours
    for cookie in ("Mars/Olympus", "../../etc/passwd", "UTC", "x" * 100, ""):
        with flask_app.test_request_context(headers={"Cookie": f"diag_tz={cookie}"}):
            assert timefmt.zone_name() == "UTC" and timefmt.when(T) == "2026-12-05 03:04:05 UTC", cookie


def test_health_messages_carry_no_unix_time():
    now = T
    _, reasons = compute(monitoring=True, maintenance=None, checks=[], last_sample=now - 400, now=now, interval=10)
    assert reasons[0]["message"] == "no sample for 400s (since 2026-12-05 02:57:25 UTC)"
    m = {"event_id": "e-1", "type": "SystemMaintenance.Reboot", "finish_time": now + 600}
    _, reasons = compute(monitoring=True, maintenance=m, checks=[], last_sample=now, now=now, interval=10)
    assert reasons[0]["message"] == "SystemMaintenance.Reboot is executing until 2026-12-05 03:14:05 UTC"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    top = tmp_path_factory.mktemp("times")
    s = collected_service(top / "data", collections=2, pause=0.2, paths={"kmsg": str(own_kmsg(top))})
    s.events.schedule(s.instance_id, "SystemMaintenance.Reboot", T + 86400 * 365, 3600)
    s.diagnose()
    yield s
    s.close()


UNIX = re.compile(r"(?<![\w.-])1[6-9]\d{8}(?:\.\d+)?(?![\w.])")  # seconds from 2020 to 2033


def _visible(html: str) -> str:
    """The text of a page (the evidence blocks too), without its scripts and tag attributes."""
    html = re.sub(r"<script\b.*?</script>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_pages_follow_the_cookie_and_show_no_unix_time(service):
    client = create_app(service).test_client()
    iid = service.instance_id
    pages = ("/", f"/instances/{iid}", "/diagnosis", "/events", "/alerts")
    for path in pages:
        text = _visible(client.get(path).get_data(as_text=True))
        assert not UNIX.search(text), (path, UNIX.search(text))
        assert not re.search(r"\d:\d\d ?[AP]M\b", text), path
    html = client.get("/events").get_data(as_text=True)
    assert "2027-12-05 03:04:05 UTC" in html  # the maintenance a year from T, in UTC by default
    client.set_cookie("diag_tz", "Asia/Kolkata")
    html = client.get("/events").get_data(as_text=True)
    assert "2027-12-05 08:34:05 IST" in html and "2027-12-05 03:04:05 UTC" not in html
    assert 'data-tz="Asia/Kolkata"' in html
    assert re.search(r'<option value="Asia/Kolkata" selected>', html)
    assert "Starts (Asia/Kolkata)" in html
    inst = client.get(f"/instances/{iid}?range=custom&start=2026-12-05 08:00&end=2026-12-05 09:00")
    page = inst.get_data(as_text=True)
    assert 'value="2026-12-05 08:00"' in page and 'value="2026-12-05 09:00"' in page
    assert "2026-12-05 08:00:00 IST → 2026-12-05 09:00:00 IST" in page
    assert 'type="datetime-local"' not in page


def test_evidence_times_are_written_as_times():
    evidence = {"highest": {"ts": T, "value": 24.8, "mountpoint": "/"}, "events": [{"last_time": T, "count": 3}],
                "monitoring_since": int(T), "runtime": 1_800_000_000, "ports": [1_800_000_000], "peak_at": None,
                "last_seen_failed": T, "threshold": 2e9}
    assert timefmt.readable_evidence(evidence) == {
        "highest": {"ts": "2026-12-05 03:04:05 UTC", "value": 24.8, "mountpoint": "/"},
        "events": [{"last_time": "2026-12-05 03:04:05 UTC", "count": 3}],
        "monitoring_since": "2026-12-05 03:04:05 UTC", "runtime": 1_800_000_000, "ports": [1_800_000_000],
        "peak_at": None, "last_seen_failed": "2026-12-05 03:04:05 UTC", "threshold": 2e9}
