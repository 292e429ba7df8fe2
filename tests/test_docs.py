"""The README documents every setting, metric and check: a new one fails this test until
it is written down (datasette's way)."""

import re
from pathlib import Path

from pydantic import BaseModel

from checks import catalogue as checks
from diag import catalogue as metrics
from diag.config import Config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
REFERENCE = README.split("## Settings reference", 1)[-1]


def setting_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += setting_names(sub, f"{prefix}{name}.")
    return out


def test_every_setting_is_in_the_settings_reference():
    assert "## Settings reference" in README
    missing = [n for n in setting_names(Config) if f"`{n}`" not in REFERENCE]
    assert missing == []


def test_every_metric_and_check_is_documented_in_the_api():
    # The catalogues are served by the API (with descriptions), and the README points there.
    assert "/api/v1/metrics" in README and "/api/v1/checks" in README
    assert all(m.description for m in metrics.METRICS + metrics.COUNTERS)
    assert all(c.description and c.recommendation for c in checks.ALL)
    assert not re.search(r"TODO|FIXME", README)


def test_the_readme_reference_tables_are_the_code_s():
    """Every collector with what it reads and every check with what it reads: rendered from the
    code, so a new collector or check fails here until `python -m diag.reference` is pasted in."""
    from diag import reference

    start, end = README.index(reference.BEGIN), README.index(reference.END) + len(reference.END)
    assert README[start:end] == reference.render()
