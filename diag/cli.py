"""The `diag` command: serve, collect (and, as the product grows, agent and diagnose)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import threading
import time

from diag import __version__
from diag.lifecycle import STOP_WAIT_S
from diag.units import parse_duration

log = logging.getLogger("diag")

# The settings `diag serve` takes as flags (diag/settings/flags.py makes them; the agent's
# are in diag/agent/config.py).
SERVE_FLAGS = ("host", "port", "data_dir", "interval", "store_url", "enable_commands", "alerting.notify_webhook")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diag", description="Monitoring and self-diagnosis for Linux machines.")
    parser.add_argument("--version", action="version", version=f"diag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # The flags are the settings model's fields: their help and defaults are the model's.
    from diag.agent.config import AGENT_FLAGS, ENV as AGENT_ENV
    from diag.settings import flags
    from diag.settings.agent import AgentConfig
    from diag.settings.loader import SERVER_ENV
    from diag.settings.model import Config

    serve = sub.add_parser("serve", help="collect, store and serve the dashboard, API and /metrics",
                           epilog="Listening beyond loopback and --enable-commands need an admin token: set "
                                  "DIAG_TOKEN (or token in the config file). Flags override the environment, "
                                  "which overrides the config file.")
    serve.add_argument("--config", help="YAML or TOML config file (default: none)")
    flags.add(serve, Config, SERVE_FLAGS, SERVER_ENV)
    _add_roots(serve)
    serve.set_defaults(func=_serve)

    collect = sub.add_parser("collect", help="print one collection as JSON")
    # What `diag collect` does alone; the flags stay for the scripts that give them.
    collect.add_argument("--once", action="store_true", help="collect once and exit (the only mode)")
    collect.add_argument("--json", action="store_true", help="print JSON (the only format)")
    collect.add_argument("--config", help="YAML or TOML config file (default: none)")
    collect.add_argument("--sample", default="1s", help="time between the two readings that give rates (default: 1s)")
    _add_roots(collect)
    collect.set_defaults(func=_collect)

    diagnose = sub.add_parser("diagnose", help="diagnose this machine; exit 0 Ok, 1 Warning, 2 Impaired, 3 otherwise")
    diagnose.add_argument("--window", default="12h", help="how far back the checks look (default: 12h)")
    diagnose.add_argument("--check", action="append", dest="checks", metavar="ID", help="only this check (repeatable)")
    diagnose.add_argument("--format", choices=("text", "json", "md"), default="text",
                          help="a text summary, the JSON report, or Markdown (default: text)")
    diagnose.add_argument("--config", help="YAML or TOML config file (default: none)")
    where = diagnose.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="diagnose the history kept here (default: ./data when it has any)")
    where.add_argument("--server", help="ask a running diag serve, e.g. http://127.0.0.1:8080")
    diagnose.add_argument("--token", help="admin token for --server (else DIAG_TOKEN)")
    diagnose.add_argument("--instance-id", help="which instance (default: this machine)")
    diagnose.set_defaults(func=_diagnose)

    agent = sub.add_parser("agent", help="collectors only, pushing to a server (buffered on disk while it is away)")
    agent.add_argument("--config", help="YAML or TOML agent config (labels, paths, ...) (default: none)")
    flags.add(agent, AgentConfig, AGENT_FLAGS, AGENT_ENV)
    _add_roots(agent)
    agent.set_defaults(func=_agent)

    rules = sub.add_parser("rules", help="alert rules")  # alerting hook
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    export = rules_sub.add_parser("export", help="the metric alert policies as a Prometheus alerting-rules file")
    export.add_argument("--output", help="write here instead of stdout")
    export.add_argument("--config", help="YAML or TOML config file (default: none)")
    flags.add(export, Config, ["data_dir"], SERVER_ENV)
    export.set_defaults(func=_rules_export)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # waitress warns on every queued request under load; the request histogram tells that better.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # APScheduler logs two INFO lines per job run (several a second); failures still show.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    if args.command == "agent":
        return args.func(args)  # the agent prints its own config errors ("diag agent: ...")
    from diag.config import ConfigError
    from diag.lifecycle import StartRefused

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"diag: {e}", file=sys.stderr)
        return 2
    except StartRefused as e:  # the data dir is in use, or a database cannot be opened safely
        print(f"diag: {e}", file=sys.stderr)
        return 2


def _add_roots(p: argparse.ArgumentParser) -> None:
    from diag.agent.config import ROOT_FLAGS
    from diag.settings import flags
    from diag.settings.sections import Paths

    flags.add(p, Paths, ROOT_FLAGS)


def _config(args: argparse.Namespace, **flags):
    from pathlib import Path

    from diag.config import load

    cfg = load(args.config, **flags)
    paths = {k: getattr(args, k) for k in ("proc", "sys", "kmsg") if getattr(args, k, None)}
    if paths:
        roots = cfg.roots.with_(**paths)
        cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={
            "proc": roots.proc, "sys": roots.sys, "kmsg": roots.kmsg, "pstore": roots.pstore})})
    if getattr(args, "root", None):
        cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"root": Path(args.root)})})
    return cfg


def _collect(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from collectors import registry
    from collectors.runner import CollectionCycle

    cfg = _config(args)
    roots = cfg.roots
    # A one-off reading remembers nothing, and prints every raw counter the collectors read.
    settings = replace(cfg.collector_settings(), state_dir=None, raw_counters=True)
    skipped: dict[str, str] = {}
    collectors = registry.build(roots, settings)
    if not roots.is_live and roots.root == Path("/"):
        # The filesystem collector itself declines statvfs here (see collectors/filesystem.py).
        skipped["filesystem usage"] = (f"{roots.proc} is not the live /proc and no --root was given: only "
                                       "fs_readonly from its mount table")
    if not roots.is_live and roots.kmsg == Path("/dev/kmsg"):
        # This machine's kernel log stamped with the tree's boot id and boot time would be
        # another machine's faults; a tree's log must be named with --kmsg.
        collectors = [c for c in collectors if c.name != "kernel_log"]
        skipped["kernel log"] = f"{roots.proc} is not the live /proc and no --kmsg was given"
        log.info("collect: kernel log skipped: %s", skipped["kernel log"])
    cycle = CollectionCycle(collectors)
    # Rates need two readings: the first sets the baseline, the second is printed.
    first = cycle.run()
    time.sleep(parse_duration(args.sample))
    batch = cycle.run()
    batch.signals[:0] = first.signals
    out = batch.to_json(cfg.resolved_instance_id())
    out["errors"] = [{"collector": c, "kind": k, "count": n} for (c, k), n in cycle.errors.items()]
    out["skipped"] = skipped
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


EXIT = {"Ok": 0, "Warning": 1, "Impaired": 2}
# Nagios UNKNOWN: the state could not be determined. Never 1 or 2, which a scheduler would
# read as Warning or Impaired.
EXIT_UNKNOWN = 3


def _diagnose(args: argparse.Namespace) -> int:
    """Exit 0 Ok, 1 Warning, 2 Impaired, 3 otherwise: any failure is one line on stderr and 3."""
    from diag import report_format
    from diag.config import ConfigError

    try:
        try:
            window = parse_duration(args.window)
        except ValueError as e:
            raise ValueError(f"--window: {e}") from None
        if window <= 0:
            raise ValueError(f"--window: must be longer than 0, not {args.window!r}")
        if args.server:
            report = _diagnose_remote(args, window)
        else:
            report = _diagnose_local(args, window)
        if args.format == "json":
            out = json.dumps(report, indent=1, default=str) + "\n"
        elif args.format == "md":
            out = report_format.markdown(report) + "\n"
        else:
            out = report_format.text(report)
        status = report["health_status"]
    except (ConfigError, ValueError, RuntimeError, OSError) as e:
        # Our own failures carry a message meant for the user.
        _diagnose_error(str(e) or type(e).__name__)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        _diagnose_error("interrupted")
        return EXIT_UNKNOWN
    except Exception as e:  # noqa: BLE001 - a bug must still exit UNKNOWN, not with a traceback's 1
        log.debug("diagnose failed", exc_info=True)
        _diagnose_error(f"{type(e).__name__}: {e}")
        return EXIT_UNKNOWN
    sys.stdout.write(out)  # only a whole report is printed: a failure prints none
    return EXIT.get(status, EXIT_UNKNOWN)


def _diagnose_error(message: str) -> None:
    print("diag diagnose: " + " ".join(message.split()), file=sys.stderr)  # one line, always


def _diagnose_remote(args: argparse.Namespace, window: float) -> dict:
    import os

    import requests

    token = args.token or os.environ.get("DIAG_TOKEN")
    body = {"window": f"{window:.0f}s"}
    if args.checks:
        body["checks"] = args.checks
    if args.instance_id:
        body["instance_id"] = args.instance_id
    url = args.server.rstrip("/") + "/api/v1/diagnoses"
    try:
        r = requests.post(url, json=body, timeout=60, headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.RequestException as e:
        raise RuntimeError(f"cannot reach {args.server}: {type(e).__name__}: {e}") from None
    if r.status_code != 201:
        try:
            err = r.json()["error"]
            detail = err["message"] + (f" ({err['field']})" if err.get("field") else "")
        except (ValueError, KeyError, TypeError):
            detail = r.text[:500]
        raise RuntimeError(f"the server answered {r.status_code}: {detail}")
    try:
        report = r.json()
    except ValueError:
        raise RuntimeError(f"the server's answer is not JSON: {r.text[:200]}") from None
    if not isinstance(report, dict) or "health_status" not in report:
        raise RuntimeError("the server's answer is not a diagnosis report")
    return report


def _diagnose_local(args: argparse.Namespace, window: float) -> dict:
    import tempfile
    from pathlib import Path

    from checks import catalogue as check_catalogue
    from diag.config import load
    from diag.service import Service

    plugin_ids = {f"plugin.{name}" for name in load(args.config).plugins} if args.checks else set()
    unknown = [c for c in args.checks or [] if c not in check_catalogue.BY_ID and c not in plugin_ids]
    if unknown:
        raise ValueError(f"--check: unknown check {unknown[0]!r} (the ids: GET /api/v1/checks, or the "
                         f"`checks` of `diag diagnose --format json`)")
    data_dir = Path(args.data_dir or "./data")
    if (data_dir / "metrics.db").exists():
        service = Service(_config(args, data_dir=str(data_dir)))
        try:
            return service.diagnose(args.instance_id, window, args.checks, fresh_facts=True)
        except KeyError:
            raise ValueError(f"--instance-id: no instance {args.instance_id!r} in {data_dir}") from None
        finally:
            service.close()
    if args.data_dir:
        raise ValueError(f"--data-dir: no history in {data_dir} (no metrics.db)")
    # No history: a short live sample, so rates exist; checks that need history say so.
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(_config(args, data_dir=tmp))
        try:
            for i in range(3):
                service.collect()
                if i < 2:
                    time.sleep(1)
            service.plugins.run_all()  # no history of their runs either: one run each, now
            return service.diagnose(None, window, args.checks, fresh_facts=True)
        finally:
            service.close()


def _agent(args: argparse.Namespace) -> int:
    from diag.agent.main import run

    return run(args)


def _rules_export(args: argparse.Namespace) -> int:
    from diag.alerting.cli import export_rules

    return export_rules(_config(args, data_dir=args.data_dir), args.output)


def _serve(args: argparse.Namespace) -> int:
    from diag import lifecycle, scheduler as scheduling
    from diag.service import Service
    from diag.config import check_listen
    from diag.settings.flags import dest
    from diag.web.app import create_app

    cfg = _config(args, **{name: getattr(args, dest(name)) for name in SERVE_FLAGS})
    check_listen(cfg)
    from diag.config import check_commands  # remote commands: refuse them without a token

    check_commands(cfg)
    # Before anything in the data dir is read: a second service on it must not touch it.
    lifecycle.lock_data_dir(cfg.data_dir)
    service = Service(cfg)
    service.start()
    sched = scheduling.build(service)
    app = create_app(service, sched)
    from diag.web import server as web_server

    server = web_server.create(app, cfg.host, cfg.port)  # guarded against slowloris: see there
    # What start-up built (pandas, plotly, the catalogues) lives as long as the process,
    # yet every full collection walks it: frozen, it is skipped. A larger first generation
    # lets an ingest request's thousands of short-lived dicts die young instead of being
    # promoted and walked again (an ingest request of 1,000 samples: 3.3 -> 2.6 ms).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    stop = threading.Event()
    lifecycle.stop_on_signals(stop)
    sched.start()
    web = threading.Thread(target=server.run, name="waitress", daemon=True)
    web.start()
    log.info("diag %s serving on http://%s:%s (instance %s, data in %s)", __version__, cfg.host,
             server.effective_port, service.instance_id, cfg.data_dir)
    stop.wait()
    log.info("stopping: finishing the running collection")
    # Lets a running collection and its write complete, but a job stuck in a call that
    # never returns (a tool or a mount that hangs) must not hold SIGTERM for ever.
    closing = threading.Thread(target=sched.shutdown, kwargs={"wait": True}, name="shutdown", daemon=True)
    closing.start()
    closing.join(lifecycle.STOP_WAIT_S)
    if closing.is_alive():
        running = getattr(sched._executors.get("default"), "_instances", {})  # no public API for this
        log.warning("stopping without waiting for job(s) still running after %g s: %s", lifecycle.STOP_WAIT_S,
                    ", ".join(sorted(j for j, n in running.items() if n)) or "?")
    server.close()
    service.close()  # waits for a collection holding the service's lock: cycles end within their budgets
    log.info("stopped cleanly")
    if closing.is_alive():
        # The scheduler's pool threads are joined at interpreter exit, the stuck one with them.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
