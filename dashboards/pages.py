"""The dashboard: its blueprint with every page's routes on it, what diag.web.app mounts at `/`.

The one place that imports the page modules; each adds its routes to dashboards.blueprint.bp.
"""

from __future__ import annotations

from dashboards import (alerts_views, commands_views, connectivity_views, contacts_views,  # noqa: F401
                        diagnosis_views, events_views, kernel_log_views, views)
from dashboards.blueprint import bp

__all__ = ["bp"]
