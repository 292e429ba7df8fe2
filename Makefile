# make run   - create .venv, install, serve on http://127.0.0.1:8080 with data in ./data
#              (NOTIFY=http://host/path: the default alert policies notify this webhook)
# make test  - install (Python packages, and as root the Debian tools the tests use), run all tests
# make bench - the benchmarks, each printing a table

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEBS   := prometheus prometheus-node-exporter prometheus-alertmanager victoria-metrics chromium wrk libfuse2 iptables nftables
HOST     ?= 127.0.0.1
PORT     ?= 8080
DATA_DIR ?= ./data
NOTIFY   ?=

.PHONY: run test bench install system-deps clean

run: install
	$(VENV)/bin/diag serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) $(if $(NOTIFY),--notify-webhook '$(NOTIFY)')

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The tests drive real tools (promtool, node_exporter, VictoriaMetrics). As root, install the
# missing ones from Debian; otherwise the tests that need them say what to install.
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "not root: install$$missing to run every test"; fi; \
	fi

test: install system-deps
	$(PY) -m pytest

bench: install system-deps
	$(PY) bench/collect.py
	$(PY) bench/store.py
	$(PY) bench/dashboard.py
	$(PY) bench/diagnose.py
	$(PY) bench/fleet.py
	$(PY) bench/ingest_validation.py
	$(PY) bench/commands.py
	$(PY) bench/http_service.py
	$(PY) bench/promql.py

clean:
	rm -rf $(VENV) data .pytest_cache
