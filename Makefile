# ICEP: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: up test test-unit sync uv lint typecheck docs-check docs-lint migrations-check check kafka-jars compose-config bench bench-quick clean

# uv is the only thing installed outside the project; everything else comes from the lock file.
uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv

sync: uv
	$(UV) sync --frozen --all-packages

## Start Kafka, migrate, run the four services and the gateway; Ctrl-C stops everything.
up: sync
	$(UV) run --frozen icep up

## The whole suite against real Kafka (and PostgreSQL when ICEP_TEST_POSTGRES_URL is set).
test: sync
	$(UV) run --frozen pytest $(PYTEST_ARGS)

## The first tier: everything that needs no broker and starts no platform process (rules, routes, storage,
## documents, manifests), on two workers. A change to a domain rule is checked here in about a minute.
test-unit: sync
	$(UV) run --frozen pytest -m "not integration" -n auto $(PYTEST_ARGS)

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: sync
	$(UV) run --frozen mypy shared/src services/*/src clients/*/src

## The generated OpenAPI and AsyncAPI documents in docs/api are what the code generates.
docs-check: sync
	$(UV) run --frozen icep docs --check

## The OpenAPI document passes Redocly CLI's recommended rules (tools/openapi-lint, pinned by its lock file).
## Offline: the CLI's telemetry and update check are off, so nothing leaves the machine.
LINT_DIR := tools/openapi-lint
docs-lint:
	@[ -d $(LINT_DIR)/node_modules ] || (cd $(LINT_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	cd $(LINT_DIR) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		./node_modules/.bin/redocly lint --config redocly.yaml --format stylish ../../docs/api/openapi.json

## Every service's models match what its migrations build (no model change ships without its migration).
migrations-check: sync
	$(UV) run --frozen pytest -q -p no:cacheprovider tests/test_migrations.py

## What CI runs before the suite, and the pre-commit hooks run before a commit.
check: lint typecheck docs-check migrations-check

kafka-jars: sync
	$(UV) run --frozen python -c "from icep.platform.kafka_local import fetch_jars; print(fetch_jars())"

compose-config:
	docker compose config --quiet

# The floors and every scenario in one run (bench/README.md); sizes come from ICEP_BENCH_* variables,
# e.g. `make bench BENCH_ARGS="--profile end_to_end"`; `make bench-quick` runs everything with small sizes.
bench: sync
	$(UV) run --frozen python -m bench $(BENCH_ARGS)

bench-quick: sync
	ICEP_BENCH_FLOOR_ROUND_TRIPS=50 ICEP_BENCH_FLOOR_PRODUCE=3000 ICEP_BENCH_FLOOR_COMMITS=200 \
	ICEP_BENCH_FLOOR_HOPS=200 ICEP_BENCH_EVENTS=1000 ICEP_BENCH_E2E_PLANS=20 ICEP_BENCH_E2E_WRITES=200 \
	ICEP_BENCH_SWEEP_RATES=25,50,100 ICEP_BENCH_SWEEP_SECONDS=2 ICEP_BENCH_DELIVERIES=600 \
	ICEP_BENCH_DELIVERY_PLANS=20 ICEP_BENCH_GATEWAY_REQUESTS=200 ICEP_BENCH_GATEWAY_THROUGHPUT_REQUESTS=600 \
	ICEP_BENCH_SCALE_WRITES=15 ICEP_BENCH_SCALE_BURST=60 ICEP_BENCH_TAKEOVER_AFTER=8 \
	ICEP_BENCH_SUMMARY_REQUESTS=50 ICEP_BENCH_AUDIT_READS=100 ICEP_BENCH_AUDIT_CHANGES=50 $(UV) run --frozen python -m bench $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
