"""`diag agent ...`: wiring the config, the loop, /metrics and signals."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from diag.agent.config import AGENT_FLAGS, ROOT_FLAGS, AgentConfigError, load
from diag.lifecycle import STOP_WAIT_S, stop_on_signals

log = logging.getLogger("diag.agent")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config, **{name: getattr(args, name) for name in AGENT_FLAGS + ROOT_FLAGS})
    except AgentConfigError as e:
        print(f"diag agent: {e}")
        return 2
    from diag.agent.runner import Agent

    agent = Agent(cfg)
    stop_on_signals(agent.stop)
    stopped = threading.Event()
    threading.Thread(target=_exit_when_stuck, args=(agent, stopped), name="stop-watch", daemon=True).start()
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
    stopped.set()
    return 0


def _exit_when_stuck(agent, stopped: threading.Event) -> None:
    """After SIGTERM, give the loop STOP_WAIT_S to finish its cycle or send, as `diag serve`
    gives its jobs; then exit without it. A collector's budget (0.4 x interval: 24 s at
    1 m), a send to a server that does not answer (15 s) or a call stuck for good must not
    hold SIGTERM. The buffer is SQLite: a write cut short is rolled back at the next start."""
    agent.stop.wait()
    if stopped.wait(STOP_WAIT_S):
        return
    stalled = ", ".join(sorted(agent.cycle.stalled))
    log.warning("stopping without waiting for the agent's loop, still %s after %g s%s", agent.phase, STOP_WAIT_S,
                f" (stalled collectors: {stalled})" if stalled else "")
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)
