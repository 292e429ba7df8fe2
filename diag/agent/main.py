"""`diag agent ...`: wiring the config, the loop, /metrics and signals."""

from __future__ import annotations

import argparse
import logging

from diag.agent.config import AgentConfigError, load
from diag.lifecycle import stop_on_signals

log = logging.getLogger("diag.agent")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config, server=args.server, token=args.token, activation_id=args.activation_id,
                   activation_code=args.activation_code, instance_id=args.instance_id, interval=args.interval,
                   data_dir=args.data_dir, listen=args.listen, proc=args.proc, sys=args.sys, kmsg=args.kmsg,
                   root=args.root)
    except AgentConfigError as e:
        print(f"diag agent: {e}")
        return 2
    from diag.agent.runner import Agent

    agent = Agent(cfg)
    stop_on_signals(agent.stop)
    if cfg.listen:
        from diag.agent.metrics import serve

        server = serve(agent, cfg.listen)
        log.info("serving /metrics on %s:%d", server.server_address[0], server.server_port)
    log.info("agent %s pushing to %s every %gs (data in %s)", agent.instance_id, cfg.server, cfg.interval,
             cfg.data_dir)
    try:
        agent.run()
    finally:
        agent.close()
    log.info("stopped")
    return 0
