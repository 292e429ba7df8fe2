"""The composition root: every part of the service is built here, once, and handed only
the parts it uses. Nothing else constructs a part or reaches for one through another.

The flow is one way: collection and ingest write the store and diag.db; the diagnoser
reads them and writes reports, health and events; alerting reads those and writes its
outbox; the web app and the scheduler call the parts' use cases.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks import plugin as plugin_checks
from checks.base import Check
from collectors import registry
from collectors.runner import CollectionCycle
from diag import diagnosis, lifecycle
from diag.alerting import Alerting
from diag.collection import Collection
from diag.connectivity_request import Connectivity
from diag.commands import attach
from diag.db import Database
from diag.diagnoser import Diagnoser
from diag.events import EventLog
from diag.fleet import Fleet
from diag.host_facts import Facts
from diag.ingest import Ingest
from diag.instances import Instances
from diag.job_stats import JobStats
from diag.kernel_lines import KernelLog
from diag.plugins import Plugins, specs
from diag.process_history import ProcessHistory
from diag.reports import Reports
from diag.reserve import Reserve
from diag.roster import Roster
from diag.settings.model import Config
from diag.store import InstanceSource, PointStore, ReadStore, WriteStore, sides
from diag.upkeep import Upkeep

if TYPE_CHECKING:  # built only when enabled: not imported otherwise
    from diag.commands.engine import Commands


@dataclass(frozen=True)
class Parts:
    """What the service is made of. The stores and logs are the lower floor, the use cases
    (collection ... roster) the upper one; each use case holds only what it was given."""

    config: Config
    instance_id: str
    db: Database
    store: ReadStore
    writer: WriteStore | None  # None with --store-url: the engine scrapes our /metrics instead
    engine_instances: InstanceSource | None  # an engine that lists instances of its own
    points: PointStore | None  # raw points for the PromQL API: the embedded store only
    events: EventLog
    instances: Instances
    processes: ProcessHistory
    kernel_log: KernelLog
    reports: Reports
    fleet: Fleet
    plugins: Plugins
    checks: list[Check]
    jobs: JobStats
    facts: Facts
    collection: Collection
    ingest: Ingest
    diagnoser: Diagnoser
    upkeep: Upkeep
    alerting: Alerting
    roster: Roster
    commands: Commands | None  # None unless remote commands are enabled
    connectivity: Connectivity


def build(config: Config, store: ReadStore | None = None) -> Parts:
    """The parts over `config`'s data dir; `store` replaces the one the config names (tests, tools)."""
    me = config.resolved_instance_id()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    settings = config.collector_settings()
    if settings.state_dir is not None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    cycle = CollectionCycle(registry.build(config.roots, settings), interval=config.interval)
    ours = [config.data_dir / name for name in ("metrics.db", "diag.db")
            if (store is None and not config.store_url) or name == "diag.db"]
    for path in ours:  # all before any is opened: opening one makes it non-empty
        lifecycle.check_held(path)
    damaged = [m for m in map(lifecycle.check_database, ours) if m]
    read, writer, engine_instances, points = sides(store if store is not None else open_store(config))
    db = Database(config.data_dir / "diag.db")
    for path in ours:
        lifecycle.mark_held(path)
    events = EventLog(db)
    instances = Instances(db)
    processes = ProcessHistory(db)
    kernel_log = KernelLog(db, config.store.kernel_log_lines, config.store.kernel_log_keep)
    reports = Reports(db)
    instances.register(me, hostname=socket.gethostname(), local=True, interval=config.interval)
    for message in damaged:
        events.detected(me, "Store.Error", time.time(), message, fold_key=message)
    # Before alerting: its default policies take their thresholds from the checks.
    plugin_specs = specs(config.plugins)
    plugins = Plugins(plugin_specs, instance_id=me, store=writer, db=db)
    checks = diagnosis.configured(config.checks) + list(plugin_checks.make(plugin_specs.values()))
    facts = Facts(db, local_id=me, roots=config.roots, service_ports=config.service_ports, every=config.facts_every)
    ingest = Ingest(db, writer=writer, events=events, instances=instances, facts=facts, processes=processes,
                    kernel_log=kernel_log)
    alerting = Alerting(db, settings=config.alerting, local_id=me, interval=config.interval,
                        listen_url=f"http://{config.host}:{config.port}", store=read, events=events,
                        instances=instances, reports=reports, checks=checks)
    commands = attach(config, db, local_id=me, events=events, instances=instances)
    return Parts(
        config=config, instance_id=me, db=db, store=read, writer=writer, engine_instances=engine_instances,
        points=points, events=events, instances=instances, processes=processes, kernel_log=kernel_log,
        reports=reports, fleet=Fleet(db), plugins=plugins, checks=checks, jobs=JobStats(), facts=facts,
        collection=Collection(cycle, local_id=me, writer=writer, db=db, events=events, instances=instances,
                              processes=processes, kernel_log=kernel_log, reserve=Reserve(config.data_dir / "reserve")),
        ingest=ingest,
        diagnoser=Diagnoser(read, local_id=me, interval=config.interval, checks=checks, plugin_result=plugins.result,
                            events=events, instances=instances, reports=reports, processes=processes, facts=facts,
                            bandwidth_caps=settings.bandwidth_caps,
                            service_ports=config.service_ports, engine_instances=engine_instances),
        upkeep=Upkeep(read, local_id=me, ingest=ingest, events=events, reports=reports, processes=processes,
                      kernel_log=kernel_log),
        alerting=alerting,
        roster=Roster(instances, local_id=me, alerts=alerting, facts=facts),
        commands=commands,
        connectivity=Connectivity(local_id=me, roots=config.roots, facts=facts, instances=instances, commands=commands),
    )


def open_store(config: Config) -> ReadStore:
    if config.store_url:
        from diag.store.prometheus import PrometheusStore

        return PrometheusStore(config.store_url)
    from diag.store import Retention, SqliteStore

    r = config.store.retention
    return SqliteStore(
        config.data_dir / "metrics.db",
        head_span=config.store.head_span,
        retention=Retention(raw=r.raw, m1=r.m1, m5=r.m5, h1=r.h1, d1=r.d1),
        size_cap_bytes=config.store.size_cap,
    )
