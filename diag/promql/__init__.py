"""PromQL over the embedded store, for the Prometheus-compatible API under /prometheus.

`promql-parser` (a maintained parser, compatible with Prometheus 2.45's grammar) turns the
text into an AST; `engine` evaluates the part of PromQL that dashboards use with the
semantics of Prometheus 2.x (5 minute lookback, closed windows [t - range, t], rate's
extrapolation, vector matching), over the raw points `source` reads from the store.
Anything else is refused with Prometheus' own error shape (`errors`).
"""

from diag.promql.engine import Engine, InstantResult, RangeResult
from diag.promql.errors import BadData, ExecutionError, PromQLError, QueryTimeout

__all__ = ["BadData", "Engine", "ExecutionError", "InstantResult", "PromQLError", "QueryTimeout", "RangeResult"]
