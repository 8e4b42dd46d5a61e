# Everything a user or CI runs goes through here. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BROKER := kafka/broker.sh
DETECTORS ?= 1
LEGIT_TOPIC ?= streaming.transactions.legit
FRAUD_TOPIC ?= streaming.transactions.fraud
DEAD_LETTER_TOPIC ?= streaming.transactions.invalid
PYTEST_ARGS ?=
# The detectors' rules file for `make run` (docs/rules.md); unset: FRAUD_AMOUNT_THRESHOLD, VELOCITY_*.
RULES_FILE ?=
# SECURE=1: the local broker with TLS, SCRAM users and ACLs (kafka/broker.sh up --secure), and
# the services logging in with their own credentials (README "Security").
SECURE ?=
SECURE_FLAG := $(if $(filter 1 yes true,$(SECURE)),--secure)

.PHONY: help install jars kafka-up kafka-down kafka-clean consume consume-legit consume-fraud \
	consume-invalid run watch bench test test-unit test-docker clean-docker lint typecheck clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed ## create .venv with the pinned packages

jars: ## fetch the Kafka jars from Maven Central (once)
	@$(BROKER) jars

kafka-up: jars ## start the local broker on localhost:9092 (no-op if it runs; SECURE=1: TLS+SCRAM+ACLs)
	@$(BROKER) up $(SECURE_FLAG)

kafka-down: ## stop the local broker, keep its data
	@$(BROKER) down

kafka-clean: ## stop the local broker and wipe its data
	@$(BROKER) clean

.PHONY: docker-secrets
docker-secrets: ## CA, broker certificate and passwords for docker-compose.*.secure.yml
	@$(BROKER) secrets --docker

consume: jars ## print TOPIC from the beginning (MAX=n to stop after n records)
	@if [[ -z "$(TOPIC)" ]]; then echo "usage: make consume TOPIC=<name> [MAX=<n>]" >&2; exit 2; fi
	@$(BROKER) consume "$(TOPIC)" $(MAX)

consume-legit: jars ## print the legit topic
	@$(BROKER) consume "$(LEGIT_TOPIC)" $(MAX)

consume-fraud: jars ## print the fraud topic
	@$(BROKER) consume "$(FRAUD_TOPIC)" $(MAX)

consume-invalid: jars ## print the dead-letter topic
	@$(BROKER) consume "$(DEAD_LETTER_TOPIC)" $(MAX)

run: install kafka-up ## broker + generator + detector(s) in the foreground (RULES_FILE=path: the rules); Ctrl-C stops all
	@DETECTORS=$(DETECTORS) SECURE=$(if $(SECURE_FLAG),1,) PYTHON=$(PY) RULES_FILE=$(RULES_FILE) \
		scripts/run-local.sh

watch: install ## live dashboard of the topics and the detector's lag; q quits
	@$(PY) -m dashboard

# The bench's reference rows (Quix Streams, confluent-kafka; bench/reference.py) run in a venv of
# their own inside .venv: quixstreams caps pydantic below requirements.txt's pins. The quick run
# skips them, so QUICK=1 does not install it.
BENCH_VENV := $(VENV)/bench-reference
$(BENCH_VENV)/.installed: bench/requirements.txt | $(VENV)/.installed
	$(PY) -m venv --clear $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench: install jars $(if $(filter-out 0,$(QUICK)),,$(BENCH_VENV)/.installed) ## throughput, latency, memory on a broker of its own (QUICK=1: ~2 min)
	$(PY) -m bench $(if $(filter-out 0,$(QUICK)),--quick)

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy --strict on the services, the bench and the tests
	$(VENV)/bin/mypy

test-unit: install ## the fast tier: no broker
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test: install jars lint typecheck ## everything: lint, types, unit, integration, compose
	$(PY) -m pytest $(PYTEST_ARGS)

# The Docker tier: scripts/docker-tier.sh prepares (once, cached) the engine, the pinned Compose
# CLI and, where no registry is reachable, a stand-in of the base image; it prints a file of
# exports (DOCKER_HOST, DOCKER_CONFIG, ...) for the tests. README "The Docker tier".
test-docker: install jars ## the Docker tier for real: images built, containers run (~8 min cold)
	@env_file=$$(scripts/docker-tier.sh setup) && source "$$env_file" && \
		$(PY) -m pytest -m docker $(PYTEST_ARGS)

clean-docker: ## stop the Docker tier's podman service, remove its cache and images
	@scripts/docker-tier.sh clean

clean: ## remove the venv and caches (not the broker's data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
