"""The agent stays light: importing it pulls in none of pandas, Flask or the store."""

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("pandas", "flask", "diag.store", "pydantic", "diag.service")


def test_agent_imports_nothing_heavy():
    code = ("import json, sys\n"
            "import diag.agent, diag.agent.main, diag.agent.runner, diag.agent.metrics, diag.agent.buffer\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "diag.agent.runner" in loaded  # the import itself happened
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)] == []


def test_the_cli_agent_path_stays_light():
    # `diag agent` goes through diag.cli: its top level must not load the server's config (pydantic).
    code = "import json, sys\nimport diag.cli\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in ("pandas", "flask", "pydantic")] == []
