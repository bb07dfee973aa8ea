# ICEP: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: up test sync uv lint typecheck check kafka-jars compose-config bench clean

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

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: sync
	$(UV) run --frozen mypy shared/src services/*/src

check: lint typecheck

kafka-jars: sync
	$(UV) run --frozen python -c "from icep.platform.kafka_local import fetch_jars; print(fetch_jars())"

compose-config:
	docker compose config --quiet

bench: sync
	$(UV) run --frozen python -m bench

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
