"""`diag agent`: the collectors on one machine, pushing to a server.

Light by design (PRODUCT.md "Fleet"): this package imports the collectors, the stdlib,
prometheus-client and YAML, never pandas, Flask or the store, so it costs a few tens of
MB on every machine of a fleet. tests/agent/test_light.py holds it to that.
"""
