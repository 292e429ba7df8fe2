"""Policies, contacts and contact groups from a config file (YAML or JSON), upserted
at start by their `id`, so the file is the source of truth for the objects it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from diag.alerting.policy import PolicyError
from diag.config import ConfigError

SECTIONS = ("contacts", "contact_groups", "policies")


def load(alerting: Any, path: Path) -> dict[str, int]:
    try:
        text = Path(path).read_text()
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except OSError as e:
        raise ConfigError(f"cannot read the alert policies file: {e.strerror}", str(path)) from None
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"not valid YAML/JSON: {e}", str(path)) from None
    data = data or {}
    if not isinstance(data, dict) or set(data) - set(SECTIONS):
        raise ConfigError(f"the top level must be a mapping with only {', '.join(SECTIONS)}", str(path))
    counts = {}
    for section in SECTIONS:
        items = data.get(section) or []
        if not isinstance(items, list):
            raise ConfigError("must be a list", str(path), field=section)
        for i, item in enumerate(items):
            where = f"{section}[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise ConfigError("each entry needs a string id", str(path), field=f"{where}.id")
            body = {k: v for k, v in item.items() if k != "id"}
            try:
                if section == "contacts":
                    alerting.save_contact(body, item["id"])
                elif section == "contact_groups":
                    alerting.save_group(body, item["id"])
                else:
                    alerting.save_policy(body, item["id"], source="file")
            except PolicyError as e:
                field = f"{where}.{e.field}" if e.field else where
                raise ConfigError(e.message, str(path), field=field) from None
        counts[section] = len(items)
    return counts
