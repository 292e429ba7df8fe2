"""The agent's own `/metrics` (`--listen H:P`): the latest batch with `instance_id` on every
series, plus the agent's own state, served by prometheus-client's small HTTP server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from diag.exposition import BatchCollector, cycle_families


class AgentCollector(Collector):
    def __init__(self, agent) -> None:  # diag.agent.runner.Agent
        self._a = agent

    def collect(self) -> Iterator[Metric]:
        a = self._a
        g = GaugeMetricFamily("diag_agent_buffered_batches", "Batches waiting in the disk buffer for the server.")
        g.add_metric([], len(a.buffer))
        yield g
        for name, help_, value in (
                ("diag_agent_batches_sent", "Batches the server acknowledged.", a.sent),
                ("diag_agent_batches_dropped", "Batches dropped because the buffer was full.", a.dropped_total),
                ("diag_agent_send_failures", "Sends that failed and were retried later.", a.send_failures)):
            c = CounterMetricFamily(name, help_)
            c.add_metric([], value)
            yield c
        yield from cycle_families(a.cycle)  # overruns and stalls, as `diag serve` says them

    def describe(self) -> Iterable[Metric]:
        return []


def serve(agent, listen: str):
    """Start serving in a daemon thread; returns the server (its port is server.server_port)."""
    host, _, port = listen.rpartition(":")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BatchCollector(lambda: agent.last_batch, instance_id=lambda: agent.instance_id))
    reg.register(AgentCollector(agent))
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=reg)
    return server
