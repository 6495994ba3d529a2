# Two commands do everything: `make dev` (install, demo store, dagster dev) and `make test` (the
# fast tests). `make test-slow` runs the rest (whole history, dagster dev, browser); CI runs both.
VENV        := .venv
BIN         := $(VENV)/bin
PYTHON      ?= python3
SCALE       ?= 0.01
HOST        ?= 127.0.0.1
PORT        ?= 3000
DATA_DIR    := $(or $(ORDERFLOW_DATA_DIR),$(CURDIR)/data)
# Where alert links point: the UI this `make dev` serves, unless a public address is set.
# Alert links point at the UI; a wildcard bind address is no address to browse to.
UI_HOST     := $(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST))
UI_URL      := $(or $(ORDERFLOW_UI_URL),http://$(UI_HOST):$(PORT))
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Instance storage: postgres (a local server, started and stopped with dagster dev; batched event
# writes, see deploy/local_postgres.py) or sqlite (Dagster's default: dagster.yaml as it is).
INSTANCE    ?= postgres
DEV_ENV     := ORDERFLOW_DATA_DIR="$(DATA_DIR)" ORDERFLOW_UI_URL="$(UI_URL)"
# Metrics (METRICS=1): Prometheus and its Pushgateway on loopback around dagster dev, their state in
# $(DAGSTER_HOME)/metrics, ORDERFLOW_PUSHGATEWAY_URL set for it (deploy/local_metrics.py).
METRICS          ?=
PROMETHEUS_PORT  ?= 9090
PUSHGATEWAY_PORT ?= 9091
WITH_METRICS = $(if $(filter-out 0 1,$(METRICS)),$(error METRICS must be 1 (on) or 0 (off), not "$(METRICS)"))$(if $(filter 1,$(METRICS)),$(BIN)/python -m deploy.local_metrics --home "$(DAGSTER_HOME)" --pushgateway-port $(PUSHGATEWAY_PORT) --prometheus-port $(PROMETHEUS_PORT) -- ,)
DAGSTER_DEV := $(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

.PHONY: dev test test-slow test-all install store lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The demo store: generated once, then caught up to yesterday on every start.
store: install
	@if [ ! -d "$(DATA_DIR)/landing/catalog" ]; then \
		$(BIN)/orderflow-sim generate --scale $(SCALE) --data-dir "$(DATA_DIR)"; fi
	$(BIN)/orderflow-sim catch-up --data-dir "$(DATA_DIR)"

dev: store
	mkdir -p "$(DAGSTER_HOME)"
ifeq ($(INSTANCE),postgres)
	$(DEV_ENV) $(WITH_METRICS)$(BIN)/python -m deploy.local_postgres --home "$(DAGSTER_HOME)" -- $(DAGSTER_DEV)
else ifeq ($(INSTANCE),sqlite)
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(DEV_ENV) $(WITH_METRICS)$(DAGSTER_DEV)
else
	$(error INSTANCE must be postgres or sqlite, not "$(INSTANCE)")
endif

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers by default, each with its own session store and PostgreSQL server; tests sharing a
# costlier fixture (pytest.mark.xdist_group) run on one of them. TEST_WORKERS=0 runs in one process
# (for pdb, or -x on the first failure in order).
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup --durations=20

test-slow: install
	$(BIN)/pytest -m slow --durations=20

test-all: test test-slow

bench: install
	$(BIN)/python bench/backfill.py --scale $(SCALE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
