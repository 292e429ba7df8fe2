"""The interface byte counters and bytes per interval answer in /api/v1/query (issue 20):
`net_receive_bytes_total` used to answer with no series, because only /metrics had it.
On this machine, through a real collection."""

from __future__ import annotations

import time

import pytest

from collectors.network import read_dev
from collectors.roots import Roots
from diag.config import load
from diag.service import Service
from diag.web.app import create_app


@pytest.fixture
def service(tmp_path):
    s = Service(load(env={}, data_dir=str(tmp_path / "data"), interval=10))
    yield s
    s.close()


def test_byte_counters_and_volume_come_back_from_the_query_api(service):
    before = read_dev(Roots())
    iface = next(i for i in before if i != "lo")
    t0 = time.time() // 300 * 300 - 200  # both collections in one 5-minute bucket
    service.collect(t0)
    service.collect(t0 + 10)
    after = read_dev(Roots())
    client = create_app(service).test_client()

    def series(metric: str, agg: str = "last") -> dict[str, list]:
        r = client.get(f"/api/v1/query?metric={metric}&start={t0 - 60:.0f}&end={t0 + 60:.0f}&step=300&agg={agg}")
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert body["unit"] == "bytes"
        return {s["labels"]["interface"]: s for s in body["series"]}

    for metric, col in (("net_receive_bytes_total", 0), ("net_transmit_bytes_total", 8)):
        got = series(metric)
        assert "lo" not in got and iface in got
        assert got[iface]["labels"] == {"interface": iface}
        (_, value), = got[iface]["points"]
        # the kernel's own counter, read between the two readings of /proc/net/dev around it
        assert before[iface][col] <= value <= after[iface][col]

    # The second collection's bytes: the counters' rise between the two collections.
    rx = series("net_in_bytes", "sum")[iface]
    total = series("net_receive_bytes_total", "max")[iface]["points"][0][1]
    first = series("net_receive_bytes_total", "min")[iface]["points"][0][1]
    assert rx["points"][0][1] == total - first
    assert set(rx["labels"]) == {"interface", "scope"}
