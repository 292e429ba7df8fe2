"""The textfile convention (issue 21, item 4): *.prom files in textfile_dir become series
of the instance, with node_exporter's rules and its error metric, keeping a broken file's
last good values."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from collectors import textfile
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from collectors.textfile import TextfileCollector
from diag.model import Batch
from tests.conftest import collected_service

GOOD = """\
# HELP backup_last_success_seconds When the last backup finished.
# TYPE backup_last_success_seconds gauge
backup_last_success_seconds{job="db"} 1.7e9
backup_last_success_seconds{job="home"} 1700000100
# TYPE queue_depth gauge
queue_depth 42
# TYPE request_seconds histogram
request_seconds_bucket{le="0.5"} 3
request_seconds_bucket{le="+Inf"} 5
request_seconds_sum 2.5
request_seconds_count 5
"""


def collector(d: Path | None, **caps: int) -> TextfileCollector:
    return TextfileCollector(Roots(), CollectorSettings(textfile_dir=d, **caps))


def series(b: Batch) -> dict[tuple, float]:
    return {(s.metric, *sorted(s.labels.items())): s.value for s in b.samples}


def user_series(b: Batch) -> dict[tuple, float]:
    return {k: v for k, v in series(b).items() if not k[0].startswith("textfile_")}


def error(b: Batch, file: str) -> float | None:
    return series(b).get(("textfile_scrape_error", ("file", file)))


def replace(path: Path, text: str) -> None:
    """As a producer should: write elsewhere, then rename into place."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_off_without_a_directory():
    b = collector(None).collect(1000.0)
    assert b.samples == [] and b.errors == []


def test_a_good_file_becomes_series_with_its_mtime_and_no_error(tmp_path: Path):
    replace(tmp_path / "backup.prom", GOOD)
    os.utime(tmp_path / "backup.prom", (1_700_000_500, 1_700_000_500))
    b = collector(tmp_path).collect(1000.0)
    assert user_series(b) == {
        ("backup_last_success_seconds", ("job", "db")): 1.7e9,
        ("backup_last_success_seconds", ("job", "home")): 1700000100.0,
        ("queue_depth",): 42.0,
        ("request_seconds_bucket", ("le", "0.5")): 3.0,
        ("request_seconds_bucket", ("le", "+Inf")): 5.0,
        ("request_seconds_sum",): 2.5,
        ("request_seconds_count",): 5.0,
    }
    assert series(b)[("textfile_mtime_seconds", ("file", "backup.prom"))] == 1_700_000_500
    assert error(b, "backup.prom") == 0.0
    assert all(s.ts == 1000.0 for s in b.samples) and b.errors == []


def test_only_regular_prom_files_are_read(tmp_path: Path):
    (tmp_path / "a.prom").write_text("a_metric 1\n")
    (tmp_path / "notes.txt").write_text("b_metric 2\n")
    (tmp_path / "a.prom.1234.tmp").write_text("c_metric 3\n")  # a producer's file mid-write
    (tmp_path / "a.prom~").write_text("d_metric 4\n")
    (tmp_path / "broken.txt").write_text("{{{ not a metric\n")
    os.mkfifo(tmp_path / "pipe.prom")  # opening it for reading must not wait for a writer
    b = collector(tmp_path).collect(1000.0)
    assert user_series(b) == {("a_metric",): 1.0}
    assert error(b, "a.prom") == 0.0
    assert error(b, "pipe.prom") == 1.0
    assert error(b, "notes.txt") is None and error(b, "broken.txt") is None


def test_a_syntax_error_gives_the_error_metric_and_keeps_the_last_good_values(tmp_path: Path, caplog):
    f = tmp_path / "jobs.prom"
    replace(f, "jobs_queued{queue=\"mail\"} 7\njobs_failed 1\n")
    c = collector(tmp_path)
    first = c.collect(1000.0)
    assert error(first, "jobs.prom") == 0.0
    good_mtime = series(first)[("textfile_mtime_seconds", ("file", "jobs.prom"))]

    replace(f, "jobs_queued{queue=\"mail\" 9\njobs_failed 2\n")  # the closing brace is missing
    os.utime(f, (good_mtime + 60, good_mtime + 60))
    with caplog.at_level(logging.WARNING, logger="collectors.textfile"):
        bad = [c.collect(1010.0 + 10 * i) for i in range(3)]
    for b in bad:
        assert error(b, "jobs.prom") == 1.0
        # the values of the last good version, at this collection's time
        assert user_series(b) == {("jobs_queued", ("queue", "mail")): 7.0, ("jobs_failed",): 1.0}
        assert series(b)[("textfile_mtime_seconds", ("file", "jobs.prom"))] == good_mtime
        assert b.errors == ["textfile:format"]
    assert bad[2].samples[0].ts == 1030.0
    logged = [r for r in caplog.records if "jobs.prom" in r.getMessage()]
    assert len(logged) == 1 and "syntax error" in logged[0].getMessage()

    replace(f, "jobs_queued{queue=\"mail\"} 3\n")
    fixed = c.collect(1040.0)
    assert error(fixed, "jobs.prom") == 0.0
    assert user_series(fixed) == {("jobs_queued", ("queue", "mail")): 3.0}  # jobs_failed is gone now


