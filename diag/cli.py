"""The `diag` command: serve, collect (and, as the product grows, agent and diagnose)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from diag import __version__
from diag.config import ConfigError, check_listen, load
from diag.units import parse_duration

log = logging.getLogger("diag")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diag", description="Monitoring and self-diagnosis for Linux machines.")
    parser.add_argument("--version", action="version", version=f"diag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="collect, store and serve the dashboard, API and /metrics")
    serve.add_argument("--config", help="YAML or TOML config file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.add_argument("--interval", help="collection interval, e.g. 10s")
    serve.add_argument("--store-url", help="Prometheus-compatible query API to read metrics from")
    serve.add_argument("--enable-commands", action="store_true", default=None)
    _add_roots(serve)
    serve.set_defaults(func=_serve)

    collect = sub.add_parser("collect", help="print one collection")
    collect.add_argument("--once", action="store_true", required=True, help="collect once and exit")
    collect.add_argument("--json", action="store_true", required=True, help="print JSON")
    collect.add_argument("--config", help="YAML or TOML config file")
    collect.add_argument("--sample", default="1s", help="time between the two readings that give rates (default 1s)")
    _add_roots(collect)
    collect.set_defaults(func=_collect)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"diag: {e}", file=sys.stderr)
        return 2


def _add_roots(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proc", help="read this tree instead of /proc")
    p.add_argument("--sys", help="read this tree instead of /sys")
    p.add_argument("--kmsg", help="read this file instead of /dev/kmsg")


def _config(args: argparse.Namespace, **flags):
    cfg = load(args.config, **flags)
    paths = {k: getattr(args, k) for k in ("proc", "sys", "kmsg") if getattr(args, k, None)}
    if paths:
        roots = cfg.roots.with_(**paths)
        cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={
            "proc": roots.proc, "sys": roots.sys, "kmsg": roots.kmsg, "pstore": roots.pstore})})
    return cfg


def _collect(args: argparse.Namespace) -> int:
    from collectors import registry
    from collectors.runner import CollectionCycle
    from dataclasses import replace

    cfg = _config(args)
    settings = replace(cfg.collector_settings(), state_dir=None)  # a one-off reading remembers nothing
    cycle = CollectionCycle(registry.build(cfg.roots, settings))
    # Rates need two readings: the first sets the baseline, the second is printed.
    first = cycle.run()
    time.sleep(parse_duration(args.sample))
    batch = cycle.run()
    batch.signals[:0] = first.signals
    out = batch.to_json(cfg.resolved_instance_id())
    out["errors"] = [{"collector": c, "kind": k, "count": n} for (c, k), n in cycle.errors.items()]
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from waitress.server import create_server

    from diag import scheduler as scheduling
    from diag.service import Service
    from diag.web.app import create_app

    cfg = _config(args, host=args.host, port=args.port, data_dir=args.data_dir, interval=args.interval,
                  store_url=args.store_url, enable_commands=args.enable_commands)
    check_listen(cfg)
    service = Service(cfg)
    sched = scheduling.build(service)
    app = create_app(service, sched)
    server = create_server(app, host=cfg.host, port=cfg.port, threads=8, ident="diag")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sched.start()
    web = threading.Thread(target=server.run, name="waitress", daemon=True)
    web.start()
    log.info("diag %s serving on http://%s:%s (instance %s, data in %s)", __version__, cfg.host,
             server.effective_port, service.instance_id, cfg.data_dir)
    stop.wait()
    log.info("stopping: finishing the running collection")
    sched.shutdown(wait=True)  # lets a running collection and its write complete
    server.close()
    service.close()
    log.info("stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
