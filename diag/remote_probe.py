"""The probe run on an agent, through the remote-command channel (diag/commands/).

The script is fixed: diag/probe.py itself, fed to the agent host's python3 on stdin, with
the address, port, protocol and deadline as the command's parameters, which the channel
passes as environment variables, never spliced into the script's text. It is an ordinary
one-off command: audited, recorded, shown on the Commands page, and refused when an
allow-list is set that does not name `diag-connectivity-probe@<sha256 of the script>`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from diag.commands import states
from diag.commands.model import CommandError
from diag.commands.repository import new_id

NAME = "diag-connectivity-probe"
# The agent polls every 3 s (the channel's pace), then the probe runs its deadline.
SLACK_S = 5.5


def script() -> str:
    code = (Path(__file__).with_name("probe.py")).read_text()
    return ("python3 - {{address}} {{port}} {{protocol}} {{timeout}} <<'DIAG_PROBE_EOF'\n" + code +
            "\nimport json as _json, sys as _sys\n"
            "print(_json.dumps(probe(_sys.argv[1], int(_sys.argv[2]), _sys.argv[3], float(_sys.argv[4]))))\n"
            "DIAG_PROBE_EOF\n")


def run(commands, instance_id: str, address: str, port: int, protocol: str, timeout: float) -> tuple[dict | None, str]:
    """(the probe's result, "") or (None, why not), within timeout + SLACK_S."""
    from diag.commands import model

    cmd = model.command({"name": NAME, "content": script(), "timeout": 30,
                         "description": "connectivity diagnosis probe (POST /api/v1/connectivity)"})
    if not commands.allowed(cmd["name"], cmd["content"], adhoc=True):
        digest = hashlib.sha256(cmd["content"].encode()).hexdigest()
        return None, (f"the remote-command allow-list does not hold {NAME}@{digest}, so the probe cannot run on "
                      "the agent")
    command_id = new_id("c")
    try:
        commands.save_command(command_id, cmd, time.time(), saved=False)
        inv = commands.invoke({"command_id": command_id, **cmd}, [instance_id],
                              {"address": address, "port": str(port), "protocol": protocol, "timeout": f"{timeout:g}"},
                              "Once", None, None, {"who": "connectivity-diagnosis", "source": "server"}, adhoc=True)
    except CommandError as e:
        return None, f"the remote-command channel refused the probe: {e.message}"
    end = time.monotonic() + timeout + SLACK_S
    rec = None
    while time.monotonic() < end:
        rec = commands.invocation(inv["invoke_id"])["instances"][0]["records"][-1]
        if rec["status"] in states.FINAL:
            break
        time.sleep(0.1)
    else:
        try:
            commands.stop(inv["invoke_id"])
        except CommandError:
            pass
        state = rec["status"] if rec else "Pending"
        return None, (f"the agent did not run the probe within {timeout + SLACK_S:g} s (invocation "
                      f"{inv['invoke_id']} was {state}; stopped)")
    lines = (rec["output"] or "").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if rec["status"] != states.FINISHED or not isinstance(result, dict) or "verdict" not in result:
        return None, (f"the probe on the agent ended {rec['status']} ({rec['error_code'] or 'no error code'}, exit "
                      f"{rec['exit_code']}): {(rec['output'] or '').strip()[-300:] or 'no output'}")
    result["via"] = f"remote command {inv['invoke_id']}"
    return result, ""