def test_a_file_that_was_never_good_gives_the_error_and_no_series(tmp_path: Path):
    (tmp_path / "bad.prom").write_text("this is not { exposition\n")
    b = collector(tmp_path).collect(1000.0)
    assert error(b, "bad.prom") == 1.0
    assert user_series(b) == {}
    assert ("textfile_mtime_seconds", ("file", "bad.prom")) not in series(b)


@pytest.mark.parametrize("text, why", [
    ("with_time 1 1700000000000\n", "timestamp"),
    ("twice 1\ntwice 2\n", "appears twice"),
    ("# TYPE dup gauge\ndup 1\n# TYPE dup gauge\n", "second TYPE"),
    ("half_written 1\nhalf_writ", "no newline"),
    ("cpu_usage 99\n", "metric of the service"),
    ('mine{instance_id="x"} 1\n', "reserved"),
    ("m" * 201 + " 1\n", "at most 200 characters"),  # the ingest API's bounds: an agent pushes these
    ("many{" + ",".join(f'l{i}="v"' for i in range(33)) + "} 1\n", "more than 32 labels"),
    ('long{v="' + "x" * 513 + '"} 1\n', "longer than 512"),
])
def test_what_node_exporter_refuses_is_an_error_that_keeps_the_last_good_values(tmp_path: Path, caplog, text, why):
    f = tmp_path / "x.prom"
    replace(f, "kept_metric 5\n")
    c = collector(tmp_path)
    c.collect(1000.0)
    replace(f, text)
    with caplog.at_level(logging.WARNING, logger="collectors.textfile"):
        b = c.collect(1010.0)
    assert error(b, "x.prom") == 1.0
    assert user_series(b) == {("kept_metric",): 5.0}
    assert why in caplog.text


def test_a_file_replaced_by_rename_is_always_read_whole(tmp_path: Path):
    """A producer rewrites a 2,000-series file by rename as fast as it can while the
    collector reads: every collection sees one whole version, never a mix or a part."""
    f = tmp_path / "big.prom"
    n = 2000

    def version(g: int) -> str:
        return "".join(f'big_metric{{i="{i}"}} {g}\n' for i in range(n))

    replace(f, version(0))
    stop = threading.Event()
    written = [0]

    def producer() -> None:
        g = 0
        while not stop.is_set():
            g += 1
            replace(f, version(g))
            written[0] = g

    t = threading.Thread(target=producer)
    t.start()
    c = collector(tmp_path, textfile_max_series_per_file=5000)
    seen_versions = set()
    try:
        for i in range(200):
            b = c.collect(1000.0 + i)
            values = set(user_series(b).values())
            assert len(user_series(b)) == n
            assert len(values) == 1, f"a mix of versions {sorted(values)[:5]}"
            assert error(b, "big.prom") == 0.0
            seen_versions |= values
    finally:
        stop.set()
        t.join()
    assert written[0] > 10 and len(seen_versions) > 5  # the race really ran


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path, monkeypatch):
    replace(tmp_path / "a.prom", "a_metric 1\n")
    calls = []
    real = textfile.parse
    monkeypatch.setattr(textfile, "parse", lambda *a: calls.append(1) or real(*a))
    c = collector(tmp_path)
    for i in range(5):
        assert user_series(c.collect(1000.0 + i)) == {("a_metric",): 1.0}
    assert len(calls) == 1
    replace(tmp_path / "a.prom", "a_metric 2\n")
    assert user_series(c.collect(1010.0)) == {("a_metric",): 2.0}
    assert len(calls) == 2


def test_a_series_in_two_files_is_flagged_and_the_first_file_keeps_it(tmp_path: Path, caplog):
    (tmp_path / "a.prom").write_text('shared_metric{k="1"} 1\nonly_a 1\n')
    (tmp_path / "b.prom").write_text('shared_metric{k="1"} 2\nshared_metric{k="2"} 2\nonly_b 2\n')
    with caplog.at_level(logging.WARNING, logger="collectors.textfile"):
        b = collector(tmp_path).collect(1000.0)
    assert user_series(b) == {("shared_metric", ("k", "1")): 1.0, ("only_a",): 1.0,
                              ("shared_metric", ("k", "2")): 2.0, ("only_b",): 2.0}
    assert error(b, "a.prom") == 0.0
    assert error(b, "b.prom") == 1.0
    assert b.errors == ["textfile:duplicate"]
    assert 'shared_metric{k="1"}' in caplog.text and "b.prom" in caplog.text


