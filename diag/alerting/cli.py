"""`diag rules export`, reading the policies of a data dir without starting the service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from diag.alerting import defaults, rules_export, schema
from diag.alerting.policy import Policy
from diag.alerting.repository import Repository
from diag.db import Database


def export_rules(cfg: Any, output: str | None) -> int:
    path = Path(cfg.data_dir) / "diag.db"
    policies: list[tuple[str, Policy]] = []
    if path.exists():
        db = Database(path)
        try:
            schema.create(db)
            repo = Repository(db)
            policies = [(pid, Policy.model_validate(body)) for pid, body in repo.policy_bodies()]
            fresh = not db.get_kv(defaults.KEY)
        finally:
            db.close()
    else:
        fresh = True
    if fresh and cfg.alerting.defaults:  # never served: what the first start would create
        from diag.diagnosis import configured

        checks = configured(cfg.checks)
        policies += [(pid, Policy.model_validate(b)) for pid, b in defaults.policies(cfg.interval, checks).items()]
    text = rules_export.export(policies)
    if output:
        Path(output).write_text(text)
        print(f"wrote {sum(1 for _, p in policies if p.conditions and p.enabled)} policies to {output}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
