"""diag: monitoring and self-diagnosis for Linux machines.

Kept free of heavy imports: `diag agent` and the collectors import this package
without pulling in pandas, Flask or the store.
"""

__version__ = "0.1.0"