def test_caps_per_file_and_in_all_keep_the_first_series_and_flag(tmp_path: Path, caplog):
    (tmp_path / "a.prom").write_text("".join(f'a_metric{{i="{i}"}} {i}\n' for i in range(10)))
    (tmp_path / "b.prom").write_text("".join(f'b_metric{{i="{i}"}} {i}\n' for i in range(4)))
    (tmp_path / "c.prom").write_text("c_metric 1\n")
    c = collector(tmp_path, textfile_max_series_per_file=6, textfile_max_series=8)
    with caplog.at_level(logging.WARNING, logger="collectors.textfile"):
        b = c.collect(1000.0)
        c.collect(1010.0)
    got = user_series(b)
    assert sorted(k for k in got if k[0] == "a_metric") == [("a_metric", ("i", str(i))) for i in range(6)]
    assert sorted(k for k in got if k[0] == "b_metric") == [("b_metric", ("i", "0")), ("b_metric", ("i", "1"))]
    assert len(got) == 8
    assert (error(b, "a.prom"), error(b, "b.prom"), error(b, "c.prom")) == (1.0, 1.0, 1.0)
    assert "textfile_max_series_per_file (6)" in caplog.text and "textfile_max_series (8)" in caplog.text
    assert sum("textfile_max_series (8)" in r.getMessage() for r in caplog.records) == 2  # b and c, once each


def test_an_unreadable_directory_is_the_error_of_file_dot(tmp_path: Path):
    b = collector(tmp_path / "missing").collect(1000.0)
    assert error(b, ".") == 1.0 and user_series(b) == {}
    assert b.errors == ["textfile:read"]


def test_a_removed_file_takes_its_series_with_it(tmp_path: Path):
    (tmp_path / "a.prom").write_text("a_metric 1\n")
    c = collector(tmp_path)
    c.collect(1000.0)
    (tmp_path / "a.prom").unlink()
    b = c.collect(1010.0)
    assert b.samples == []


def test_textfile_series_are_stored_queried_and_take_a_policy_through_the_service(tmp_path: Path):
    from diag.web.app import create_app

    d = tmp_path / "textfiles"
    d.mkdir()
    replace(d / "backup.prom", GOOD)
    replace(d / "bad.prom", "oops{ 1\n")
    s = collected_service(tmp_path / "data", textfile_dir=str(d))
    try:
        client = create_app(s).test_client()
        r = client.get("/api/v1/query?metric=backup_last_success_seconds&start=-5m&agg=last")
        assert r.status_code == 200, r.get_json()
        got = {x["labels"]["job"]: x["points"][-1][1] for x in r.get_json()["series"]}
        assert got == {"db": 1.7e9, "home": 1700000100.0}
        r = client.get("/api/v1/query?metric=textfile_scrape_error&start=-5m&agg=last")
        errors = {x["labels"]["file"]: x["points"][-1][1] for x in r.get_json()["series"]}
        assert errors == {"backup.prom": 0.0, "bad.prom": 1.0}
        # and in /metrics, for an engine that scrapes this service (node_exporter serves them so)
        text = client.get("/metrics").get_data(as_text=True)
        assert f'backup_last_success_seconds{{instance_id="{s.instance_id}",job="db"}} 1.7e+09' in text
        assert f'diag_textfile_scrape_error{{file="bad.prom",instance_id="{s.instance_id}"}} 1.0' in text

        body = {"name": "backup too old", "targets": {"instances": [s.instance_id]},
                "conditions": [{"metric": "backup_last_success_seconds", "statistic": "min", "period": "1m",
                                "comparison": "<", "threshold": 1.6e9, "consecutive": 1, "severity": "critical"}]}
        r = client.post("/api/v1/alert-policies", json=body)
        assert r.status_code in (200, 201), r.get_json()
        # a name no file has is still refused
        body["conditions"][0]["metric"] = "backup_last_failure_seconds"
        r = client.post("/api/v1/alert-policies", json=body)
        assert r.status_code == 422 and "unknown metric" in r.get_json()["error"]["message"]
    finally:
        s.close()


def test_an_agents_textfile_series_reach_the_server_through_ingest(tmp_path: Path):
    """The agent takes textfile_dir from its own config; its batch, pushed as the agent
    pushes it (Batch.to_json), is accepted whole by the server and queried back."""
    import time

    from diag.agent.config import load as load_agent
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    d = tmp_path / "textfiles"
    d.mkdir()
    replace(d / "backup.prom", GOOD)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"server: http://127.0.0.1:1\ntextfile_dir: {d}\ntextfile_max_series: 50\n")
    settings = load_agent(str(cfg), env={}).collector_settings()
    assert (settings.textfile_dir, settings.textfile_max_series) == (d, 50)
    batch = TextfileCollector(Roots(), settings).collect(time.time())
    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    try:
        client = create_app(s).test_client()
        body = batch.to_json("agent-1")
        r = client.post("/api/v1/ingest", json={"instance_id": "agent-1", "samples": body["samples"]})
        assert r.status_code == 202, r.get_json()
        assert r.get_json()["accepted"] == len(batch.samples) == 7 + 2  # the file's, its mtime and error
        q = client.get("/api/v1/query?metric=request_seconds_bucket&instance_id=agent-1&start=-5m&agg=last")
        assert {x["labels"]["le"]: x["points"][-1][1] for x in q.get_json()["series"]} == {"0.5": 3.0, "+Inf": 5.0}
    finally:
        s.close()
