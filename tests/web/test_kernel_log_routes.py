"""The system log of an instance: GET /api/v1/instances/{id}/kernel-log and its page, over a
real Service (its own kernel-log collector reading a kmsg file, diag.db on disk)."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app
from tests.fleet.fleet_helpers import kmsg_record


@pytest.fixture
def kmsg(tmp_path):
    path = tmp_path / "own.kmsg"
    now = time.time()
    path.write_text(kmsg_record(1, "Linux version 6.18.0 (builder@host)", at=now - 120, prio=5)
                    + kmsg_record(2, "<script>alert('kmsg')</script> & done", at=now - 60, prio=3)
                    + kmsg_record(3, "eth0: link up", at=now - 30, prio=6)
                    + kmsg_record(4, "Out of memory: Killed process 4242 (stress)", at=now - 10, prio=0))
    return path


@pytest.fixture
def service(tmp_path, kmsg):
    s = Service(load(env={}, data_dir=str(tmp_path / "data"), paths={"kmsg": str(kmsg)}))
    s.collect()
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def _log(client, iid, query=""):
    r = client.get(f"/api/v1/instances/{iid}/kernel-log{query}")
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_the_servers_own_kernel_lines_are_kept_and_filtered(client, service):
    iid = service.instance_id
    body = _log(client, iid)
    assert [(ln["seq"], ln["level"], ln["priority"]) for ln in body["lines"]] == \
        [(1, "notice", 5), (2, "err", 3), (3, "info", 6), (4, "emerg", 0)]
    assert body["lines"][1]["message"] == "<script>alert('kmsg')</script> & done"
    assert body["truncated"] is False and body["kept"]["lines"] == 5000
    # level: this severity or a more severe one, by name, alias or number
    assert [ln["seq"] for ln in _log(client, iid, "?level=err")["lines"]] == [2, 4]
    assert [ln["seq"] for ln in _log(client, iid, "?level=error")["lines"]] == [2, 4]
    assert [ln["seq"] for ln in _log(client, iid, "?level=0")["lines"]] == [4]
    # times as the other endpoints take them: relative, UNIX seconds, RFC 3339
    assert [ln["seq"] for ln in _log(client, iid, "?since=-45s")["lines"]] == [3, 4]
    t2 = body["lines"][1]["ts"]
    assert [ln["seq"] for ln in _log(client, iid, f"?since=-1h&until={t2:.6f}")["lines"]] == [1, 2]
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(body["lines"][2]["ts"] - 1))
    assert [ln["seq"] for ln in _log(client, iid, f"?since={rfc}")["lines"]] == [3, 4]
    # limit: the newest that match, oldest first, and it says more matched
    limited = _log(client, iid, "?limit=2")
    assert [ln["seq"] for ln in limited["lines"]] == [3, 4] and limited["truncated"] is True
    # a second collection reads nothing new: no line stored twice
    service.collect()
    assert len(_log(client, iid)["lines"]) == 4


@pytest.mark.parametrize("query, field", [("?level=loud", "level"), ("?level=ERR", "level"), ("?level=8", "level"),
                                          ("?limit=0", "limit"), ("?limit=5001", "limit"), ("?limit=ten", "limit"),
                                          ("?since=yesterday", "since"), ("?until=1e400", "until"),
                                          ("?since=", "since")])
def test_bad_parameters_are_400s_naming_the_parameter(client, service, query, field):
    r = client.get(f"/api/v1/instances/{service.instance_id}/kernel-log{query}")
    assert r.status_code == 400
    err = r.get_json()["error"]
    assert err["code"] == "InvalidParameter" and err["field"] == field


def test_an_unknown_instance_is_404(client):
    r = client.get("/api/v1/instances/no-such-host/kernel-log")
    assert r.status_code == 404 and r.get_json()["error"]["message"] == "no instance no-such-host"
    assert client.get("/instances/no-such-host/kernel-log", headers={"Accept": "text/html"}).status_code == 404


def test_pushed_lines_are_stored_once_and_older_agents_still_push(client, service):
    now = time.time()
    line = {"ts": now - 5, "level": 4, "seq": 77, "message": "nvme0: I/O timeout"}
    batch = {"instance_id": "pushed-1", "batch_id": "b-1", "samples": [{"metric": "uptime", "value": 5, "ts": now}],
             "kernel_lines": [line]}
    assert client.post("/api/v1/ingest", json=batch).status_code == 202
    # a different batch id carrying the same line (an agent's resend after a lost answer)
    assert client.post("/api/v1/ingest", json={**batch, "batch_id": "b-2"}).status_code == 202
    got = _log(client, "pushed-1")["lines"]
    assert [(ln["seq"], ln["level"], ln["message"]) for ln in got] == [(77, "warning", "nvme0: I/O timeout")]
    # an agent from before kernel lines: its batch is taken, and the instance has no lines
    old = {"instance_id": "old-agent", "samples": [{"metric": "uptime", "value": 5, "ts": now}]}
    assert client.post("/api/v1/ingest", json=old).status_code == 202
    assert _log(client, "old-agent")["lines"] == []


@pytest.mark.parametrize("lines, field, status", [
    ("many", "kernel_lines", 422),
    ([{"ts": 1.0, "level": 8, "seq": 1, "message": "x"}], "kernel_lines[0].level", 422),
    ([{"ts": 1.0, "level": True, "seq": 1, "message": "x"}], "kernel_lines[0].level", 422),
    ([{"ts": 1.0, "level": 3, "seq": -1, "message": "x"}], "kernel_lines[0].seq", 422),
    ([{"ts": 1.0, "level": 3, "seq": 1, "message": "x" * 4097}], "kernel_lines[0].message", 422),
    ([{"ts": 1.0, "level": 3, "seq": 1}], "kernel_lines[0].message", 422),
    ([{"level": 3, "seq": 1, "message": "x"}], "kernel_lines[0].ts", 422),
    ([{"ts": time.time() + 3600, "level": 3, "seq": 1, "message": "x"}], "kernel_lines[0].ts", 422),
    ([{"ts": -1e300, "level": 3, "seq": 1, "message": "x"}], "kernel_lines[0].ts", 422),
    (["x"], "kernel_lines[0]", 422),
    ([{"ts": 1.0, "level": 3, "seq": i, "message": "x"} for i in range(1001)], "kernel_lines", 413),
])
def test_bad_kernel_lines_in_a_batch_are_refused_naming_the_field(client, lines, field, status):
    r = client.post("/api/v1/ingest", json={"instance_id": "pushed-2", "kernel_lines": lines})
    assert r.status_code == status, r.get_json()
    assert r.get_json()["error"]["field"] == field
    assert client.get("/api/v1/instances/pushed-2").status_code == 404  # nothing of the batch stored


def test_the_bound_per_instance_keeps_the_newest_and_retention_drops_the_old(client, service):
    from diag.model import KernelLine

    log = service.kernel_log
    log.max_lines = 100
    now = time.time()
    log.add("busy", [KernelLine(now - 1000 + i, 6, i, f"line {i}") for i in range(150)])
    kept = log.lines("busy", limit=5000)[0]
    assert len(kept) == 100 and kept[0]["seq"] == 50 and kept[-1]["seq"] == 149
    log.add("busy", [KernelLine(now - 10 * 86400, 3, 999, "old and late")])  # older than all: dropped at once
    assert [ln["seq"] for ln in log.lines("busy", limit=5000)[0]][:1] == [50]
    log.add("other", [KernelLine(now - 8 * 86400, 3, 1, "eight days old"), KernelLine(now - 60, 3, 2, "fresh")])
    service.maintain(now)  # kernel_log_keep is 7 days by default
    assert [ln["seq"] for ln in log.lines("other")[0]] == [2]
    assert len(log.lines("busy", limit=5000)[0]) == 100  # another instance's bound is its own


def test_the_page_shows_the_lines_escaped_with_iso_times(client, service):
    iid = service.instance_id
    inst_page = client.get(f"/instances/{iid}").get_data(as_text=True)
    assert f'href="/instances/{iid}/kernel-log"' in inst_page
    r = client.get(f"/instances/{iid}/kernel-log")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<script>alert(" not in html
    assert "&lt;script&gt;alert(&#39;kmsg&#39;)&lt;/script&gt; &amp; done" in html
    lines = _log(client, iid)["lines"]
    first = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(lines[0]["ts"]))
    # ISO 8601, 24-hour, UTC, in the machine-readable attribute and as the text shown
    assert re.search(r'<time datetime="' + re.escape(first) + r'\.\d{3}Z">', html)
    assert re.search(re.escape(first) + r"\.\d{3}Z", re.sub(r"<[^>]+>", "", html))
    assert not re.search(r"\b(AM|PM)\b", html)
    rows = re.findall(r"<tr>\s*<td class=\"when\">.*?</tr>", html, re.S)
    assert len(rows) == 4
    # filtered: severity err or worse, and a bad input is named on the page, not a 500
    err_only = client.get(f"/instances/{iid}/kernel-log?level=err").get_data(as_text=True)
    assert "eth0: link up" not in err_only and "Out of memory" in err_only
    for since in ("1e400", "-1e11", "999999999999", "nan"):  # no date names these: refused, never a 500
        r = client.get(f"/instances/{iid}/kernel-log?since={since}")
        assert r.status_code == 400 and b"since: a time like" in r.data, since
        bad = client.get(f"/instances/{iid}/kernel-log?since=whenever&limit=x")
    assert bad.status_code == 400
    text = unescape(bad.get_data(as_text=True))
    assert "since: a time like" in text and "limit: a number of lines" in text
    # the page uses the shared stylesheet's classes only and scrolls sideways inside its card at 390 px
    assert '<div class="scrollx">' in html and 'name="viewport"' in html


def test_protected_reads_cover_the_kernel_log_and_the_status(tmp_path, kmsg):
    s = Service(load(env={}, data_dir=str(tmp_path / "locked"), paths={"kmsg": str(kmsg)}, token="admin-t0ken",
                     protect_reads=True))
    try:
        s.collect()
        c = create_app(s).test_client()
        for url in (f"/api/v1/instances/{s.instance_id}/kernel-log", "/api/v1/status"):
            assert c.get(url).status_code == 401
            assert c.get(url, headers={"Authorization": "Bearer admin-t0ken"}).status_code == 200
        page = c.get(f"/instances/{s.instance_id}/kernel-log", headers={"Accept": "text/html"})
        assert page.status_code in (302, 303, 401) and b"Out of memory" not in page.data
    finally:
        s.close()
