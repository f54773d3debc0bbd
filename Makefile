# Smart-access streaming platform. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export PYTHONPATH := $(CURDIR)

.PHONY: help setup up down status logs stop start restart wipe migrate test test-unit test-integration test-e2e fuzz bench bench-ingest bench-transform bench-dashboard bench-kafka-ui bench-soak lint transform psql

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## create .venv with uv from the lock file (quick when already done)
	@command -v uv >/dev/null 2>&1 || { echo "==> installing uv"; python3 -m pip install -q uv; }
	@uv sync --frozen --quiet --python python3.11

up: setup ## install what is missing and start the whole platform
	@$(PY) -m stack up

down: ## stop every service (data is kept)
	@$(PY) -m stack down

status: ## each service: state, pid, address
	@$(PY) -m stack status

logs: ## follow the service logs
	@$(PY) -m stack logs

stop: ## stop one service of the running stack: make stop SERVICE=consumer
	@$(PY) -m stack stop $(SERVICE)

start: ## start one service of the running stack: make start SERVICE=consumer
	@$(PY) -m stack start $(SERVICE)

restart: ## restart one service of the running stack: make restart SERVICE=consumer
	@$(PY) -m stack restart $(SERVICE)

wipe: ## delete the embedded stack's data (run `make down` first)
	@$(PY) -m stack wipe

migrate: setup ## apply database migrations to the configured PostgreSQL
	@$(PY) -m stack migrate

test: setup ## run every test against real services: e2e beside unit + integration (2 processes)
	@$(PY) -m tests.prepare
	@e2e_log=$$(mktemp); \
	echo "==> tests/e2e runs beside tests/unit and tests/integration; its report follows theirs"; \
	$(PY) -m pytest tests/e2e --durations=10 -p no:cacheprovider > "$$e2e_log" 2>&1 & e2e=$$!; \
	$(PY) -m pytest tests/unit tests/integration --durations=20; rest=$$?; \
	wait $$e2e; e2e_status=$$?; \
	echo "==> tests/e2e"; cat "$$e2e_log"; rm -f "$$e2e_log"; \
	if [ $$rest -ne 0 ] || [ $$e2e_status -ne 0 ]; then \
		echo "make test: failed: $$([ $$rest -ne 0 ] && echo 'unit/integration ')$$([ $$e2e_status -ne 0 ] && echo e2e)"; \
		exit 1; \
	fi

test-unit: setup ## tests that need no service
	@$(PY) -m pytest tests/unit

test-integration: setup ## tests against real PostgreSQL and Kafka
	@$(PY) -m pytest tests/integration

test-e2e: setup ## whole-stack tests
	@$(PY) -m pytest tests/e2e

FUZZ_EXAMPLES ?= 50000

fuzz: setup ## long fuzz of the record path, page preview and DLQ copies (FUZZ_EXAMPLES=50000)
	@FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PROPERTY_EXAMPLES=$$(( $(FUZZ_EXAMPLES) / 10 )) \
		$(PY) -m pytest -q tests/unit/test_fuzz_ingest.py tests/integration/test_sink_properties.py

BENCH_DASHBOARD_EVENTS ?= 5000000

BENCH_KAFKA_UI_MESSAGES ?= 10000000

BENCHMARKS := bench-ingest bench-transform bench-dashboard bench-kafka-ui bench-soak

bench: setup ## every benchmark, even when one misses its target; a summary says which (non-zero exit)
	@missed=""; \
	for benchmark in $(BENCHMARKS); do \
		$(MAKE) --no-print-directory $$benchmark || missed="$$missed $$benchmark"; \
	done; \
	echo; \
	for benchmark in $(BENCHMARKS); do \
		case " $$missed " in *" $$benchmark "*) echo "  $$benchmark: MISSED (target not met or failed)";; \
		*) echo "  $$benchmark: ok";; esac; \
	done; \
	if [ -n "$$missed" ]; then echo "make bench: missed:$$missed"; exit 1; fi; \
	echo "make bench: every benchmark within its target"

bench-ingest: setup ## consumer drain vs bare COPY and the Kafka Connect + Debezium JDBC peer, latency at 1k/5k/20k ev/s, RSS (BENCH_EVENTS=1000000)
	@$(PY) -m benchmarks.ingest

BENCH_HISTORY_ROWS ?= 1000000,50000000
BENCH_TRANSFORM_EVENTS_PER_SECOND ?= 1000

bench-transform: setup ## the 15-min cycle at 1k ev/s vs one CTAS, at each history size of BENCH_HISTORY_ROWS
	@BENCH_HISTORY_ROWS=$(BENCH_HISTORY_ROWS) PYTHONPATH=$(CURDIR)/plugins:$(CURDIR) $(PY) benchmarks/transform.py --events-per-second $(BENCH_TRANSFORM_EVENTS_PER_SECOND)

bench-dashboard: setup ## every page's queries at BENCH_DASHBOARD_EVENTS events, 1 s warm and 2 s cold a page (50000000: ~35 min)
	@$(PY) benchmarks/dashboard.py --events $(BENCH_DASHBOARD_EVENTS)

bench-kafka-ui: setup ## every :8090 inspector page, cold and warm, on a topic of BENCH_KAFKA_UI_MESSAGES records (1 s ceiling)
	@$(PY) benchmarks/kafka_ui.py --messages $(BENCH_KAFKA_UI_MESSAGES)

SOAK_RATE ?= 2000
SOAK_MINUTES ?= 60

bench-soak: setup ## the whole platform for SOAK_MINUTES at SOAK_RATE ev/s: lag, every DAG run, RSS per service
	@SOAK_RATE=$(SOAK_RATE) SOAK_MINUTES=$(SOAK_MINUTES) $(PY) benchmarks/soak.py

lint: setup ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

transform: setup ## run one dbt build (models, data tests; UNIT_TESTS=1 adds dbt's unit tests) under the transform lock; results land in ops.dbt_*
	@PYTHONPATH=$(CURDIR)/plugins:$(CURDIR) $(PY) -m smart_access.transform $(if $(SELECT),--select $(SELECT)) $(if $(FULL_REFRESH),--full-refresh) $(if $(UNIT_TESTS),--unit-tests)

psql: ## open psql on smart_access as the read-only analyst role
	@PGHOST=$${PGHOST:-127.0.0.1} PGPORT=$${PGPORT:-5432} PGDATABASE=$${PGDATABASE:-smart_access} \
		PGUSER=smart_access_analyst PGPASSWORD=$${SMART_ACCESS_ANALYST_PASSWORD:-analyst} psql
